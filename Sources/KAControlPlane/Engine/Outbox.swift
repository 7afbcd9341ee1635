import Foundation
import GRDB
import KernelAgent

/// Every write to Gitea, stored before it is sent and retried until Gitea takes it. A create carries a hidden
/// `<!-- ka:ref=… -->` marker; after a crash between Gitea's 201 and our bookkeeping, the next attempt finds
/// the marker and adopts the existing comment or issue instead of posting a second one.
package enum OutboxOp: Codable, Sendable, Equatable {
    case comment(issue: Int, body: String)
    case editComment(targetRef: String, body: String)
    case reaction(commentID: Int64, content: String)
    case issue(title: String, body: String, labels: [String])
    case editIssue(number: Int, body: String?, state: String?)
    /// Closes the issue a `.issue` write with ref `targetRef` created, after a comment saying why (a record issue's
    /// outcome: [ka:installable] once installed). Waits until that issue exists.
    case closeIssue(targetRef: String, comment: String)
}

extension OutboxOp {
    /// The ref of the write this one edits, which must have landed first.
    var target: String? {
        switch self {
        case let .editComment(target, _), let .closeIssue(target, _): return target
        default: return nil
        }
    }
}

extension Ledger {
    /// Queues a write. With a `ref`, enqueuing the same ref twice is a no-op (idempotent producers).
    @discardableResult
    package func enqueue(_ op: OutboxOp, ref: String? = nil, in db: Database? = nil, at now: Date = Date()) throws -> Bool {
        let payload = String(decoding: try JSONEncoder().encode(op), as: UTF8.self)
        func insert(_ db: Database) throws -> Bool {
            try db.cachedStatement(sql: "INSERT OR IGNORE INTO outbox (ref, kind, payload, next_at, created_at) VALUES (?, ?, ?, ?, ?)")
                .execute(arguments: [ref, "\(op)".prefix { $0 != "(" }.description, payload, now.timeIntervalSince1970, now.timeIntervalSince1970])
            return db.changesCount == 1
        }
        if let db { return try insert(db) }
        return try pool.write(insert)
    }

    package struct OutboxItem: Sendable {
        package let id: Int64
        package let ref: String?
        package let op: OutboxOp
        package let attempts: Int
        /// Writes in one lane go out one at a time, in the order they were queued: see `OutboxSender`.
        package let lane: String
    }

    /// A queued write whose payload cannot be read back (written by another version): it is set aside with the
    /// reason, visible in `last_error` and in the pending count, and never sent.
    package struct UnreadableItem: Sendable { package let id: Int64; package let error: String }

    /// What is due, in lanes, each in queue order. An item waiting for its retry holds back the rest of its lane,
    /// unless Gitea refused it (a 4xx): what Gitea refuses once it will likely refuse again, and one such write
    /// must not silence an issue. Lanes come in the order of their oldest item.
    package func pendingOutboxLanes(now: Date, limit: Int = 1000) throws -> (lanes: [[OutboxItem]], unreadable: [UnreadableItem]) {
        try pool.read { db in
            let t = now.timeIntervalSince1970
            let rows = try Row.fetchAll(db, sql: """
                SELECT id, ref, payload, attempts, next_at <= ? AS due FROM outbox
                WHERE done = 0 AND (next_at <= ? OR (attempts > 0 AND refused = 0)) ORDER BY id LIMIT ?
                """, arguments: [t, t, limit])
            var lanes: [[OutboxItem]] = []
            var index: [String: Int] = [:]
            var held = Set<String>()
            var unreadable: [UnreadableItem] = []
            var lanesOfTargets: [String: String] = [:]
            for row in rows {
                let payload: String = row["payload"]
                let op: OutboxOp
                do { op = try JSONDecoder().decode(OutboxOp.self, from: Data(payload.utf8)) } catch {
                    unreadable.append(UnreadableItem(id: row["id"], error: "unreadable outbox payload: \(error)"))
                    continue
                }
                let lane = try Self.lane(of: op, in: db, targets: &lanesOfTargets)
                guard !held.contains(lane) else { continue }
                guard row["due"] as Bool else { held.insert(lane); continue }
                let item = OutboxItem(id: row["id"], ref: row["ref"], op: op, attempts: row["attempts"], lane: lane)
                if let i = index[lane] { lanes[i].append(item) } else { index[lane] = lanes.count; lanes.append([item]) }
            }
            return (lanes, unreadable)
        }
    }

