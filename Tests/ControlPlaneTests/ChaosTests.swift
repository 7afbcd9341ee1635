import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import GRDB
import Testing
@testable import KAControlPlane
@testable import KernelAgent

/// The real `ka serve` binary against the stand-in, under chaos: commands and consented promotes, manual
/// redeliveries, the poller overlapping the webhooks, Gitea failing a share of the calls (half of them AFTER
/// the write: a 500 or a dropped connection), and SIGKILL at random points. Every command is answered exactly
/// once, no two bot comments carry the same `ka:ref`, every approved run ends, and the faults and kills it
/// claims to survive are counted and must have happened. The seed is printed; `KA_CHAOS_SEED` repeats a run.
@Suite(.serialized) struct ChaosTests {
    static var kaBinary: String {
        if let e = ProcessInfo.processInfo.environment["KA_BIN"] { return e }
        for c in [".build/debug/ka", ".build/x86_64-unknown-linux-gnu/debug/ka", ".build/aarch64-unknown-linux-gnu/debug/ka"] {
            let p = Harness.projectRoot.appendingPathComponent(c).path
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return Harness.projectRoot.appendingPathComponent(".build/debug/ka").path
    }

    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// The environment that points `ka serve` at the stand-in and the harness's checkout.
    static func serveEnvironment(_ h: Harness, port: Int) -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["KA_GITEA_URL"] = h.gitea.baseURL.absoluteString
        env["KA_REPO"] = "\(h.gitea.owner)/\(h.gitea.repo)"
        env["KA_GITEA_TOKEN"] = "bot-token"
        env["KA_WEBHOOK_SECRET"] = "test-secret"
        env["KA_LISTEN"] = "127.0.0.1:\(port)"
        env["KA_POLL_INTERVAL"] = "1"
        env["KA_ROOT"] = h.root.path
        env["KA_STATE_DIR"] = h.root.appendingPathComponent(".ka").path
        env["KA_LOG_LEVEL"] = "warning"
        env["KA_REPLY_RATE_LIMIT"] = "off"
        return env
    }

    final class Server {
        let port: Int
        var env: [String: String]
        var process: Process?
        let log: URL
        /// After the binary: `serve` and its flags.
        var arguments = ["serve"]
        init(port: Int, env: [String: String], log: URL) { self.port = port; self.env = env; self.log = log }

