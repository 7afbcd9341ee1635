import Foundation
import GRDB
import Testing
@testable import KAControlPlane
@testable import KernelAgent

@Suite(.serialized) struct RunTests {
    static func runStates(_ h: Harness) throws -> [String] {
        try h.ledger.readSync { try String.fetchAll($0, sql: "SELECT state FROM runs WHERE nonce IS NOT NULL ORDER BY id") }
    }

    /// Plans `commands` on one issue and approves them all in one comment; returns when the approvals are stored
    /// and handled (the runs are queued, none started).
    func approve(_ h: Harness, _ commands: [String]) async throws -> Int {
        let g = h.gitea
        let issue = g.createIssue(by: "markus", title: "runs")
        g.comment(by: "markus", on: issue, body: commands.joined(separator: "\n"))
        #expect(await h.settle { g.botComments(on: issue).count == commands.count })
        let nonces = g.botComments(on: issue).compactMap { Harness.nonce(in: $0.body) }
        #expect(nonces.count == commands.count)
        let yes = g.comment(by: "markus", on: issue, body: nonces.map { "/ka-yes \($0)" }.joined(separator: "\n"))
        await Harness.waitFor("the approvals to be stored") { h.stored(comment: yes) }
        try await h.engine.processPending()
        #expect(try Self.runStates(h) == Array(repeating: "queued", count: commands.count))
        return issue
    }

    func approve(_ h: Harness, host: String, count: Int) async throws -> Int {
        try await approve(h, Array(repeating: "/ka-promote \(host)", count: count))
    }

    @Test func runsOnOneHostWaitInLineAndSayBehindWhat() async throws {
        let h = try Harness()
        try await h.start()
        let issue = try await approve(h, host: "fresnel", count: 2)
        let started = try h.engine.startRunnable()
        #expect(started.count == 1, "same host: one at a time")
        for t in started { await t.value }
        _ = await h.loop.outbox.drain()
        _ = await h.loop.outbox.drain()
        let bodies = h.gitea.botComments(on: issue).map(\.body)
        #expect(bodies.contains { $0.contains("waits behind run #") && $0.contains("on host fresnel") }, "\(bodies)")
        #expect(await h.settle { h.gitea.botComments(on: issue).filter { $0.body.contains("✅ done") }.count == 2 })
    }

    @Test func differentLanesRunInParallelUpToMaxParallelRuns() async throws {
        let h = try Harness()
        var faults = ServeFaults()
        faults.set(.sleep(0.6), in: .run, verb: "promote")   // long enough that the runs must overlap to finish together
        faults.set(.sleep(0.6), in: .run, verb: "status")
        try await h.start(faults: faults) { $0.maxParallelRuns = 2 }
        // three runs on three lanes: host fresnel, host ohm, and a read-only status
        _ = try await approve(h, ["/ka-promote fresnel", "/ka-promote ohm", "/ka-status"])
        let first = try h.engine.startRunnable()
        #expect(first.count == 2, "two lanes free, max_parallel_runs 2")
        #expect(try h.engine.startRunnable().isEmpty, "the third waits while two run")
        for t in first { await t.value }
        let second = try h.engine.startRunnable()
        #expect(second.count == 1)
        for t in second { await t.value }
        struct Span { let id: Int64; let start: Double; let end: Double }
        let spans = try h.ledger.readSync { db in
            try Row.fetchAll(db, sql: "SELECT id, state, started_at, finished_at FROM runs WHERE nonce IS NOT NULL ORDER BY id").map { r -> Span in
                #expect(r["state"] as String == "done", "run #\(r["id"] as Int64) ended \(r["state"] as String)")
                return Span(id: r["id"], start: r["started_at"] ?? 0, end: r["finished_at"] ?? 0)
            }
        }
        #expect(spans.count == 3)
        guard spans.count == 3 else { return }
        #expect(spans[0].start < spans[1].end && spans[1].start < spans[0].end, "the first two overlap: \(spans)")
        #expect(spans[2].start >= min(spans[0].end, spans[1].end), "the third starts after a slot frees: \(spans)")
        // never more than max_parallel_runs at once
        var edges: [(at: Double, delta: Int)] = []
        for s in spans { edges.append((s.start, 1)); edges.append((s.end, -1)) }
        edges.sort { a, b in a.at < b.at || (a.at == b.at && a.delta < b.delta) }
        var running = 0, peak = 0
        for e in edges { running += e.delta; peak = max(peak, running) }
        #expect(peak == 2)
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
        #expect(try h.engine.startRunnable().isEmpty, "never silently re-run")
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
        let r = try await Harness.runOffPool([ChaosTests.kaBinary, "promote", "ohm"], cwd: h.root, environment: env)
        #expect(r.status == 0, "\(r.stderrText)")
        let audit = h.gitea.withLock { h.gitea.issues.values.first { $0.title == "[ka:audit] promote ohm" } }
        let a = try #require(audit, "no audit issue")
        #expect(a.body.contains("promoted ohm: 1 patch(es)"))
        #expect(h.gitea.withLock { a.labels.compactMap { h.gitea.labels[$0]?.name } } == ["ka:audit"])
        let refused = try await Harness.runOffPool([ChaosTests.kaBinary, "abandon", "x"], cwd: h.root, environment: env)
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
        #expect(!FileManager.default.fileExists(atPath: h.root.appendingPathComponent("build/ohm/v7.0").path))
    }

    @Test func clientSurfaces4xxWithGiteasMessageAndDoesNotRetryThem() async throws {
        let h = try Harness()
        try await h.start(webhook: false)
        let before = h.gitea.requestLog.count
        do {
            _ = try await h.api.getIssue(999)
            Issue.record("expected a 404")
        } catch let e as GiteaError {
            #expect(e.status == 404)
            #expect(e.message == "not found")
            #expect(e.description == "Gitea GET /repos/marfrit/kernel-agent/issues/999 → 404: not found")
        }
        #expect(h.gitea.requestLog.count - before == 1, "a 4xx is not retried")
        let bad = DefaultGiteaClient(baseURL: h.gitea.baseURL, owner: "marfrit", repo: "kernel-agent", token: "wrong", maxAttempts: 3, baseDelay: 0.001)
        do { _ = try await bad.currentUser(); Issue.record("expected 401") } catch let e as GiteaError {
            #expect(e.status == 401 && e.message == "token is required")
        }
    }
}
