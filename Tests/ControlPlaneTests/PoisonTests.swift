import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import GRDB
import Testing
@testable import KAControlPlane
@testable import KernelAgent

/// A command that kills `ka serve` while it is being handled must not kill it again on every restart.
@Suite(.serialized) struct PoisonTests {
    @Test func aCommandThatKillsTheDaemonIsFailedOnceAndTheRestartStaysUp() async throws {
        let h = try Harness()
        let g = h.gitea
        try await g.start()
        let port = ChaosTests.freePort()
        g.webhookURL = URL(string: "http://127.0.0.1:\(port)/webhook")
        var env = ChaosTests.serveEnvironment(h, port: port)
        env["KA_SERVE_FAULT"] = "abort-in-plan=promote"   // the process dies while planning any promote, as on a poison tree
        env["SWIFT_BACKTRACE"] = "enable=no"                // a symbolicated backtrace of the debug binary takes a minute
        let server = ChaosTests.Server(port: port, env: env, log: h.root.appendingPathComponent("serve.log"))
        try await server.start()
        try await Task.sleep(nanoseconds: 1_100_000_000)   // the first cursor is "now"
        let issue = g.createIssue(by: "markus", title: "poison")
        let c = g.comment(by: "markus", on: issue, body: "/ka-help\n/ka-promote ohm\n/ka-help status")
        let died = await Harness.waitFor("ka serve to die in the promote's plan") { !server.isRunning }
        #expect(died)
        #expect(server.process?.terminationReason == .uncaughtSignal && server.process?.terminationStatus == SIGABRT)

        // the same fault stays armed: a restart that handled the command again would die again
        try await server.start()
        let replied = await Harness.waitFor("a reply to each of the three commands") {
            let refs = g.botComments(on: issue).flatMap { ChaosTests.refs(in: $0.body) }
            return (0..<3).allSatisfy { refs.contains("reply-comment:\(c)-\($0)") }
        }
        #expect(replied)
        // it keeps running while the poller and the loop come round again
        let deadline = Date().addingTimeInterval(3)
        while Date() < deadline, server.isRunning { try await Task.sleep(nanoseconds: 100_000_000) }
        #expect(server.isRunning, "the restart stays up")
        #expect(await server.term() == 0)

        let replies = g.botComments(on: issue)
        let refs = replies.flatMap { ChaosTests.refs(in: $0.body) }
        for seq in 0..<3 { #expect(refs.filter { $0 == "reply-comment:\(c)-\(seq)" }.count == 1, "command \(seq) answered once: \(refs)") }
        let promote = try #require(replies.first { ChaosTests.refs(in: $0.body).contains("reply-comment:\(c)-1") }).body
        #expect(promote.contains("kernel-agent stopped while handling `/ka-promote ohm` and did not retry it; nothing was done."), "\(promote)")
        #expect(replies.contains { $0.body.contains("USAGE: status") }, "the command after the poison one still ran")
        let ledger = try Ledger(path: h.root.appendingPathComponent(".ka/control.sqlite"))
        #expect(try ledger.readSync { try String.fetchOne($0, sql: "SELECT state FROM runs WHERE event_key = ? AND seq = 1", arguments: ["comment:\(c)"]) } == "failed")
    }

    @Test func anEventStartedThreeTimesWithoutFinishingIsGivenUpWithOneReply() async throws {
        let h = try Harness()
        try await h.start(webhook: false)
        let g = h.gitea
        let issue = g.createIssue(by: "markus", title: "crashes outside a command")
        let c = g.comment(by: "markus", on: issue, body: "/ka-help\n/ka-status", webhook: false)
        #expect(try h.engine.ingest(comment: try #require(g.comments(on: issue).first { $0.id == c }).asGitea(g), issue: issue))
        // three earlier starts died before any command was claimed (e.g. while reading the comment)
        for _ in 0..<3 { _ = try h.ledger.beginEvent("comment:\(c)") }
        await h.settleAll()
        let replies = g.botComments(on: issue)
        #expect(replies.count == 1, "\(replies.map(\.body))")
        #expect(replies.first?.body.contains("kernel-agent stopped 3 times while handling this comment, so it is skipped") == true)
        #expect(replies.first?.body.contains("- `/ka-status`") == true)
    }
}

extension GiteaStandIn.Comment {
    /// The comment as the API returns it.
    func asGitea(_ g: GiteaStandIn) throws -> GiteaComment {
        let data = try JSONSerialization.data(withJSONObject: g.withLock { g.commentJSON(self) })
        return try JSONDecoder().decode(GiteaComment.self, from: data)
    }
}
