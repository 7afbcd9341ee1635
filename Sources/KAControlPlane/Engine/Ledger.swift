import Foundation
import GRDB
import KernelAgent

/// The control plane's durable memory (SQLite, WAL): which comments and issues were seen (exactly once,
/// whatever the route: webhook, poll, redelivery, restart), every run and its state, the outbox of writes
/// to Gitea, the poll cursor and the reminder schedule.
package final class Ledger: Sendable {
    package let pool: DatabasePool

    package init(path: URL) throws {
        try FileManager.default.createDirectory(at: path.deletingLastPathComponent(), withIntermediateDirectories: true)
        var config = Configuration()
        config.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = NORMAL") }
        config.busyMode = .timeout(10)
        pool = try DatabasePool(path: path.path, configuration: config)
        try Self.migrator.migrate(pool)
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(sql: """
            CREATE TABLE deliveries (id TEXT PRIMARY KEY, received_at REAL NOT NULL);
            CREATE TABLE events (
                key TEXT PRIMARY KEY,             -- comment:<id> or issue:<id>
                kind TEXT NOT NULL,               -- comment | issue
                issue INTEGER NOT NULL,
                comment_id INTEGER,
                author TEXT NOT NULL,
                text TEXT NOT NULL,               -- comment body or issue title
                processed INTEGER NOT NULL DEFAULT 0,
                received_at REAL NOT NULL);
            CREATE TABLE runs (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                event_key TEXT NOT NULL, seq INTEGER NOT NULL,
                issue INTEGER NOT NULL, requester TEXT NOT NULL,
                verb TEXT NOT NULL, args TEXT NOT NULL,
                state TEXT NOT NULL,              -- handling | answered | awaiting | queued | running | done | failed | cancelled | expired | refused | rate-limited
                nonce TEXT UNIQUE, expires_at REAL,
                pins TEXT, lane TEXT, detail TEXT,
                created_at REAL NOT NULL, updated_at REAL NOT NULL,
                UNIQUE(event_key, seq));
            CREATE TABLE outbox (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                ref TEXT UNIQUE,                  -- names what a create makes, for later edits and for adoption after a crash
                kind TEXT NOT NULL,               -- comment | edit-comment | reaction | issue | edit-issue | labels
                issue INTEGER, target_ref TEXT, target_id INTEGER,
                payload TEXT NOT NULL,
                done INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
                next_at REAL NOT NULL, gitea_id INTEGER, last_error TEXT, created_at REAL NOT NULL);
            CREATE INDEX outbox_pending ON outbox(done, next_at);
            CREATE TABLE cursors (name TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE reminders (issue INTEGER PRIMARY KEY, filed_at REAL NOT NULL, stage INTEGER NOT NULL,
                next_due REAL NOT NULL, snoozed_until REAL, open INTEGER NOT NULL DEFAULT 1);
            """)
        }
        m.registerMigration("v2") { db in
            try db.execute(sql: """
            ALTER TABLE events ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;  -- handling starts; see Engine.maxEventAttempts
            ALTER TABLE runs ADD COLUMN replied_at REAL;                        -- when a reply to the requester was queued (rate limit)
            ALTER TABLE runs ADD COLUMN started_at REAL;
            ALTER TABLE runs ADD COLUMN finished_at REAL;
            CREATE INDEX runs_requester ON runs(requester, replied_at);
            CREATE INDEX runs_state ON runs(state);
            """)
        }
        m.registerMigration("v3") { db in
            // a write Gitea refused (a 4xx) no longer holds back the later writes to its issue (OutboxSender)
            try db.execute(sql: "ALTER TABLE outbox ADD COLUMN refused INTEGER NOT NULL DEFAULT 0")
        }
        return m
    }

    /// GRDB's synchronous write, callable from async code (where the async overload would be chosen).
    package func writeSync<T>(_ body: (Database) throws -> T) throws -> T { try pool.write(body) }
    package func readSync<T>(_ body: (Database) throws -> T) throws -> T { try pool.read(body) }

    // MARK: ingest

    package struct Event: Sendable, Equatable {
        package let key: String
        package let kind: String
        package let issue: Int
        package let commentID: Int64?
        package let author: String
        package let text: String
    }

    enum DeliveryStored { case stored(new: Bool), duplicateDelivery }

    /// Stores webhook deliveries (each its delivery id and its event, if it carries one) in one transaction: a
    /// delivery id seen before is a duplicate and stores nothing; an event seen before (the poller's) is not new.
    func storeDeliveries(_ items: [(delivery: String?, event: Event?)], at t: Date) throws -> [DeliveryStored] {
        let now = t.timeIntervalSince1970
        return try pool.write { db in
            var outcomes: [DeliveryStored] = []
            let delivery = try db.cachedStatement(sql: "INSERT OR IGNORE INTO deliveries (id, received_at) VALUES (?, ?)")
            let insert = try db.cachedStatement(sql: "INSERT OR IGNORE INTO events (key, kind, issue, comment_id, author, text, received_at) VALUES (?,?,?,?,?,?,?)")
            for item in items {
                if let d = item.delivery {
                    try delivery.execute(arguments: [d, now])
                    if db.changesCount == 0 { outcomes.append(.duplicateDelivery); continue }
                }
                guard let e = item.event else { outcomes.append(.stored(new: false)); continue }
                try insert.execute(arguments: [e.key, e.kind, e.issue, e.commentID, e.author, e.text, now])
                outcomes.append(.stored(new: db.changesCount == 1))
            }
            return outcomes
        }
    }

    /// Stores an event once; false if its key was already known.
    @discardableResult
    package func ingest(_ e: Event, at: Date) throws -> Bool {
        try pool.write { db in
            try db.execute(sql: "INSERT OR IGNORE INTO events (key, kind, issue, comment_id, author, text, received_at) VALUES (?,?,?,?,?,?,?)",
                           arguments: [e.key, e.kind, e.issue, e.commentID, e.author, e.text, at.timeIntervalSince1970])
            return db.changesCount == 1
        }
    }

    package func unprocessedEvents(limit: Int = 100) throws -> [Event] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM events WHERE processed = 0 ORDER BY rowid LIMIT ?", arguments: [limit]).map {
                Event(key: $0["key"], kind: $0["kind"], issue: $0["issue"], commentID: $0["comment_id"], author: $0["author"], text: $0["text"])
            }
        }
    }

    /// Counts one more start of an event's handling; returns the count including this one.
    package func beginEvent(_ key: String) throws -> Int {
        try beginEvents([key])[key] ?? 0
    }

    /// Counts one more start of each event's handling, in one transaction; each count includes this start.
    package func beginEvents(_ keys: [String]) throws -> [String: Int] {
        try pool.write { db in
            var counts: [String: Int] = [:]
            let bump = try db.cachedStatement(sql: "UPDATE events SET attempts = attempts + 1 WHERE key = ? RETURNING attempts")
            for key in keys {
                counts[key] = try Int.fetchOne(bump, arguments: [key]) ?? 0
            }
            return counts
        }
    }

    package func markProcessed(_ key: String) throws {
        try pool.write { try markProcessed($0, key) }
    }

    /// Inside a transaction that writes the event's last answer.
    func markProcessed(_ db: Database, _ key: String) throws {
        try db.cachedStatement(sql: "UPDATE events SET processed = 1 WHERE key = ?").execute(arguments: [key])
    }

    package func isKnown(_ key: String) throws -> Bool {
        try pool.read { try Bool.fetchOne($0, sql: "SELECT 1 FROM events WHERE key = ?", arguments: [key]) ?? false }
    }

    // MARK: cursors

    package func cursor(_ name: String) throws -> String? {
        try pool.read { try String.fetchOne($0, sql: "SELECT value FROM cursors WHERE name = ?", arguments: [name]) }
    }

    package func setCursor(_ name: String, _ value: String) throws {
        try pool.write { try $0.execute(sql: "INSERT OR REPLACE INTO cursors (name, value) VALUES (?, ?)", arguments: [name, value]) }
    }
}
