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
        // the fault happened: the create failed after the write, and the sender adopted what it had written
        #expect(g.faultsServed.map(\.fault) == [.init(timing: .afterWrite, kind: .status500)], "\(g.faultsServed.map(\.fault))")
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
        // both faults were served: the create's after its write, the read's before the retry that answered
        #expect(g.faultsServed.map(\.fault) == [.init(timing: .afterWrite, kind: .status500), .init(timing: .afterWrite, kind: .drop)],
                "\(g.faultsServed.map(\.fault))")
    }
}

/// Writes go out in parallel across issues (up to `outbox_parallel`), one at a time and in order on each issue,
/// and every request to Gitea waits out the pause a 429 asks for.
@Suite(.serialized) struct ParallelOutboxTests {
    static let commentsRoute = OutboxTests.commentsRoute

    /// Sends until nothing is pending (each pass after the last one's retries are due), or the deadline.
    static func drainAll(_ sender: OutboxSender, _ h: Harness, timeout: Double = 60) async throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            _ = await sender.drain()
            if try h.ledger.outboxPendingCount() == 0 { return true }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        return try h.ledger.outboxPendingCount() == 0
    }

    static func withoutMarker(_ body: String) -> String {
        body.range(of: "\n\n<!-- ka:ref=").map { String(body[..<$0.lowerBound]) } ?? body
    }

    @Test func writesToOneIssueKeepTheirOrderWhileIssuesGoInParallel() async throws {
        let h = try Harness()
        try await h.start(webhook: false)
        let g = h.gitea
        let issues = (0..<8).map { g.createIssue(by: "markus", title: "order \($0)") }
        // queued round by round, so the queue interleaves the issues: a status comment, then replies and its edits
        for round in 0..<6 {
            for issue in issues {
                if round == 0 {
                    try h.ledger.enqueue(.comment(issue: issue, body: "status"), ref: "status-\(issue)")
                } else {
                    try h.ledger.enqueue(.comment(issue: issue, body: "reply \(round)"), ref: "reply-\(issue)-\(round)")
                    try h.ledger.enqueue(.editComment(targetRef: "status-\(issue)", body: "edit \(round)"), ref: "edit-\(issue)-\(round)")
                }
            }
        }
        g.setLatency(0.002...0.03)
        g.gather(4)   // the first four requests meet in flight, however loaded the machine
        let sender = OutboxSender(ledger: h.ledger, api: h.api, botLogin: "claude-noether", parallel: 4)
        #expect(try await Self.drainAll(sender, h))
        g.setLatency(nil)
        let expected = ["status"] + (1..<6).flatMap { ["reply \($0)", "edit \($0)"] }
        for issue in issues {
            let applied = g.writeOrder.filter { $0.issue == issue }.map { Self.withoutMarker($0.body) }
            #expect(applied == expected, "issue \(issue): Gitea applied \(applied)")
        }
        #expect(g.maxInFlight == 4, "in flight at once: \(g.maxInFlight)")
    }

    @Test(arguments: [2, 6])
    func atMostTheLimitIsInFlightAndTheLimitIsReached(_ limit: Int) async throws {
        let h = try Harness()
        try await h.start(webhook: false)
        let g = h.gitea
        let issues = (0..<12).map { g.createIssue(by: "markus", title: "limit \($0)") }
        for round in 0..<3 {
            for issue in issues { try h.ledger.enqueue(.comment(issue: issue, body: "r\(round)"), ref: "limit-\(issue)-\(round)") }
        }
        g.setLatency(0.01...0.03)
        // requests wait for one more than the limit to be in flight: a sender that keeps to the limit never gets
        // there (the wait times out), one that does not is seen above it
        g.gather(limit + 1, timeout: 3)
        let sender = OutboxSender(ledger: h.ledger, api: h.api, botLogin: "claude-noether", parallel: limit)
        #expect(try await Self.drainAll(sender, h))
        g.setLatency(nil)
        #expect(g.maxInFlight == limit, "at most \(limit) in flight, and that many: saw \(g.maxInFlight)")
        #expect(g.allBotComments().count == 36)
    }

    /// A 429's Retry-After holds every request to Gitea, not only the lane that met it; the write it refused
    /// lands once after the pause. `maxPauseWait` 10: the requests wait the pause out in place; 0.5: they fail
    /// without being sent and the outbox retries them when the pause is over.
    @Test(arguments: [(maxPauseWait: 10.0, httpDate: false), (maxPauseWait: 0.5, httpDate: false), (maxPauseWait: 10.0, httpDate: true)])
    func aRateLimitPausesEveryRequestForItsRetryAfterAndTheWriteLandsOnce(_ c: (maxPauseWait: Double, httpDate: Bool)) async throws {
        let h = try Harness()
        try await h.start(webhook: false)
        let g = h.gitea
        let issues = (0..<8).map { g.createIssue(by: "markus", title: "429 \($0)") }
        for round in 0..<3 {
            for issue in issues { try h.ledger.enqueue(.comment(issue: issue, body: "r\(round)"), ref: "rl-\(issue)-\(round)") }
        }
        let api = DefaultGiteaClient(baseURL: g.baseURL, owner: g.owner, repo: g.repo, token: "bot-token", maxAttempts: 10, baseDelay: 0.005,
                                     maxPauseWait: c.maxPauseWait)
        let pause = 2.0
        // an HTTP-date has whole seconds: the pause ends at the date the stand-in names
        let until = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 + pause + 1).rounded(.up))
        let header: String
        if c.httpDate {
            let f = DateFormatter()
            f.locale = Locale(identifier: "en_US_POSIX"); f.timeZone = TimeZone(identifier: "GMT"); f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
            header = f.string(from: until)
        } else {
            header = "\(Int(pause))"
        }
        g.setLatency(0.005...0.015)
        let before = g.requestLog.count
        g.scheduleRateLimit(method: "POST", template: Self.commentsRoute, retryAfter: header)
        let sender = OutboxSender(ledger: h.ledger, api: api, botLogin: "claude-noether", parallel: 4)
        #expect(try await Self.drainAll(sender, h))
        g.setLatency(nil)
        let log = Array(g.requestLog.dropFirst(before))
        let limited = log.filter { $0.status == 429 }
        #expect(limited.count == 1, "one 429 served")
        let t429 = try #require(limited.first).answered
        let resumes = c.httpDate ? until : t429.addingTimeInterval(pause)
        // requests that reached the stand-in during the pause: only those already sent when the 429 came back,
        // at most one per other lane in flight
        let during = log.filter { $0.arrived > t429 && $0.arrived < resumes }
        #expect(during.count <= 3, "\(during.count) requests arrived during the pause: \(during.map { "\($0.method) \($0.path) +\($0.arrived.timeIntervalSince(t429))" })")
        #expect(log.contains { $0.arrived >= resumes }, "the work went on after the pause")
        // every write landed exactly once, the refused one included
        for issue in issues {
            #expect(g.botComments(on: issue).map { Self.withoutMarker($0.body) } == ["r0", "r1", "r2"], "issue \(issue)")
        }
    }

    @Test func aFailedWriteHoldsBackItsIssueOnlyAndARefusedOneHoldsNothing() async throws {
        let h = try Harness()
        try await h.start(webhook: false)
        let g = h.gitea
        let held = g.createIssue(by: "markus", title: "held"), free = g.createIssue(by: "markus", title: "free")
        let refusedIssue = g.createIssue(by: "markus", title: "refused")
        try h.ledger.enqueue(.comment(issue: held, body: "first"), ref: "held-1")
        try h.ledger.enqueue(.comment(issue: held, body: "second"), ref: "held-2")
        try h.ledger.enqueue(.comment(issue: free, body: "other issue"), ref: "free-1")
        // the bot's status comment was deleted on Gitea: its edit is refused (404), forever
        try h.ledger.enqueue(.comment(issue: refusedIssue, body: "status"), ref: "gone")
        try h.ledger.writeSync { try $0.execute(sql: "UPDATE outbox SET done = 1, gitea_id = 999999 WHERE ref = 'gone'") }
        try h.ledger.enqueue(.editComment(targetRef: "gone", body: "done"), ref: "gone-edit")
        try h.ledger.enqueue(.comment(issue: refusedIssue, body: "after the refused edit"), ref: "after-refused")
        // the first write to `held` fails before the write, on every try of this pass (1 + the create's retries)
        let heldPath = "/api/v1/repos/\(g.owner)/\(g.repo)/issues/\(held)/comments"
        for _ in 0...OutboxSender.createRetries {
            g.schedule(.init(timing: .beforeWrite, kind: .status500), method: "POST", template: OutboxTests.commentsRoute, path: heldPath)
        }
        let sender = OutboxSender(ledger: h.ledger, api: h.api, botLogin: "claude-noether", parallel: 4)
        #expect(await sender.drain() == 1, "only the other issue's write lands")
        #expect(g.faultsServed.count == OutboxSender.createRetries + 1)
        #expect(g.botComments(on: held).isEmpty && g.botComments(on: free).count == 1)
        let second = try h.ledger.readSync { try Int.fetchOne($0, sql: "SELECT attempts FROM outbox WHERE ref = 'held-2'") }
        #expect(second == 0, "the second write waits behind the first")
        // later passes: the refused edit (404) waits for its retry without holding its issue; the held issue
        // lands in order once its first write's retry is due
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, g.botComments(on: held).count < 2 || g.botComments(on: refusedIssue).count < 1 {
            _ = await sender.drain()
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        #expect(g.botComments(on: held).map { Self.withoutMarker($0.body) } == ["first", "second"])
        #expect(g.botComments(on: refusedIssue).map { Self.withoutMarker($0.body) } == ["after the refused edit"])
        let edit = try h.ledger.readSync { try Row.fetchOne($0, sql: "SELECT done, refused, last_error FROM outbox WHERE ref = 'gone-edit'") }
        #expect(edit?["done"] == 0 && edit?["refused"] == 1, "the refused edit is kept, marked refused: \(String(describing: edit))")
        #expect((edit?["last_error"] as String?)?.contains("404") == true)
    }
}