    /// The issue a write lands on ("issue:42"); a new issue's lane is "new-issues" (they are numbered in order).
    /// An edit is on the issue of the comment it edits, a reaction on that of the command it marks; when that
    /// cannot be found, the edited ref or the comment is its own lane.
    static func lane(of op: OutboxOp, in db: Database, targets: inout [String: String]) throws -> String {
        switch op {
        case let .comment(issue, _): return "issue:\(issue)"
        case let .editIssue(number, _, _): return "issue:\(number)"
        case .issue: return "new-issues"
        case let .editComment(target, _):
            if let known = targets[target] { return known }
            var lane = "ref:\(target)"
            if let payload = try String.fetchOne(db, sql: "SELECT payload FROM outbox WHERE ref = ?", arguments: [target]),
               case let .comment(issue, _) = try JSONDecoder().decode(OutboxOp.self, from: Data(payload.utf8)) {
                lane = "issue:\(issue)"
            }
            targets[target] = lane
            return lane
        case let .reaction(commentID, _):
            let issue = try Int.fetchOne(db, sql: "SELECT issue FROM events WHERE key = ?", arguments: ["comment:\(commentID)"])
            return issue.map { "issue:\($0)" } ?? "comment:\(commentID)"
        case let .closeIssue(target, _):
            let number = try Int64.fetchOne(db, sql: "SELECT gitea_id FROM outbox WHERE ref = ? AND done = 1", arguments: [target])
            return number.map { "issue:\($0)" } ?? "ref:\(target)"
        }
    }

    package func outboxPendingCount() throws -> Int {
        try pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM outbox WHERE done = 0") ?? 0 }
    }

    /// Whether a write with this ref was ever queued (sent or not).
    package func hasOutboxItem(ref: String) throws -> Bool {
        try pool.read { try Bool.fetchOne($0, sql: "SELECT EXISTS (SELECT 1 FROM outbox WHERE ref = ?)", arguments: [ref]) ?? false }
    }

    func giteaID(forRef ref: String) throws -> Int64? {
        try pool.read { try Int64.fetchOne($0, sql: "SELECT gitea_id FROM outbox WHERE ref = ? AND done = 1", arguments: [ref]) }
    }

    /// `thenAttempt`: the next write of the lane, counted as attempted in the same transaction (one write less each).
    func markSent(_ id: Int64, giteaID: Int64?, thenAttempt next: Int64? = nil) throws {
        try pool.write { db in
            try db.cachedStatement(sql: "UPDATE outbox SET done = 1, gitea_id = ? WHERE id = ?").execute(arguments: [giteaID, id])
            if let next { try db.cachedStatement(sql: "UPDATE outbox SET attempts = attempts + 1 WHERE id = ?").execute(arguments: [next]) }
        }
    }

    /// Counted before the request goes out: if we die after Gitea took it, the next attempt looks for the marker.
    func markAttempt(_ id: Int64) throws {
        try pool.write { try $0.cachedStatement(sql: "UPDATE outbox SET attempts = attempts + 1 WHERE id = ?").execute(arguments: [id]) }
    }

    /// `refused`: Gitea answered with a 4xx, so the item no longer holds back its lane while it waits.
    func markFailed(_ id: Int64, error: String, retryAt: Date, refused: Bool = false) throws {
        try pool.write {
            try $0.execute(sql: "UPDATE outbox SET last_error = ?, next_at = ?, refused = ? WHERE id = ?",
                           arguments: [error, retryAt.timeIntervalSince1970, refused, id])
        }
    }
}

