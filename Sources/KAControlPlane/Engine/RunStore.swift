import Foundation
import GRDB
import KernelAgent

/// The `runs` table of the ledger: every command the bot took, and every run a consent queued. The only owner of
/// its SQL. Each function takes the caller's `Database`, so a state change and the outbox entries that announce it
/// commit in one transaction (`Ledger.writeSync`).
enum RunStore {
    /// A run that consent queued, waiting for its lane.
    struct Queued { let id: Int64; let verb: String; let args: [String]; let pins: [Plan.Pin]; let issue: Int }

    /// A proposed plan, found by its nonce.
    struct Pending { let id: Int64; let issue: Int; let verb: String; let args: [String]; let pins: [Plan.Pin]; let expires: Date; let state: RunState }

    /// A command that was being handled when the process died.
    struct Handling { let key: String; let seq: Int; let issue: Int; let requester: String; let raw: String }

    // MARK: commands

    /// Claims one command of an event, before anything else happens. False when it was claimed before.
    static func claim(_ db: Database, key: String, seq: Int, issue: Int, requester: String, verb: String, args: [String],
                      raw: String, at t: Date) throws -> Bool {
        // cached: the statements every command runs are compiled once per connection
        try db.cachedStatement(sql: """
            INSERT OR IGNORE INTO runs (event_key, seq, issue, requester, verb, args, state, detail, created_at, updated_at)
            VALUES (?,?,?,?,?,?,?,?,?,?)
            """).execute(arguments: [key, seq, issue, requester, verb, try json(args), RunState.handling, String(raw.prefix(500)),
                             t.timeIntervalSince1970, t.timeIntervalSince1970])
        return db.changesCount == 1
    }

    static func isHandling(_ db: Database, key: String, seq: Int) throws -> Bool {
        try RunState.fetchOne(db.cachedStatement(sql: "SELECT state FROM runs WHERE event_key = ? AND seq = ?"), arguments: [key, seq]) == .handling
    }

    /// Settles a command still being handled, without a reply.
    static func settle(_ db: Database, key: String, seq: Int, state: RunState, detail: String, at t: Date) throws {
        try db.execute(sql: "UPDATE runs SET state = ?, detail = ?, updated_at = ? WHERE event_key = ? AND seq = ? AND state = ?",
                       arguments: [state, detail, t.timeIntervalSince1970, key, seq, RunState.handling])
    }

    /// How many replies `requester` has had since `since`, and when the oldest of them was.
    static func replies(_ db: Database, to requester: String, since: Date) throws -> (count: Int, oldest: Date?) {
        guard let row = try Row.fetchOne(db, sql: "SELECT COUNT(*) AS n, MIN(replied_at) AS oldest FROM runs WHERE requester = ? AND replied_at > ?",
                                         arguments: [requester, since.timeIntervalSince1970]) else { return (0, nil) }
        return (row["n"], (row["oldest"] as Double?).map(Date.init(timeIntervalSince1970:)))
    }

    static func markRateLimited(_ db: Database, key: String, seq: Int, at t: Date) throws {
        try db.execute(sql: "UPDATE runs SET state = ?, updated_at = ? WHERE event_key = ? AND seq = ?",
                       arguments: [RunState.rateLimited, t.timeIntervalSince1970, key, seq])
    }

    /// Records the reply a command got: its final state, what it was read as, and a plan's nonce, pins and expiry.
    static func recordReply(_ db: Database, key: String, seq: Int, state: RunState, verb: String, args: [String],
                            nonce: String?, pins: String?, expires: Date?, at t: Date) throws {
        try db.cachedStatement(sql: """
            UPDATE runs SET state = ?, verb = ?, args = ?, nonce = ?, expires_at = ?, pins = ?, updated_at = ?, replied_at = ?
            WHERE event_key = ? AND seq = ?
            """).execute(arguments: [state, verb, try json(args), nonce, expires?.timeIntervalSince1970, pins,
                             t.timeIntervalSince1970, t.timeIntervalSince1970, key, seq])
    }

    // MARK: consent

    static func pending(_ db: Database, nonce: String) throws -> Pending? {
        guard let r = try Row.fetchOne(db, sql: "SELECT * FROM runs WHERE nonce = ?", arguments: [nonce]) else { return nil }
        guard let state = RunState(rawValue: r["state"]) else {
            throw KAError.failure("ledger", "run #\(r["id"] as Int64)", "unknown state '\(r["state"] as String)'",
                                  hint: "the ledger was changed by hand or by a newer ka")
        }
        return Pending(id: r["id"], issue: r["issue"], verb: r["verb"], args: try decode([String].self, r["args"]),
                       pins: try decode([Plan.Pin].self, r["pins"] ?? "[]"),
                       expires: Date(timeIntervalSince1970: r["expires_at"] ?? 0), state: state)
    }