@Suite struct RetryAfterTests {
    @Test func secondsAndTheThreeHTTPDateFormsAreRead() throws {
        let now = try #require(GiteaTime.parse("1994-11-06T08:49:30Z"))
        #expect(RetryAfter.seconds("120", now: now) == 120)
        #expect(RetryAfter.seconds(" 0 ", now: now) == 0)
        #expect(RetryAfter.seconds("Sun, 06 Nov 1994 08:49:37 GMT", now: now) == 7)      // IMF-fixdate
        #expect(RetryAfter.seconds("Sunday, 06-Nov-94 08:49:37 GMT", now: now) == 7)     // RFC 850
        #expect(RetryAfter.seconds("Sun Nov  6 08:49:37 1994", now: now) == 7)           // asctime
        #expect(RetryAfter.seconds("Sun, 06 Nov 1994 08:49:00 GMT", now: now) == 0, "a date passed means no wait")
        for junk in [nil, "", "-5", "1.5", "soon", "٣", "Sun, 06 Nov 1994"] {
            #expect(RetryAfter.seconds(junk, now: now) == nil, "\(String(describing: junk))")
        }
    }

    @Test func outboxParallelIsReadAndCheckedWithWhereItCameFrom() throws {
        let env = ["KA_GITEA_URL": "https://x", "KA_REPO": "a/b", "KA_GITEA_TOKEN": "t"]
        #expect(try ControlPlaneConfig.load(file: nil, env: env).outboxParallel == 4)
        #expect(try ControlPlaneConfig.load(file: nil, env: env.merging(["KA_OUTBOX_PARALLEL": "16"]) { $1 }).outboxParallel == 16)
        for bad in ["0", "65", "four", "-1", ""] {
            do {
                _ = try ControlPlaneConfig.load(file: nil, env: env.merging(["KA_OUTBOX_PARALLEL": bad]) { $1 })
                Issue.record("KA_OUTBOX_PARALLEL=\(bad) was accepted")
            } catch let e as KAError {
                #expect(e.description.contains("KA_OUTBOX_PARALLEL") && e.description.contains("outbox_parallel must be a whole number from 1 to 64, got '\(bad)'"),
                        "\(e.description)")
                #expect(e.hint?.contains("default is 4") == true)
            }
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ka-cfg-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("ka.yaml").path
        try "gitea_url: https://git.example\nrepo: a/b\noutbox_parallel: 100\n".write(toFile: file, atomically: true, encoding: .utf8)
        do { _ = try ControlPlaneConfig.load(file: file, env: ["KA_GITEA_TOKEN": "t"]); Issue.record("outbox_parallel: 100 was accepted") } catch let e as KAError {
            #expect(e.description.contains("ka.yaml:3:"), "names the line: \(e.description)")
        }
    }
}
