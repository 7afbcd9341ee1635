import Foundation
import Testing
@testable import KAControlPlane
@testable import KernelAgent

/// Issue 20, low: a user with no permission learns nothing from `/ka-yes <guess>`: one refusal per comment, and
/// a guessed nonce is answered exactly as a real one.
@Suite(.serialized) struct ConsentGuessTests {
    @Test func guessesGetOneRefusalWordForWordAsARealNonce() async throws {
        let h = try Harness()
        try await h.start()
        let g = h.gitea
        let issue = g.createIssue(by: "markus", title: "guessing")
        g.comment(by: "markus", on: issue, body: "/ka-status")
        #expect(await h.settle { g.botComments(on: issue).count == 1 })
        let real = try #require(Harness.nonce(in: g.botComments(on: issue)[0].body))
        let guess = String(real.reversed())

        g.comment(by: "mallory", on: issue, body: "/ka-yes \(real)")
        #expect(await h.settle { g.botComments(on: issue).count == 2 })
        g.comment(by: "mallory", on: issue, body: "/ka-yes \(guess)")
        #expect(await h.settle { g.botComments(on: issue).count == 3 })
        // word for word, but for the hidden ka:ref marker that makes each reply its own
        let answers = g.botComments(on: issue).map { $0.body.components(separatedBy: "\n\n<!-- ka:ref=").first ?? $0.body }
        #expect(answers[1] == answers[2], "real: \(answers[1])\nguess: \(answers[2])")
        #expect(answers[2].contains("not allowed"))

        // ten guesses in one comment: one reply
        let guesses = (0..<10).map { "/ka-yes \(String(format: "%08x", $0 * 7919))" }.joined(separator: "\n")
        g.comment(by: "mallory", on: issue, body: guesses)
        #expect(await h.settle { g.botComments(on: issue).count >= 4 }, "\(g.botComments(on: issue).map(\.body))")
        await h.settleAll()
        #expect(g.botComments(on: issue).count == 4, "\(g.botComments(on: issue).map(\.body))")
        #expect(g.botComments(on: issue).last?.body.contains("not allowed to run these 10 commands") == true)
        // and markus, who may run things, still hears that a guessed nonce is unknown
        g.comment(by: "markus", on: issue, body: "/ka-yes \(guess)")
        #expect(await h.settle { g.botComments(on: issue).count == 5 })
        #expect(g.botComments(on: issue).last?.body.contains("no pending plan has that nonce") == true)
    }
}
