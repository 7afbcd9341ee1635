import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing
@testable import KAControlPlane
@testable import KernelAgent

/// The real `ka serve` binary against the stand-in: 1,000 commands, duplicated deliveries, the poller
/// overlapping the webhooks, Gitea failing 10% of calls, and SIGKILL at random points. Every command must be
/// answered exactly once.
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

    final class Server {
        let port: Int
        let env: [String: String]
        var process: Process?
        let log: URL
        init(port: Int, env: [String: String], log: URL) { self.port = port; self.env = env; self.log = log }

        func start() async throws {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: ChaosTests.kaBinary)
            p.arguments = ["serve"]
            p.environment = env
            FileManager.default.createFile(atPath: log.path, contents: nil)
            let handle = try FileHandle(forWritingTo: log)
            handle.seekToEndOfFile()
            p.standardError = handle
            p.standardOutput = handle
            try p.run()
            process = p
            for _ in 0..<300 {
                if let (d, _) = try? await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)/healthz")!),
                   String(decoding: d, as: UTF8.self) == "ok\n" { return }
                try await Task.sleep(nanoseconds: 20_000_000)
            }
            throw KAError.failure("ka serve did not come up", (try? String(contentsOf: log, encoding: .utf8)) ?? "")
        }

        func kill9() { if let p = process, p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        func term() -> Int32 {
            guard let p = process, p.isRunning else { return -1 }
            kill(p.processIdentifier, SIGTERM); p.waitUntilExit(); return p.terminationStatus
        }
    }

    @Test func thousandCommandsDuplicatesPollOverlapAndSigkillAreEachAnsweredOnce() async throws {
        let h = try Harness()
        let g = h.gitea
        try await g.start()
        let port = Self.freePort()
        g.webhookURL = URL(string: "http://127.0.0.1:\(port)/webhook")
        var env = ProcessInfo.processInfo.environment
        env["KA_GITEA_URL"] = g.baseURL.absoluteString
        env["KA_REPO"] = "\(g.owner)/\(g.repo)"
        env["KA_GITEA_TOKEN"] = "bot-token"
        env["KA_WEBHOOK_SECRET"] = "test-secret"
        env["KA_LISTEN"] = "127.0.0.1:\(port)"
        env["KA_POLL_INTERVAL"] = "1"
        env["KA_ROOT"] = h.root.path
        env["KA_STATE_DIR"] = h.root.appendingPathComponent(".ka").path
        env["KA_LOG_LEVEL"] = "warning"
        let server = Server(port: port, env: env, log: h.root.appendingPathComponent("serve.log"))
        try await server.start()
        try await Task.sleep(nanoseconds: 1_100_000_000)   // the first cursor is "now"
        g.failureRate = 0.1
        let issues = (0..<10).map { g.createIssue(by: "markus", title: "chaos \($0)") }
        var commands: [Int64] = []
        let killAt = Set((0..<4).map { _ in Int.random(in: 50..<950) })
        for n in 0..<1000 {
            let issue = issues[n % issues.count]
            let id = g.comment(by: "markus", on: issue, body: n % 3 == 0 ? "/ka-status" : "/ka-help")
            commands.append(id)
            if n % 5 == 0 {   // a manual redelivery: same comment, new delivery id
                let payload = g.withLock { g.commentPayload(g.comments[id]!, action: "created") }
                g.sendWebhook(event: "issue_comment", type: "issue_comment", payload: payload)
            }
            if killAt.contains(n) {
                server.kill9()
                try await Task.sleep(nanoseconds: UInt64.random(in: 0...300_000_000))
                try await server.start()
            }
            if n % 50 == 0 { try await Task.sleep(nanoseconds: 10_000_000) }
        }
        func answered() -> [Int64: Int] {
            var counts: [Int64: Int] = [:]
            for issue in issues {
                for c in g.botComments(on: issue) {
                    guard let r = c.body.range(of: "ka:ref=reply-comment:") else { continue }
                    let rest = c.body[r.upperBound...]
                    if let id = Int64(rest.prefix { $0.isNumber }) { counts[id, default: 0] += 1 }
                }
            }
            return counts
        }
        // one more kill while it catches up
        try await Task.sleep(nanoseconds: 1_000_000_000)
        server.kill9()
        try await server.start()
        let deadline = Date().addingTimeInterval(240)
        while Date() < deadline, answered().count < commands.count { try await Task.sleep(nanoseconds: 250_000_000) }
        g.failureRate = 0
        try await Task.sleep(nanoseconds: 2_000_000_000)   // anything still in the outbox would land now
        #expect(server.term() == 0, "SIGTERM drains and exits cleanly")
        let counts = answered()
        let missing = commands.filter { counts[$0] == nil }
        let doubled = counts.filter { $0.value > 1 }
        #expect(missing.isEmpty, "\(missing.count) commands unanswered, e.g. \(missing.prefix(5))")
        #expect(doubled.isEmpty, "\(doubled.count) commands answered more than once, e.g. \(Array(doubled.prefix(5)))")
        #expect(counts.count == 1000)
    }
}