        func start() async throws {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: ChaosTests.kaBinary)
            p.arguments = arguments
            p.environment = env
            if !FileManager.default.fileExists(atPath: log.path) { FileManager.default.createFile(atPath: log.path, contents: nil) }
            let handle = try FileHandle(forWritingTo: log)
            handle.seekToEndOfFile()
            p.standardError = handle
            p.standardOutput = handle
            try p.run()
            process = p
            for _ in 0..<500 {
                if let (d, _) = try? await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)/healthz")!),
                   String(decoding: d, as: UTF8.self) == "ok\n" { return }
                if !p.isRunning { break }
                try await Task.sleep(nanoseconds: 20_000_000)
            }
            throw KAError.failure("ka serve did not come up", (try? String(contentsOf: log, encoding: .utf8)) ?? "")
        }

        var isRunning: Bool { process?.isRunning ?? false }

        /// Waits for the exit without blocking a thread of the (2-thread) cooperative pool the other tests share.
        func exited() async -> Bool {
            guard let p = process else { return true }
            for _ in 0..<3000 where p.isRunning { try? await Task.sleep(nanoseconds: 10_000_000) }
            return !p.isRunning
        }

        func kill9() async { if let p = process, p.isRunning { kill(p.processIdentifier, SIGKILL); _ = await exited() } }
        /// For a test's `defer`: the signal only, without waiting for the exit.
        func killNow() { if let p = process, p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        func termNow() { if let p = process, p.isRunning { kill(p.processIdentifier, SIGTERM) } }
        func term() async -> Int32 {
            guard let p = process, p.isRunning else { return -1 }
            kill(p.processIdentifier, SIGTERM)
            return await exited() ? p.terminationStatus : -2
        }
    }

    /// Work the ledger holds that is not finished: unhandled events, unsent writes, commands and runs in progress.
    static func pendingWork(stateDir: URL) throws -> Int {
        let ledger = try Ledger(path: stateDir.appendingPathComponent("control.sqlite"))
        return try ledger.readSync { db in
            try Int.fetchOne(db, sql: """
                SELECT (SELECT COUNT(*) FROM events WHERE processed = 0) + (SELECT COUNT(*) FROM outbox WHERE done = 0)
                     + (SELECT COUNT(*) FROM runs WHERE state IN ('handling', 'queued', 'running'))
                """) ?? 0
        }
    }

    static func refs(in body: String) -> [String] {
        var out: [String] = []
        var rest = Substring(body)
        while let r = rest.range(of: "<!-- ka:ref=") {
            let tail = rest[r.upperBound...]
            guard let end = tail.range(of: " -->") else { break }
            out.append(String(tail[..<end.lowerBound]))
            rest = tail[end.upperBound...]
        }
        return out
    }

    @Test func commandsAndRunsSurviveFaultsAfterTheWriteAndSigkills() async throws {
        let seed = ProcessInfo.processInfo.environment["KA_CHAOS_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...UInt64(Int64.max))
        print("ChaosTests seed \(seed) (repeat with KA_CHAOS_SEED=\(seed))")
        var rng = SplitMix64(seed: seed)
        let h = try Harness()
        let g = h.gitea
        try await g.start()
        let port = Self.freePort()
        g.webhookURL = URL(string: "http://127.0.0.1:\(port)/webhook")
        let server = Server(port: port, env: Self.serveEnvironment(h, port: port), log: h.root.appendingPathComponent("serve.log"))
        try await server.start()
        try await Task.sleep(nanoseconds: 1_100_000_000)   // the first cursor is "now"
        g.setChaos(.init(rate: 0.2, afterShare: 0.5, dropShare: 0.25), seed: seed)
        let issues = (0..<8).map { g.createIssue(by: "markus", title: "chaos \($0)") }
        let total = 160
        var commands: [Int64] = []
        var approvals: [Int64] = []
        var approved = Set<String>()
        var killsWithPendingWork = 0, kills = 0
        let killAt = Set((0..<4).map { _ in Int.random(in: 20..<(total - 20), using: &rng) })
        func approvePlans() {
            for issue in issues {
                for c in g.botComments(on: issue) {
                    guard let nonce = Harness.nonce(in: c.body), approved.insert(nonce).inserted else { continue }
                    approvals.append(g.comment(by: "markus", on: issue, body: "/ka-yes \(nonce)"))
                }
            }
        }
        func killAndRestart() async throws {
            await server.kill9()
            kills += 1
            if try Self.pendingWork(stateDir: h.root.appendingPathComponent(".ka")) > 0 { killsWithPendingWork += 1 }
            try await Task.sleep(nanoseconds: UInt64.random(in: 0...200_000_000, using: &rng))
            try await server.start()
        }
        for n in 0..<total {
            let issue = issues[Int.random(in: 0..<issues.count, using: &rng)]
            let roll = rng.unit()
            let body = roll < 0.1 ? "/ka-promote ohm" : roll < 0.25 ? "/ka-status" : "/ka-help"
            let id = g.comment(by: "markus", on: issue, body: body)
            commands.append(id)
            if rng.unit() < 0.2 {   // a manual redelivery: same comment, new delivery id
                let payload = g.withLock { g.commentPayload(g.comments[id]!, action: "created") }
                g.sendWebhook(event: "issue_comment", type: "issue_comment", payload: payload)
            }
            if killAt.contains(n) { try await killAndRestart() }
            if n % 20 == 0 { approvePlans(); try await Task.sleep(nanoseconds: 30_000_000) }
        }
        // approve what was planned meanwhile, and one more kill while it catches up
        try await Task.sleep(nanoseconds: 1_000_000_000)
        approvePlans()
        try await killAndRestart()

        func replyCounts() -> [String: Int] {
            var counts: [String: Int] = [:]
            for c in g.allBotComments() { for r in Self.refs(in: c.body) { counts[r, default: 0] += 1 } }
            return counts
        }
        func unanswered() -> [Int64] {
            let counts = replyCounts()
            return commands.filter { counts["reply-comment:\($0)-0"] == nil }
        }
        let deadline = Date().addingTimeInterval(150)
        while Date() < deadline {
            approvePlans()   // plans answered late are approved too
            if unanswered().isEmpty, try Self.pendingWork(stateDir: h.root.appendingPathComponent(".ka")) == 0 { break }
            try await Task.sleep(nanoseconds: 250_000_000)
        }
        g.setChaos(nil)
        #expect(await server.term() == 0, "SIGTERM drains and exits cleanly")

        // every command answered once; no reference posted twice (replies, status comments, notes)
        let counts = replyCounts()
        let missing = unanswered()
        let doubled = counts.filter { $0.value > 1 }
        #expect(missing.isEmpty, "\(missing.count) commands unanswered, e.g. \(missing.prefix(5)) (seed \(seed))")
        #expect(doubled.isEmpty, "\(doubled.count) references posted more than once, e.g. \(Array(doubled.prefix(5))) (seed \(seed))")

        // every approval: the run it queued ended (done, or failed by a kill), with one status comment; or the
        // approval itself was answered (interrupted while handling, or the plan was already gone)
        let ledger = try Ledger(path: h.root.appendingPathComponent(".ka/control.sqlite"))
        var runsEnded = 0
        for a in approvals {
            let detail = try ledger.readSync { try String.fetchOne($0, sql: "SELECT detail FROM runs WHERE event_key = ? AND seq = 0", arguments: ["comment:\(a)"]) }
            if let detail, detail.hasPrefix("run #"), let run = Int64(detail.dropFirst(5)) {
                let state = try ledger.readSync { try String.fetchOne($0, sql: "SELECT state FROM runs WHERE id = ?", arguments: [run]) }
                #expect(state == "done" || state == "failed", "run #\(run) ended \(state ?? "nowhere") (seed \(seed))")
                let status = g.allBotComments().filter { Self.refs(in: $0.body).contains("status-\(run)") }
                #expect(status.count == 1, "run #\(run): \(status.count) status comments (seed \(seed))")
                #expect(status.first.map { $0.body.hasPrefix("✅ done") || $0.body.hasPrefix("❌ failed") } == true,
                        "run #\(run) status: \(status.first?.body.prefix(80) ?? "none") (seed \(seed))")
                runsEnded += 1
            } else {
                #expect(counts["reply-comment:\(a)-0"] == 1, "approval \(a) neither queued a run nor was answered (seed \(seed))")
            }
        }
        #expect(runsEnded > 0, "some consented promotes ran (seed \(seed))")

        // the faults it claims to survive happened
        let faults = g.faultsServed
        let writes = faults.filter { $0.method != "GET" }
        let after = writes.filter { $0.fault.timing == .afterWrite }
        print("ChaosTests: \(faults.count) faults (\(writes.count) on writes, \(after.count) of them after the write), "
              + "\(kills) kills (\(killsWithPendingWork) with work pending), \(approvals.count) approvals, \(runsEnded) runs ended")
        #expect(faults.contains { $0.fault.kind == .status500 && $0.fault.timing == .beforeWrite })
        #expect(after.contains { $0.fault.kind == .status500 }, "a 500 after a write was served")
        #expect(after.contains { $0.template.hasSuffix("/comments") && $0.method == "POST" }, "a comment create failed after it landed")
        #expect(faults.contains { $0.fault.kind == .drop }, "a connection was dropped")
        #expect(killsWithPendingWork > 0, "a kill landed while work was pending (\(kills) kills)")
    }
}
