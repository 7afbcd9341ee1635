import Foundation
import GRDB
import Testing
@testable import KAControlPlane
@testable import KernelAgent

/// One comment cannot make the bot post thousands of replies, and neither can one user.
@Suite(.serialized) struct FloodTests {
    @Test func aReadOnlyUsersCommentOfThousandsOfCommandsGetsOneRefusalAndOneNote() async throws {
        let h = try Harness()
        try await h.start()
        let g = h.gitea
        let issue = g.createIssue(by: "markus", title: "flood")
        let lines = 5000
        _ = Date()
        let c = g.comment(by: "mallory", on: issue, body: Array(repeating: "/ka-promote fresnel", count: lines).joined(separator: "\n"))
        await Harness.waitFor("the flood to be stored") { h.stored(comment: c) }
        await h.settleAll()
        let replies = g.botComments(on: issue).map(\.body)
        #expect(replies.count == 2, "one refusal and one note, not \(replies.count) replies")
        #expect(replies.first?.contains("@mallory sorry, you are not allowed to run these 10 commands here; nothing was done") == true, "\(replies.first ?? "")")
        #expect(replies.last?.contains("this comment holds 5000 commands; I read at most 10 per comment (`max_commands_per_comment`). I ignored the other 4990, on lines 11–5000") == true,
                "\(replies.last ?? "")")
        #expect(!FileManager.default.fileExists(atPath: h.root.appendingPathComponent("build/fresnel/v7.0").path))
        let rows = try h.ledger.readSync { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM runs WHERE event_key = ?", arguments: ["comment:\(c)"]) }
        #expect(rows == 11, "ten commands and the note, nothing for the ignored lines")
    }

    @Test func anAllowedUsersFloodRunsTheFirstTenAndNamesTheRest() async throws {
        let h = try Harness()
        try await h.start { $0.maxCommandsPerComment = 10 }
        let g = h.gitea
        let issue = g.createIssue(by: "markus", title: "flood")
        let c = g.comment(by: "markus", on: issue, body: "please\n" + Array(repeating: "/ka-help status", count: 3000).joined(separator: "\n"))
        await Harness.waitFor("the flood to be stored") { h.stored(comment: c) }
        await h.settleAll()
        let replies = g.botComments(on: issue).map(\.body)
        #expect(replies.count == 11)
        #expect(replies.prefix(10).allSatisfy { $0.contains("USAGE: status") })
        #expect(replies.last?.contains("I ignored the other 2990, on lines 12–3001") == true, "\(replies.last ?? "")")
    }

    @Test func mixedCommandsFromAnUnauthorizedUserShareOneRefusal() async throws {
        let h = try Harness()
        try await h.start()
        let g = h.gitea
        let issue = g.createIssue(by: "markus", title: "mixed")
        g.comment(by: "markus", on: issue, body: "/ka-status")
        #expect(await h.settle { g.botComments(on: issue).count == 1 })
        let nonce = try #require(Harness.nonce(in: g.botComments(on: issue)[0].body))
        let c = g.comment(by: "mallory", on: issue, body: "/ka-promote fresnel\n/ka-help\n/ka-import x 'y' --to board/z\n/ka-yes \(nonce)")
        await Harness.waitFor("the comment to be stored") { h.stored(comment: c) }
        await h.settleAll()
        let replies = g.botComments(on: issue).dropFirst().map(\.body)
        #expect(replies.count == 2, "\(replies)")
        let refusal = try #require(replies.first { $0.contains("sorry") })
        #expect(refusal.contains("not allowed to run these 3 commands here; nothing was done"))
        #expect(refusal.contains("- `/ka-promote fresnel` (run `/ka-promote` here)"))
        #expect(refusal.contains("- `/ka-yes \(nonce)` (approve that plan)"), "a real nonce is answered as a guessed one")
        #expect(replies.contains { $0.contains("| `/ka-promote` |") }, "help is for everyone")
        #expect(try RunTests.runStates(h) == ["awaiting"], "the plan was not approved")
    }

    @Test func repliesToOneUserAreRateLimitedWithOneNotice() async throws {
        let h = try Harness()
        try await h.start { $0.replyRateLimit = ReplyRateLimit(count: 3, window: 3600) }
        let g = h.gitea
        let issue = g.createIssue(by: "markus", title: "rate")
        var last: Int64 = 0
        for _ in 0..<8 { last = g.comment(by: "mallory", on: issue, body: "/ka-status") }
        await Harness.waitFor("the comments to be stored") { h.stored(comment: last) }
        await h.settleAll()
        let replies = g.botComments(on: issue).map(\.body)
        #expect(replies.filter { $0.contains("@mallory sorry, you are not allowed") }.count == 3)
        #expect(replies.filter { $0.contains("you have had 3 replies from me in the last 3600 s (`reply_rate_limit`), so I am not answering your commands until ") }.count == 1)
        #expect(replies.count == 4, "\(replies)")
        let limited = try h.ledger.readSync { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM runs WHERE requester = 'mallory' AND state = 'rate-limited'") }
        #expect(limited == 5)
        // someone else is not held back by mallory's limit
        g.comment(by: "markus", on: issue, body: "/ka-help")
        #expect(await h.settle { g.botComments(on: issue).count == 5 })
    }
}
