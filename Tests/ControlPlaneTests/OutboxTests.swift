import Foundation
import GRDB
import Testing
@testable import KAControlPlane
@testable import KernelAgent

/// A create whose answer is lost after Gitea wrote it (a 500 or a dropped connection behind a proxy) is
/// adopted by its marker before the retry, in the same process: one comment, one issue.
@Suite(.serialized) struct OutboxTests {
    static let commentsRoute = "repos/{owner}/{repo}/issues/{index}/comments"

    func outboxRow(_ h: Harness, ref: String) throws -> (done: Bool, giteaID: Int64?, attempts: Int) {
        try h.ledger.readSync { db in
            let r = try #require(try Row.fetchOne(db, sql: "SELECT done, gitea_id, attempts FROM outbox WHERE ref = ?", arguments: [ref]))
            return (r["done"], r["gitea_id"], r["attempts"])
        }
    }

    @Test(arguments: [GiteaStandIn.FaultKind.status500, .drop])
    func aCommentCreateThatFailsAfterTheWriteIsAdoptedNotRepeated(_ kind: GiteaStandIn.FaultKind) async throws {
        let h = try Harness()
        try await h.start(webhook: false)
        let g = h.gitea
        let issue = g.createIssue(by: "markus", title: "outbox")
        try h.ledger.enqueue(.comment(issue: issue, body: "hello once"), ref: "reply-test-0")
        g.schedule(.init(timing: .afterWrite, kind: kind), method: "POST", template: Self.commentsRoute)
        let sent = await h.loop.outbox.drain()
        #expect(sent == 1, "landed in the same drain, after a look for the marker")
        #expect(g.faultsServed.map(\.fault) == [.init(timing: .afterWrite, kind: kind)], "the fault was served")
        let comments = g.botComments(on: issue)
        #expect(comments.count == 1, "one comment, not \(comments.count)")
        #expect(comments.first?.body == "hello once\n\n<!-- ka:ref=reply-test-0 -->")
        let row = try outboxRow(h, ref: "reply-test-0")
        #expect(row.done && row.giteaID == comments.first?.id, "the outbox adopted the comment that landed")
        #expect(g.requestLog.filter { $0.method == "POST" && $0.template == Self.commentsRoute }.count == 1, "the create was sent once")
    }

    @Test func aCreateThatFailsBeforeTheWriteIsRetriedAndLandsOnce() async throws {
        let h = try Harness()
        try await h.start(webhook: false)
        let g = h.gitea
        let issue = g.createIssue(by: "markus", title: "outbox")
        try h.ledger.enqueue(.comment(issue: issue, body: "hello"), ref: "reply-test-1")
        g.schedule(.init(timing: .beforeWrite, kind: .status500), method: "POST", template: Self.commentsRoute)
        g.schedule(.init(timing: .beforeWrite, kind: .drop), method: "POST", template: Self.commentsRoute)
        #expect(await h.loop.outbox.drain() == 1)
        #expect(g.faultsServed.count == 2)
        #expect(g.botComments(on: issue).count == 1)
    }

    @Test func anIssueCreateThatFailsAfterTheWriteIsAdopted() async throws {
        let h = try Harness()
        try await h.start(webhook: false)
        let g = h.gitea
        try h.ledger.enqueue(.issue(title: "[ka:audit] promote ohm", body: "done", labels: []), ref: "audit-test")
        g.schedule(.init(timing: .afterWrite, kind: .status500), method: "POST", template: "repos/{owner}/{repo}/issues")
        #expect(await h.loop.outbox.drain() == 1)
        let filed = g.withLock { g.issues.values.filter { $0.title == "[ka:audit] promote ohm" } }
        #expect(filed.count == 1, "one issue, not \(filed.count)")
        #expect(try outboxRow(h, ref: "audit-test").giteaID == filed.first.map { Int64($0.number) })
    }

    @Test func aMarkerInSomeoneElsesCommentIsNotAdopted() async throws {
        let h = try Harness()
        try await h.start(webhook: false)
        let g = h.gitea
        let issue = g.createIssue(by: "markus", title: "outbox")
        // a user copies the marker the bot would put on its reply, hoping to silence it
        g.comment(by: "mallory", on: issue, body: "hush <!-- ka:ref=reply-test-2 -->", webhook: false)
        try h.ledger.enqueue(.comment(issue: issue, body: "the real reply"), ref: "reply-test-2")
        // an earlier attempt was cut short (a kill), so the sender looks for the marker first
        let id = try #require(try h.ledger.readSync { try Int64.fetchOne($0, sql: "SELECT id FROM outbox WHERE ref = 'reply-test-2'") })
        try h.ledger.markAttempt(id)
        #expect(await h.loop.outbox.drain() == 1)
        let mine = g.botComments(on: issue)
        #expect(mine.count == 1 && mine.first?.body.hasPrefix("the real reply") == true, "\(mine.map(\.body))")
        #expect(try outboxRow(h, ref: "reply-test-2").giteaID == mine.first?.id)
    }

    @Test func theClientNeverRepeatsACreateButRepeatsWhatIsSafe() async throws {
        let h = try Harness()
        try await h.start(webhook: false)
        let g = h.gitea
        let issue = g.createIssue(by: "markus", title: "client")
        g.schedule(.init(timing: .afterWrite, kind: .status500), method: "POST", template: Self.commentsRoute)
        await #expect(throws: GiteaError.self) { _ = try await h.api.createComment(issue: issue, body: "x") }
        #expect(g.botComments(on: issue).count == 1, "it landed once and was not sent again")
        g.schedule(.init(timing: .afterWrite, kind: .drop), method: "GET", template: "repos/{owner}/{repo}/issues/{index}")
        #expect(try await h.api.getIssue(issue).number == issue, "a read is retried")
    }
}
