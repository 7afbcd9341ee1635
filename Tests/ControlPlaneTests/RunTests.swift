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

@Suite(.serialized) struct ConsentPolicyTests {
    @Test func expiredConsentAndAllowlistsAreHonoured() async throws {
        let h = try Harness()
        try await h.start(allow: ["promote": ["markus"], "status": ["mallory"]], consentTTL: 1)
        let g = h.gitea
        let i = g.createIssue(by: "markus", title: "consent")
        // the allowlist replaces the permission check: mallory (read) may run status, markus may not
        g.comment(by: "markus", on: i, body: "/ka-status")
        #expect(await h.settle { g.botComments(on: i).count == 1 })
        #expect(g.botComments(on: i)[0].body.contains("@markus sorry, you are not allowed to run `/ka-status`"))
        g.comment(by: "mallory", on: i, body: "/ka-status")
        #expect(await h.settle { g.botComments(on: i).count == 2 })
        #expect(g.botComments(on: i)[1].body.contains("will:"))
        // a consent that arrives after the expiry is refused
        g.comment(by: "markus", on: i, body: "/ka-promote ohm")
        #expect(await h.settle { g.botComments(on: i).count == 3 })
        let nonce = try #require(Harness.nonce(in: g.botComments(on: i)[2].body))
        try await Task.sleep(nanoseconds: 1_200_000_000)
        g.comment(by: "markus", on: i, body: "/ka-yes \(nonce)")
        #expect(await h.settle { g.botComments(on: i).count == 4 })
        #expect(g.botComments(on: i)[3].body.contains("that plan expired"))
        #expect(!FileManager.default.fileExists(atPath: h.root.appendingPathComponent("out/ohm").path))
    }

    @Test func clientSurfaces4xxWithGiteasMessageAndDoesNotRetryThem() async throws {
        let h = try Harness()
        try await h.start(webhook: false)
        let before = h.gitea.requests.count
        do {
            _ = try await h.api.getIssue(999)
            Issue.record("expected a 404")
        } catch let e as GiteaError {
            #expect(e.status == 404)
            #expect(e.message == "not found")
            #expect(e.description == "Gitea GET /repos/marfrit/kernel-agent/issues/999 → 404: not found")
        }
        #expect(h.gitea.requests.count - before == 1, "a 4xx is not retried")
        let bad = DefaultGiteaClient(baseURL: h.gitea.baseURL, owner: "marfrit", repo: "kernel-agent", token: "wrong", maxAttempts: 3, baseDelay: 0.001)
        do { _ = try await bad.currentUser(); Issue.record("expected 401") } catch let e as GiteaError {
            #expect(e.status == 401 && e.message == "token is required")
        }
    }
}
