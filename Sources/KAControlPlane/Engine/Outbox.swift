import Foundation
import GRDB
import KernelAgent

/// Every write to Gitea, stored before it is sent and retried until Gitea takes it. A create carries a hidden
/// `<!-- ka:ref=… -->` marker; after a crash between Gitea's 201 and our bookkeeping, the next attempt finds
/// the marker and adopts the existing comment or issue instead of posting a second one.
public enum OutboxOp: Codable, Sendable, Equatable {
    case comment(issue: Int, body: String)
    case editComment(targetRef: String, body: String)
    case reaction(commentID: Int64, content: String)
    case issue(title: String, body: String, labels: [String])
    case editIssue(number: Int, body: String?, state: String?)
}

extension Ledger {
    /// Queues a write. With a `ref`, enqueuing the same ref twice is a no-op (idempotent producers).
    @discardableResult
    public func enqueue(_ op: OutboxOp, ref: String? = nil, in db: Database? = nil, at now: Date = Date()) throws -> Bool {
        let payload = String(decoding: try JSONEncoder().encode(op), as: UTF8.self)
        func insert(_ db: Database) throws -> Bool {
            try db.execute(sql: "INSERT OR IGNORE INTO outbox (ref, kind, payload, next_at, created_at) VALUES (?, ?, ?, ?, ?)",
                           arguments: [ref, "\(op)".prefix { $0 != "(" }.description, payload, now.timeIntervalSince1970, now.timeIntervalSince1970])
            return db.changesCount == 1
        }
        if let db { return try insert(db) }
        return try pool.write(insert)
    }

    public struct OutboxItem: Sendable {
        public let id: Int64
        public let ref: String?
        public let op: OutboxOp
        public let attempts: Int
    }

    public func pendingOutbox(now: Date, limit: Int = 200) throws -> [OutboxItem] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT id, ref, payload, attempts FROM outbox WHERE done = 0 AND next_at <= ? ORDER BY id LIMIT ?",
                             arguments: [now.timeIntervalSince1970, limit]).compactMap { row in
                let payload: String = row["payload"]
                guard let op = try? JSONDecoder().decode(OutboxOp.self, from: Data(payload.utf8)) else { return nil }
                return OutboxItem(id: row["id"], ref: row["ref"], op: op, attempts: row["attempts"])
            }
        }
    }

    public func outboxPendingCount() throws -> Int {
        try pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM outbox WHERE done = 0") ?? 0 }
    }

    func giteaID(forRef ref: String) throws -> Int64? {
        try pool.read { try Int64.fetchOne($0, sql: "SELECT gitea_id FROM outbox WHERE ref = ? AND done = 1", arguments: [ref]) }
    }

    func markSent(_ id: Int64, giteaID: Int64?) throws {
        try pool.write { try $0.execute(sql: "UPDATE outbox SET done = 1, gitea_id = ? WHERE id = ?", arguments: [giteaID, id]) }
    }

    /// Counted before the request goes out: if we die after Gitea took it, the next attempt looks for the marker.
    func markAttempt(_ id: Int64) throws {
        try pool.write { try $0.execute(sql: "UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", arguments: [id]) }
    }

    func markFailed(_ id: Int64, error: String, retryAt: Date) throws {
        try pool.write {
            try $0.execute(sql: "UPDATE outbox SET last_error = ?, next_at = ? WHERE id = ?",
                           arguments: [error, retryAt.timeIntervalSince1970, id])
        }
    }
}

/// Sends the outbox in order. Edits wait for the create they target.
///
/// A create Gitea may have carried out although its answer was an error (a 500 or a timeout after the write,
/// as behind a slow proxy; or a kill before our bookkeeping) leaves the comment or issue there with our marker.
/// So before every retry of a create, in this process or after a restart, the sender looks for the marker among
/// what the bot authored and adopts it.
public actor OutboxSender {
    let ledger: Ledger
    let api: GiteaAPI
    private var botLogin: String?
    private var labelIDs: [String: Int64] = [:]
    private var draining = false
    /// Retries of a create within one drain, each after a look for its marker; then the next drain, with backoff.
    static let createRetries = 3

    /// `botLogin` nil: asked of Gitea (`GET /user`) on first need.
    public init(ledger: Ledger, api: GiteaAPI, botLogin: String?) { self.ledger = ledger; self.api = api; self.botLogin = botLogin }

    static func marker(_ ref: String) -> String { "<!-- ka:ref=\(ref) -->" }

    func bot() async throws -> String {
        if let botLogin { return botLogin }
        let login = try await api.currentUser().login
        botLogin = login
        return login
    }

    /// One pass over what is due; returns how many writes landed. A pass already under way makes this one a no-op.
    @discardableResult
    public func drain(now: Date = Date()) async -> Int {
        guard !draining else { return 0 }
        draining = true
        defer { draining = false }
        let items: [Ledger.OutboxItem]
        do { items = try ledger.pendingOutbox(now: now) } catch { return 0 }
        var sent = 0
        var blockedTargets = Set<String>()
        for item in items {
            do {
                try ledger.markAttempt(item.id)
                let marker = Self.marker(item.ref ?? "outbox-\(item.id)")
                switch item.op {
                case let .comment(issue, body):
                    let bot = try await bot()
                    let id = try await createOnce(lookFirst: item.attempts > 0) {
                        try await self.api.listIssueComments(issue).first { $0.user.login == bot && $0.body.contains(marker) }?.id
                    } create: {
                        try await self.api.createComment(issue: issue, body: body + "\n\n" + marker).id
                    }
                    try ledger.markSent(item.id, giteaID: id)
                case let .editComment(target, body):
                    if blockedTargets.contains(target) { continue }
                    guard let cid = try ledger.giteaID(forRef: target) else { blockedTargets.insert(target); continue }
                    _ = try await api.editComment(id: cid, body: body + "\n\n" + Self.marker(target))
                    try ledger.markSent(item.id, giteaID: cid)
                case let .reaction(commentID, content):
                    try await api.addReaction(commentID: commentID, content: content)
                    try ledger.markSent(item.id, giteaID: nil)
                case let .issue(title, body, labels):
                    let bot = try await bot()
                    // also on the first attempt: blocks are filed idempotently by their marker
                    let number = try await createOnce(lookFirst: true) {
                        try await self.api.listIssues(state: "open", since: nil).first { $0.user.login == bot && ($0.body ?? "").contains(marker) }?.number
                    } create: {
                        let ids = try await self.labelIDsFor(labels)
                        return try await self.api.createIssue(title: title, body: body + "\n\n" + marker, labelIDs: ids).number
                    }
                    try ledger.markSent(item.id, giteaID: Int64(number))
                case let .editIssue(number, body, state):
                    _ = try await api.editIssue(number, title: nil, body: body, state: state)
                    try ledger.markSent(item.id, giteaID: Int64(number))
                }
                sent += 1
            } catch {
                if case let .editComment(target, _) = item.op { blockedTargets.insert(target) }
                let delay = min(300, 0.5 * pow(2, Double(min(item.attempts, 9)))) * Double.random(in: 0.5...1.5)
                do { try ledger.markFailed(item.id, error: "\(error)", retryAt: now.addingTimeInterval(delay)) } catch {
                    // the ledger is unwritable: the item stays due and is tried again next pass
                }
            }
        }
        return sent
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