/// Sends the outbox: up to `parallel` writes at once, each on a different issue, and on each issue one at a time
/// in the order they were queued (a lane: see `Ledger.pendingOutboxLanes`). Edits wait for the create they
/// target. When a write fails, the rest of its lane waits for its retry.
///
/// A create Gitea may have carried out although its answer was an error (a 500 or a timeout after the write,
/// as behind a slow proxy; or a kill before our bookkeeping) leaves the comment or issue there with our marker.
/// So before every retry of a create, in this process or after a restart, the sender looks for the marker among
/// what the bot authored and adopts it.
///
/// Gitea's (or its proxy's) 429 pauses every request to the host for its Retry-After (`DefaultGiteaClient`); a
/// write that meets the pause waits for it, or, for a long one, is retried when it ends.
package actor OutboxSender {
    let ledger: Ledger
    let api: GiteaAPI
    /// Lanes sent at once (config `outbox_parallel`).
    package nonisolated let parallel: Int
    private var botLogin: String?
    private var labelIDs: [String: Int64] = [:]
    private var draining = false
    /// Retries of a create within one drain, each after a look for its marker; then the next drain, with backoff.
    static let createRetries = 3

    /// `botLogin` nil: asked of Gitea (`GET /user`) on first need.
    package init(ledger: Ledger, api: GiteaAPI, botLogin: String?, parallel: Int = ControlPlaneConfig.defaultOutboxParallel) {
        self.ledger = ledger; self.api = api; self.botLogin = botLogin; self.parallel = max(1, parallel)
    }

    static func marker(_ ref: String) -> String { "<!-- ka:ref=\(ref) -->" }

    func bot() async throws -> String {
        if let botLogin { return botLogin }
        let login = try await api.currentUser().login
        botLogin = login
        return login
    }

    /// One pass over what is due; returns how many writes landed. A pass already under way makes this one a no-op.
    @discardableResult
    package func drain(now: Date = Date()) async -> Int {
        guard !draining else { return 0 }
        draining = true
        defer { draining = false }
        let pending: (lanes: [[Ledger.OutboxItem]], unreadable: [Ledger.UnreadableItem])
        do { pending = try ledger.pendingOutboxLanes(now: now) } catch {
            return 0   // the ledger cannot be read: nothing is sent, and the next pass reads it again
        }
        for u in pending.unreadable {
            record(u.id, failure: u.error, retryAt: now.addingTimeInterval(86_400), refused: true)
        }
        let lanes = pending.lanes
        return await withTaskGroup(of: Int.self) { group in
            var next = 0
            while next < min(parallel, lanes.count) {
                let lane = lanes[next]
                group.addTask { await self.send(lane, now: now) }
                next += 1
            }
            var sent = 0
            for await landed in group {
                sent += landed
                if next < lanes.count {
                    let lane = lanes[next]
                    group.addTask { await self.send(lane, now: now) }
                    next += 1
                }
            }
            return sent
        }
    }

    enum Outcome { case sent, waitsForTarget, failed }

    /// One lane, in order; stops at the first write that fails (the rest wait for its retry). An edit whose
    /// target is not created yet is passed over with the later edits of that target, as before.
    func send(_ lane: [Ledger.OutboxItem], now: Date) async -> Int {
        var sent = 0
        var waiting = Set<String>()
        var counted: Int64?   // the item whose attempt the previous write's transaction counted
        for (i, item) in lane.enumerated() {
            if let target = item.op.target, waiting.contains(target) { continue }
            // an edit is counted only once its target is known to have landed, in its own send
            let next = i + 1 < lane.count && lane[i + 1].op.target == nil ? lane[i + 1].id : nil
            switch await send(item, attemptCounted: counted == item.id, thenAttempt: next, now: now) {
            case .sent: sent += 1; counted = next
            case .waitsForTarget: if let target = item.op.target { waiting.insert(target) }
            case .failed: return sent
            }
        }
        return sent
    }

    func send(_ item: Ledger.OutboxItem, attemptCounted: Bool = false, thenAttempt next: Int64? = nil, now: Date) async -> Outcome {
        do {
            // an edit waits until the create it targets has landed (it is earlier in the same lane, or elsewhere)
            var editTarget: Int64?
            if let target = item.op.target {
                guard let cid = try ledger.giteaID(forRef: target) else { return .waitsForTarget }
                editTarget = cid
            }
            if !attemptCounted { try ledger.markAttempt(item.id) }
            let marker = Self.marker(item.ref ?? "outbox-\(item.id)")
            switch item.op {
            case let .comment(issue, body):
                let bot = try await bot()
                let id = try await createOnce(lookFirst: item.attempts > 0) {
                    try await self.api.listIssueComments(issue).first { $0.user.login == bot && $0.body.contains(marker) }?.id
                } create: {
                    try await self.api.createComment(issue: issue, body: body + "\n\n" + marker).id
                }
                try ledger.markSent(item.id, giteaID: id, thenAttempt: next)
            case let .editComment(target, body):
                guard let cid = editTarget else { return .waitsForTarget }
                _ = try await api.editComment(id: cid, body: body + "\n\n" + Self.marker(target))
                try ledger.markSent(item.id, giteaID: cid, thenAttempt: next)
            case let .reaction(commentID, content):
                try await api.addReaction(commentID: commentID, content: content)
                try ledger.markSent(item.id, giteaID: nil, thenAttempt: next)
            case let .issue(title, body, labels):
                let bot = try await bot()
                // also on the first attempt: blocks are filed idempotently by their marker
                let number = try await createOnce(lookFirst: true) {
                    try await self.api.listIssues(state: "open", since: nil).first { $0.user.login == bot && ($0.body ?? "").contains(marker) }?.number
                } create: {
                    let ids = try await self.labelIDsFor(labels)
                    return try await self.api.createIssue(title: title, body: body + "\n\n" + marker, labelIDs: ids).number
                }
                try ledger.markSent(item.id, giteaID: Int64(number), thenAttempt: next)
            case let .editIssue(number, body, state):
                _ = try await api.editIssue(number, title: nil, body: body, state: state)
                try ledger.markSent(item.id, giteaID: Int64(number), thenAttempt: next)
            case let .closeIssue(_, comment):
                guard let n = editTarget.map(Int.init) else { return .waitsForTarget }
                let bot = try await bot()
                _ = try await createOnce(lookFirst: item.attempts > 0) {
                    try await self.api.listIssueComments(n).first { $0.user.login == bot && $0.body.contains(marker) }?.id
                } create: {
                    try await self.api.createComment(issue: n, body: comment + "\n\n" + marker).id
                }
                _ = try await api.editIssue(n, title: nil, body: nil, state: "closed")
                try ledger.markSent(item.id, giteaID: Int64(n), thenAttempt: next)
            }
            return .sent
        } catch {
            let gitea = error as? GiteaError
            let retryAt: Date
            if let pause = gitea?.retryAfter {
                retryAt = Date().addingTimeInterval(pause)   // Gitea said when; the host-wide pause holds until then
            } else {
                retryAt = now.addingTimeInterval(min(300, 0.5 * pow(2, Double(min(item.attempts, 9)))) * Double.random(in: 0.5...1.5))
            }
            record(item.id, failure: "\(error)", retryAt: retryAt, refused: gitea?.isRefusal ?? false)
            return .failed
        }
    }

    func record(_ id: Int64, failure: String, retryAt: Date, refused: Bool) {
        do { try ledger.markFailed(id, error: failure, retryAt: retryAt, refused: refused) } catch {
            // the ledger is unwritable: the item stays due and is tried again next pass
        }
    }

    /// Creates what may already exist: `find` looks for it by its marker, first when an earlier attempt may have
    /// landed (`lookFirst`), and before every retry.
    func createOnce<T: Sendable>(lookFirst: Bool, find: () async throws -> T?, create: () async throws -> T) async throws -> T {
        if lookFirst, let found = try await find() { return found }
        var retries = 0
        while true {
            do {
                return try await create()
            } catch let e as GiteaError where e.isRetryable && retries < Self.createRetries {
                retries += 1
                try await Task.sleep(nanoseconds: UInt64(50_000_000) << UInt64(retries))
                if let found = try await find() { return found }
            }
        }
    }

    func labelIDsFor(_ names: [String]) async throws -> [Int64] {
        guard !names.isEmpty else { return [] }
        if names.contains(where: { labelIDs[$0] == nil }) {
            for l in try await api.listLabels() { labelIDs[l.name] = l.id }
        }
        return names.compactMap { labelIDs[$0] }   // a missing label is created by `ka labels sync`, never guessed
    }
}