    /// awaiting → another state (expired, cancelled); nothing when it no longer awaits.
    static func endAwaiting(_ db: Database, id: Int64, as state: RunState) throws {
        try db.execute(sql: "UPDATE runs SET state = ? WHERE id = ? AND state = ?", arguments: [state, id, RunState.awaiting])
    }

    /// awaiting → queued. False when another consent won, or it no longer awaits.
    static func approve(_ db: Database, id: Int64, at t: Date) throws -> Bool {
        try db.execute(sql: "UPDATE runs SET state = ?, updated_at = ? WHERE id = ? AND state = ?",
                       arguments: [RunState.queued, t.timeIntervalSince1970, id, RunState.awaiting])
        return db.changesCount == 1
    }

    /// The `/ka-yes` that approved run `run`, answered.
    static func recordConsent(_ db: Database, key: String, seq: Int, args: [String], run: Int64, at t: Date) throws {
        try db.execute(sql: "UPDATE runs SET state = ?, verb = 'yes', args = ?, detail = ?, updated_at = ?, replied_at = ? WHERE event_key = ? AND seq = ?",
                       arguments: [RunState.answered, try json(args), "run #\(run)", t.timeIntervalSince1970, t.timeIntervalSince1970, key, seq])
    }

    // MARK: runs

    static func queued(_ db: Database) throws -> [Queued] {
        try Row.fetchAll(db, sql: "SELECT * FROM runs WHERE state = ? ORDER BY id", arguments: [RunState.queued]).map { r in
            Queued(id: r["id"], verb: r["verb"], args: try decode([String].self, r["args"]),
                   pins: try decode([Plan.Pin].self, r["pins"] ?? "[]"), issue: r["issue"])
        }
    }

    /// queued → running. False when it is no longer queued.
    static func start(_ db: Database, id: Int64, at t: Date) throws -> Bool {
        try db.execute(sql: "UPDATE runs SET state = ?, updated_at = ?, started_at = ? WHERE id = ? AND state = ?",
                       arguments: [RunState.running, t.timeIntervalSince1970, t.timeIntervalSince1970, id, RunState.queued])
        return db.changesCount == 1
    }

    /// A run's end: its state and the first 2,000 characters of what it said.
    static func finish(_ db: Database, id: Int64, state: RunState, detail: String, onlyIf current: RunState? = nil, at t: Date) throws {
        if let current {
            try db.execute(sql: "UPDATE runs SET state = ?, detail = ?, updated_at = ?, finished_at = ? WHERE id = ? AND state = ?",
                           arguments: [state, String(detail.prefix(2000)), t.timeIntervalSince1970, t.timeIntervalSince1970, id, current])
        } else {
            try db.execute(sql: "UPDATE runs SET state = ?, detail = ?, updated_at = ?, finished_at = ? WHERE id = ?",
                           arguments: [state, String(detail.prefix(2000)), t.timeIntervalSince1970, t.timeIntervalSince1970, id])
        }
    }

    /// Who asked for a run (the commenter).
    static func requester(_ db: Database, run id: Int64) throws -> String? {
        try String.fetchOne(db, sql: "SELECT requester FROM runs WHERE id = ?", arguments: [id])
    }

    static func verb(_ db: Database, run id: Int64) throws -> String? {
        try String.fetchOne(db, sql: "SELECT verb FROM runs WHERE id = ?", arguments: [id])
    }

    /// A run back to queued (a job that resumes after a restart).
    static func requeue(_ db: Database, id: Int64, at t: Date) throws {
        try db.execute(sql: "UPDATE runs SET state = ?, updated_at = ? WHERE id = ?", arguments: [RunState.queued, t.timeIntervalSince1970, id])
    }

    // MARK: recovery

    static func running(_ db: Database) throws -> [Int64] {
        try Int64.fetchAll(db, sql: "SELECT id FROM runs WHERE state = ?", arguments: [RunState.running])
    }

    static func handling(_ db: Database) throws -> [Handling] {
        try Row.fetchAll(db, sql: "SELECT event_key, seq, issue, requester, detail FROM runs WHERE state = ?", arguments: [RunState.handling]).map { r in
            Handling(key: r["event_key"], seq: r["seq"], issue: r["issue"], requester: r["requester"], raw: r["detail"] ?? "?")
        }
    }

    /// A command that was being handled when the process died: failed, never handled again.
    static func failHandling(_ db: Database, _ h: Handling, at t: Date) throws {
        try db.execute(sql: "UPDATE runs SET state = ?, detail = ?, updated_at = ?, replied_at = ? WHERE event_key = ? AND seq = ?",
                       arguments: [RunState.failed, "interrupted while handling: \(h.raw)", t.timeIntervalSince1970, t.timeIntervalSince1970, h.key, h.seq])
    }

    // MARK: columns as JSON

    static func json<T: Encodable>(_ value: T) throws -> String {
        String(decoding: try JSONEncoder().encode(value), as: UTF8.self)
    }

    static func decode<T: Decodable>(_ t: T.Type, _ json: String) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(json.utf8))
    }
}
