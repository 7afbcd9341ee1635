import Foundation
import Testing
@testable import KAControlPlane
@testable import KernelAgent

@Suite(.serialized) struct RunTests {
    func approve(_ h: Harness, host: String, count: Int) async throws -> Int {
        let g = h.gitea
        let issue = g.createIssue(by: "markus", title: "runs")
        for _ in 0..<count { g.comment(by: "markus", on: issue, body: "/ka-promote \(host)") }
        #expect(await h.settle { g.botComments(on: issue).count == count })
        let nonces = g.botComments(on: issue).compactMap { Harness.nonce(in: $0.body) }
        #expect(nonces.count == count)
        g.comment(by: "markus", on: issue, body: nonces.map { "/ka-yes \($0)" }.joined(separator: "\n"))
        try await Task.sleep(nanoseconds: 300_000_000)   // the webhook lands
        await h.engine.processPending()
        return issue
    }

    @Test func runsOnOneHostWaitInLineAndSayBehindWhat() async throws {
        let h = try Harness()
        try await h.start()
        let issue = try await approve(h, host: "fresnel", count: 2)
        let started = h.engine.startRunnable()
        #expect(started.count == 1, "same host: one at a time")
        for t in started { await t.value }
        _ = await h.loop.outbox.drain()
        _ = await h.loop.outbox.drain()
        let bodies = h.gitea.botComments(on: issue).map(\.body)
        #expect(bodies.contains { $0.contains("waits behind run #") && $0.contains("on host fresnel") }, "\(bodies)")
        #expect(await h.settle { h.gitea.botComments(on: issue).filter { $0.body.contains("✅ done") }.count == 2 })
    }

    @Test func differentHostsRunInParallel() async throws {
        let h = try Harness()
        try await h.start()
        let g = h.gitea
        let issue = g.createIssue(by: "markus", title: "two hosts")
        g.comment(by: "markus", on: issue, body: "/ka-promote fresnel\n/ka-promote ohm")
        #expect(await h.settle { g.botComments(on: issue).count == 2 })
        let nonces = g.botComments(on: issue).compactMap { Harness.nonce(in: $0.body) }
        g.comment(by: "markus", on: issue, body: nonces.map { "/ka-yes \($0)" }.joined(separator: "\n"))
        try await Task.sleep(nanoseconds: 300_000_000)
        await h.engine.processPending()
        let started = h.engine.startRunnable()
        #expect(started.count == 2)
        for t in started { await t.value }
    }

    @Test func aRunInterruptedByARestartIsMarkedFailedAndSaysSo() async throws {
        let h = try Harness()
        try await h.start()
        let issue = try await approve(h, host: "ohm", count: 1)
        _ = await h.loop.outbox.drain()   // the "queued" status comment exists
        // the process died while the verb ran
        try h.ledger.writeSync { try $0.execute(sql: "UPDATE runs SET state = 'running' WHERE state = 'queued'") }
        try h.engine.recoverInterrupted()
        _ = await h.loop.outbox.drain()
        let last = try #require(h.gitea.botComments(on: issue).last).body
        #expect(last.contains("❌ failed: kernel-agent restarted while this ran; it was not retried."), "\(last)")
        #expect(h.engine.startRunnable().isEmpty, "never silently re-run")
    }

    @Test func directCLIInvocationFilesAnAuditIssue() async throws {
        let h = try Harness()
        try await h.start(webhook: false)
        var env = ProcessInfo.processInfo.environment
        env["KA_GITEA_URL"] = h.gitea.baseURL.absoluteString
        env["KA_REPO"] = "\(h.gitea.owner)/\(h.gitea.repo)"
        env["KA_GITEA_TOKEN"] = "bot-token"
        env["KA_ROOT"] = h.root.path
        env["KA_STATE_DIR"] = h.root.appendingPathComponent(".ka").path
        _ = try await h.api.createLabel(name: "ka:audit", color: "cccccc", description: "audit")
        let r = try Subprocess.run([ChaosTests.kaBinary, "promote", "ohm"], cwd: h.root, environment: env)
        #expect(r.status == 0, "\(r.stderrText)")
        let audit = h.gitea.withLock { h.gitea.issues.values.first { $0.title == "[ka:audit] promote ohm" } }
        let a = try #require(audit, "no audit issue")
        #expect(a.body.contains("promoted ohm: 1 patch(es)"))
        #expect(h.gitea.withLock { a.labels.compactMap { h.gitea.labels[$0]?.name } } == ["ka:audit"])
        let refused = try Subprocess.run([ChaosTests.kaBinary, "abandon", "x"], cwd: h.root, environment: env)
        #expect(refused.status == 2)
        #expect(h.gitea.withLock { h.gitea.issues.values.contains { $0.title == "[ka:audit] abandon x" && $0.body.contains("refused") } })
    }
}
