import Foundation
import GRDB
import NIOConcurrencyHelpers

package struct PromotionRecord: Sendable, Equatable, Codable, FetchableRecord, PersistableRecord {
    package static let databaseTableName = "promotions"
    package var host: String
    package var kernelSuffix: String
    package var lockB2sum: String
    package var cumulativeB2sum: String
    package var manifestB2sum: String
    package var patchPaths: String      // newline-separated, in order
    package var outDir: String
    package var promotedAt: Date
}

package enum CampaignStatus: String, Sendable, Codable, CaseIterable {
    case active
    case closedSuccess = "closed-success"
    case abandonedArchived = "abandoned-archived"
    case abandonedPurged = "abandoned-purged"
}

package struct CampaignRecord: Sendable, Equatable, Codable, FetchableRecord, PersistableRecord {
    package static let databaseTableName = "campaigns"
    package var name: String
    package var status: CampaignStatus
    package var updatedAt: Date
}

package struct DriftRecord: Sendable, Equatable, Codable, FetchableRecord, PersistableRecord {
    package static let databaseTableName = "drift"
    package var host: String
    package var reason: String
    package var since: Date
}

/// A build that was signed and published, waiting for a person's `ka install` (seed: [ka:installable]).
package struct InstallableRecord: Sendable, Equatable, Codable, FetchableRecord, PersistableRecord {
    package static let databaseTableName = "installables"
    package var job: String
    package var host: String
    package var version: String
    /// One line per package: `<file> b2:<b2sum> sig:<file>.sig`.
    package var packages: String
    package var lockB2sum: String
    package var repo: String
    package var filedAt: Date
    package init(job: String, host: String, version: String, packages: String, lockB2sum: String, repo: String, filedAt: Date) {
        self.job = job; self.host = host; self.version = version; self.packages = packages; self.lockB2sum = lockB2sum
        self.repo = repo; self.filedAt = filedAt
    }
}

/// The global pause of pruning (`ka pause-prune`): who paused it, when, and why. One row, or none.
package struct PrunePauseRecord: Sendable, Equatable, Codable, FetchableRecord, PersistableRecord {
    package static let databaseTableName = "prune_pause"
    /// Always 1: there is one pause for the whole agent.
    package var id: Int = 1
    package var by: String
    package var at: Date
    package var reason: String?
    package init(by: String, at: Date, reason: String?) { self.by = by; self.at = at; self.reason = reason }

    /// `paused by markus since 2026-12-01T10:00:00Z (reason)`.
    package var shown: String {
        "paused by \(by) since \(at.formatted(.iso8601))" + (reason.map { " (\($0))" } ?? "")
    }
}

/// Local state: promotions, campaign lifecycle, drift marks, local blocks.
package protocol StateStore: Sendable {
    /// The pruning pause, if pruning is paused.
    func prunePause() throws -> PrunePauseRecord?
    /// Pauses pruning; a second pause keeps the first one's who and when, and returns it.
    func pausePrune(_ r: PrunePauseRecord) throws -> PrunePauseRecord
    /// Lifts the pause; returns the pause it lifted, nil when pruning was not paused.
    func resumePrune() throws -> PrunePauseRecord?
    func recordInstallable(_ r: InstallableRecord) throws
    func installable(job: String) throws -> InstallableRecord?
    /// The newest installable build per host.
    func installables(_ hosts: [String]) throws -> [String: InstallableRecord]
    func recordPromotion(_ r: PromotionRecord) throws
    func promotion(host: String) throws -> PromotionRecord?
    func setCampaign(_ name: String, status: CampaignStatus, at: Date) throws
    func campaign(_ name: String) throws -> CampaignRecord?
    /// Undo of a first `setCampaign` (a rolled-back transaction).
    func deleteCampaign(_ name: String) throws
    func markDrifted(host: String, reason: String, at: Date) throws
    func clearDrift(host: String) throws
    func drift(host: String) throws -> DriftRecord?
    func upsertReminder(issue: Int, filedAt: Date, open: Bool) throws
    func snoozeReminder(issue: Int, until: Date) throws -> Bool
    func dueReminders(now: Date, limit: Int) throws -> [ReminderRecord]
    func advanceReminder(issue: Int, stage: Int, nextDue: Date) throws
    /// Every reminder of an open [ka:installable] issue (the dashboard's "waits on a person").
    func openReminders() throws -> [ReminderRecord]
    /// The promotion and drift records of `hosts`, in one read (ka status asks for every host).
    func hostRecords(_ hosts: [String]) throws -> (promotions: [String: PromotionRecord], drifts: [String: DriftRecord], installables: [String: InstallableRecord])
    /// Installs and the installables they closed (InstallStore.swift).
    var installs: any InstallStore { get }
}

extension StateStore {
    package func hostRecords(_ hosts: [String]) throws -> (promotions: [String: PromotionRecord], drifts: [String: DriftRecord], installables: [String: InstallableRecord]) {
        var promotions: [String: PromotionRecord] = [:], drifts: [String: DriftRecord] = [:]
        for h in hosts {
            promotions[h] = try promotion(host: h)
            drifts[h] = try drift(host: h)
        }
        return (promotions, drifts, try installables(hosts))
    }
}

/// The escalating ladder of an open [ka:installable] issue: filed, +1 h, +6 h, then daily.
package struct ReminderRecord: Sendable, Equatable, Codable, FetchableRecord, PersistableRecord {
    package static let databaseTableName = "reminders"
    package var issue: Int
    package var filedAt: Date
    package var stage: Int
    package var nextDue: Date
    package var snoozedUntil: Date?
    package var open: Bool

    /// Offset of stage n from filing.
    package static func offset(_ stage: Int) -> TimeInterval {
        switch stage {
        case 0: return 0
        case 1: return 3600
        case 2: return 6 * 3600
        default: return 6 * 3600 + Double(stage - 2) * 86400
        }
    }

    /// The first stage due after `now` (missed stages are skipped, so downtime never floods).
    package static func nextStage(after now: Date, filedAt: Date, current: Int) -> Int {
        var s = current + 1
        while filedAt.addingTimeInterval(offset(s)) <= now { s += 1 }
        return s
    }
}

/// SQLite via GRDB, WAL mode (`DatabasePool`), at `<state dir>/state.sqlite`.
package final class SQLiteStateStore: StateStore, BlockStore, Sendable {
    let pool: DatabasePool

    package init(path: URL) throws {
        try FileManager.default.createDirectory(at: path.deletingLastPathComponent(), withIntermediateDirectories: true)
        do {
            // The CLI and `ka serve` open the same file; a second opener waits for the first instead of failing
            // with "database is locked" (found by two tree verbs started at once).
            var config = Configuration()
            config.busyMode = .timeout(15)
            // WAL with synchronous=NORMAL: a commit survives any crash of the process; only a power cut may lose the
            // last few, never corrupt the file. A job journals two commits per step, and FULL's fsync each time
            // cost more than the remote step (scripts/bench-jobs).
            config.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = NORMAL") }
            // Two processes opening a new database would both run the first migration ("table already exists"):
            // one migrates at a time, under an OS lock beside the file.
            let lockFD = Glibc.open(path.path + ".migrate-lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            if lockFD >= 0 { while flock(lockFD, LOCK_EX) != 0 && errno == EINTR {} }
            defer { if lockFD >= 0 { flock(lockFD, LOCK_UN); Glibc.close(lockFD) } }
            pool = try DatabasePool(path: path.path, configuration: config)
            try Self.migrator.migrate(pool)
        } catch {
            throw KAError.failure(path.path, "cannot open state database: \(error)", cause: error)
        }
    }

    package static func open(_ ws: Workspace) throws -> SQLiteStateStore {
        try SQLiteStateStore(path: ws.stateDir.appendingPathComponent("state.sqlite"))
    }

    private init(readOnly pool: DatabasePool) { self.pool = pool }

    /// Opened by `openForReading`: every write fails.
    package var isReadOnly: Bool { pool.configuration.readonly }

    /// For verbs that only read state (status): no migration write, and no database created where none is.
    /// Returns nil when there is no database yet, or it needs a migration (then the caller opens it for writing).
    package static func openForReading(_ ws: Workspace) throws -> SQLiteStateStore? {
        let path = ws.stateDir.appendingPathComponent("state.sqlite")
        guard FS.exists(path) else { return nil }
        var config = Configuration()
        config.readonly = true
        config.busyMode = .timeout(15)
        do {
            let pool = try DatabasePool(path: path.path, configuration: config)
            guard try pool.read({ try migrator.hasCompletedMigrations($0) }) else { return nil }
            return SQLiteStateStore(readOnly: pool)
        } catch {
            throw KAError.failure(path.path, "cannot open state database: \(error)", cause: error)
        }
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.create(table: "promotions") { t in
                t.primaryKey("host", .text)
                t.column("kernelSuffix", .text).notNull()
                t.column("lockB2sum", .text).notNull()
                t.column("cumulativeB2sum", .text).notNull()
                t.column("manifestB2sum", .text).notNull()
                t.column("patchPaths", .text).notNull()
                t.column("outDir", .text).notNull()
                t.column("promotedAt", .datetime).notNull()
            }
            try db.create(table: "campaigns") { t in
                t.primaryKey("name", .text)
                t.column("status", .text).notNull()
                t.column("updatedAt", .datetime).notNull()
            }
            try db.create(table: "drift") { t in
                t.primaryKey("host", .text)
                t.column("reason", .text).notNull()
                t.column("since", .datetime).notNull()
            }
            try db.create(table: "reminders") { t in
                t.primaryKey("issue", .integer)
                t.column("filedAt", .datetime).notNull()
                t.column("stage", .integer).notNull()
                t.column("nextDue", .datetime).notNull()
                t.column("snoozedUntil", .datetime)
                t.column("open", .boolean).notNull()
            }
            try db.create(table: "blocks") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("kind", .text).notNull()
                t.column("marker", .text).notNull()
                t.column("title", .text).notNull()
                t.column("body", .text).notNull()
                t.column("open", .boolean).notNull()
            }
        }
        SQLiteJobStore.migrate(&m)
        m.registerMigration("v4-installables") { db in
            try db.create(table: "installables") { t in
                t.primaryKey("job", .text)
                t.column("host", .text).notNull().indexed()
                t.column("version", .text).notNull()
                t.column("packages", .text).notNull()
                t.column("lockB2sum", .text).notNull()
                t.column("repo", .text).notNull()
                t.column("filedAt", .datetime).notNull()
            }
        }
        SQLiteInstallStore.migrate(&m)
        m.registerMigration("v6-prune-pause") { db in
            try db.create(table: "prune_pause") { t in
                t.primaryKey("id", .integer).check { $0 == 1 }
                t.column("by", .text).notNull()
                t.column("at", .datetime).notNull()
                t.column("reason", .text)
            }
        }
        return m
    }

    /// The jobs, in the same database file.
    package var jobs: SQLiteJobStore { SQLiteJobStore(pool: pool) }
    package var installs: any InstallStore { SQLiteInstallStore(pool: pool) }

    private func write<T>(_ what: String, _ body: (Database) throws -> T) throws -> T { try pool.stateWrite(what, body) }
    private func read<T>(_ what: String, _ body: (Database) throws -> T) throws -> T { try pool.stateRead(what, body) }

    package func prunePause() throws -> PrunePauseRecord? { try read("read the prune pause") { try PrunePauseRecord.fetchOne($0, key: 1) } }
    package func pausePrune(_ r: PrunePauseRecord) throws -> PrunePauseRecord {
        try write("pause pruning") { db in
            if let existing = try PrunePauseRecord.fetchOne(db, key: 1) { return existing }
            try r.insert(db)
            return r
        }
    }
    package func resumePrune() throws -> PrunePauseRecord? {
        try write("resume pruning") { db in
            let existing = try PrunePauseRecord.fetchOne(db, key: 1)
            _ = try PrunePauseRecord.deleteOne(db, key: 1)
            return existing
        }
    }

    package func recordPromotion(_ r: PromotionRecord) throws { try write("record promotion") { try r.save($0) } }
    package func recordInstallable(_ r: InstallableRecord) throws { try write("record installable") { try r.save($0) } }
    package func installable(job: String) throws -> InstallableRecord? {
        try read("read installable") { try InstallableRecord.fetchOne($0, key: job) }
    }
    package func installables(_ hosts: [String]) throws -> [String: InstallableRecord] {
        try read("read installables") { db in
            var out: [String: InstallableRecord] = [:]
            for r in try InstallableRecord.filter(hosts.contains(Column("host"))).order(Column("filedAt")).fetchAll(db) { out[r.host] = r }
            return out
        }
    }
    package func promotion(host: String) throws -> PromotionRecord? {
        try read("read promotion") { try PromotionRecord.fetchOne($0, key: host) }
    }
    package func setCampaign(_ name: String, status: CampaignStatus, at: Date) throws {
        try write("set campaign") { try CampaignRecord(name: name, status: status, updatedAt: at).save($0) }
    }
    package func campaign(_ name: String) throws -> CampaignRecord? {
        try read("read campaign") { try CampaignRecord.fetchOne($0, key: name) }
    }
    package func deleteCampaign(_ name: String) throws {
        try write("delete campaign") { _ = try CampaignRecord.deleteOne($0, key: name) }
    }
    package func markDrifted(host: String, reason: String, at: Date) throws {
        try write("mark drift") { try DriftRecord(host: host, reason: reason, since: at).save($0) }
    }
    package func clearDrift(host: String) throws { try write("clear drift") { _ = try DriftRecord.deleteOne($0, key: host) } }
    package func drift(host: String) throws -> DriftRecord? { try read("read drift") { try DriftRecord.fetchOne($0, key: host) } }
    /// One read transaction for both tables (two per host cost ka status a fifth of its time, issue 11 §4).
    package func hostRecords(_ hosts: [String]) throws -> (promotions: [String: PromotionRecord], drifts: [String: DriftRecord], installables: [String: InstallableRecord]) {
        let wanted = Set(hosts)
        return try read("read promotions, drift and installables") { db in
            var installables: [String: InstallableRecord] = [:]
            for r in try InstallableRecord.order(Column("filedAt")).fetchAll(db) where wanted.contains(r.host) { installables[r.host] = r }
            return (Dictionary(try PromotionRecord.fetchAll(db).filter { wanted.contains($0.host) }.map { ($0.host, $0) }, uniquingKeysWith: { a, _ in a }),
                    Dictionary(try DriftRecord.fetchAll(db).filter { wanted.contains($0.host) }.map { ($0.host, $0) }, uniquingKeysWith: { a, _ in a }),
                    installables)
        }
    }

    package func upsertReminder(issue: Int, filedAt: Date, open: Bool) throws {
        try write("track reminder") { db in
            if var r = try ReminderRecord.fetchOne(db, key: issue) {
                r.open = open; try r.update(db)
            } else if open {
                try ReminderRecord(issue: issue, filedAt: filedAt, stage: 0, nextDue: filedAt, snoozedUntil: nil, open: true).insert(db)
            }
        }
    }
    package func snoozeReminder(issue: Int, until: Date) throws -> Bool {
        try write("snooze") { db in
            guard var r = try ReminderRecord.fetchOne(db, key: issue), r.open else { return false }
            r.snoozedUntil = until
            if r.nextDue < until { r.nextDue = until }
            try r.update(db)
            return true
        }
    }
    package func dueReminders(now: Date, limit: Int) throws -> [ReminderRecord] {
        try read("due reminders") { db in
            try ReminderRecord.filter(Column("open") == true && Column("nextDue") <= now).order(Column("nextDue")).limit(limit).fetchAll(db)
        }
    }
    package func openReminders() throws -> [ReminderRecord] {
        try read("open reminders") { db in try ReminderRecord.filter(Column("open") == true).order(Column("issue")).fetchAll(db) }
    }
    package func advanceReminder(issue: Int, stage: Int, nextDue: Date) throws {
        try write("advance reminder") { db in
            try db.execute(sql: "UPDATE reminders SET stage = ?, nextDue = ? WHERE issue = ?", arguments: [stage, nextDue, issue])
        }
    }

    // MARK: BlockStore (local)

    package func openBlocks() throws -> [Block] {
        try read("read blocks") { db in
            try Row.fetchAll(db, sql: "SELECT id, kind, marker, title FROM blocks WHERE open ORDER BY id").compactMap { row in
                guard let kind = BlockKind(rawValue: row["kind"]), let scope = BlockScope.parse(marker: row["marker"]) else { return nil }
                let id: Int64 = row["id"]
                return Block(id: "local-\(id)", kind: kind, scope: scope, title: row["title"])
            }
        }
    }

    @discardableResult
    package func file(kind: BlockKind, scope: BlockScope, title: String, body: String) throws -> Block {
        try write("file block") { db in
            if let row = try Row.fetchOne(db, sql: "SELECT id FROM blocks WHERE open AND kind = ? AND marker = ?",
                                          arguments: [kind.rawValue, scope.marker]) {
                let id: Int64 = row["id"]
                return Block(id: "local-\(id)", kind: kind, scope: scope, title: title)
            }
            try db.execute(sql: "INSERT INTO blocks (kind, marker, title, body, open) VALUES (?, ?, ?, ?, 1)",
                           arguments: [kind.rawValue, scope.marker, title, body])
            return Block(id: "local-\(db.lastInsertedRowID)", kind: kind, scope: scope, title: title)
        }
    }

    package func close(id: String) throws {
        guard id.hasPrefix("local-"), let n = Int64(id.dropFirst("local-".count)) else {
            throw KAError.refusal("block '\(id)'", "not a local block id", hint: "ids look like local-3 (see ka status)")
        }
        let closed = try write("close block") { db -> Bool in
            try db.execute(sql: "UPDATE blocks SET open = 0 WHERE id = ? AND open = 1", arguments: [n])
            return db.changesCount == 1
        }
        guard closed else { throw KAError.refusal("block \(id)", "no open block has this id", hint: "ka blocks lists the open ones") }
    }
}

/// In-memory state for tests and dry runs.
package final class MemoryStateStore: StateStore, BlockStore, Sendable {
    private struct State {
        var promotions: [String: PromotionRecord] = [:]
        var campaigns: [String: CampaignRecord] = [:]
        var drifts: [String: DriftRecord] = [:]
        var blocks: [(Block, open: Bool)] = []
        var installableRecords: [String: InstallableRecord] = [:]
        var pause: PrunePauseRecord?
        var reminders: [Int: ReminderRecord] = [:]
    }
    private let state = NIOLockedValueBox(State())
    package let installs: any InstallStore = MemoryInstallStore()

    package init() {}

    package func prunePause() throws -> PrunePauseRecord? { state.withLockedValue { $0.pause } }
    package func pausePrune(_ r: PrunePauseRecord) throws -> PrunePauseRecord {
        state.withLockedValue { s in if let pause = s.pause { return pause }; s.pause = r; return r }
    }
    package func resumePrune() throws -> PrunePauseRecord? { state.withLockedValue { s in defer { s.pause = nil }; return s.pause } }

    package func recordPromotion(_ r: PromotionRecord) throws { state.withLockedValue { $0.promotions[r.host] = r } }
    package func recordInstallable(_ r: InstallableRecord) throws { state.withLockedValue { $0.installableRecords[r.job] = r } }
    package func installable(job: String) throws -> InstallableRecord? { state.withLockedValue { $0.installableRecords[job] } }
    package func installables(_ hosts: [String]) throws -> [String: InstallableRecord] {
        state.withLockedValue { s in
            var out: [String: InstallableRecord] = [:]
            for r in s.installableRecords.values.sorted(by: { $0.filedAt < $1.filedAt }) where hosts.contains(r.host) { out[r.host] = r }
            return out
        }
    }
    package func promotion(host: String) throws -> PromotionRecord? { state.withLockedValue { $0.promotions[host] } }
    package func setCampaign(_ name: String, status: CampaignStatus, at: Date) throws {
        state.withLockedValue { $0.campaigns[name] = CampaignRecord(name: name, status: status, updatedAt: at) }
    }
    package func campaign(_ name: String) throws -> CampaignRecord? { state.withLockedValue { $0.campaigns[name] } }
    package func deleteCampaign(_ name: String) throws { _ = state.withLockedValue { $0.campaigns.removeValue(forKey: name) } }
    package func markDrifted(host: String, reason: String, at: Date) throws {
        state.withLockedValue { $0.drifts[host] = DriftRecord(host: host, reason: reason, since: at) }
    }
    package func clearDrift(host: String) throws { _ = state.withLockedValue { $0.drifts.removeValue(forKey: host) } }
    package func drift(host: String) throws -> DriftRecord? { state.withLockedValue { $0.drifts[host] } }

    package func upsertReminder(issue: Int, filedAt: Date, open: Bool) throws {
        state.withLockedValue { s in
            if s.reminders[issue] != nil { s.reminders[issue]?.open = open }
            else if open { s.reminders[issue] = ReminderRecord(issue: issue, filedAt: filedAt, stage: 0, nextDue: filedAt, snoozedUntil: nil, open: true) }
        }
    }
    package func snoozeReminder(issue: Int, until: Date) throws -> Bool {
        state.withLockedValue { s in
            guard var r = s.reminders[issue], r.open else { return false }
            r.snoozedUntil = until; if r.nextDue < until { r.nextDue = until }
            s.reminders[issue] = r
            return true
        }
    }
    package func dueReminders(now: Date, limit: Int) throws -> [ReminderRecord] {
        state.withLockedValue { s in Array(s.reminders.values.filter { $0.open && $0.nextDue <= now }.sorted { $0.nextDue < $1.nextDue }.prefix(limit)) }
    }
    package func openReminders() throws -> [ReminderRecord] {
        state.withLockedValue { s in s.reminders.values.filter(\.open).sorted { $0.issue < $1.issue } }
    }
    package func advanceReminder(issue: Int, stage: Int, nextDue: Date) throws {
        state.withLockedValue { s in s.reminders[issue]?.stage = stage; s.reminders[issue]?.nextDue = nextDue }
    }

    package func openBlocks() throws -> [Block] { state.withLockedValue { s in s.blocks.filter(\.open).map(\.0) } }
    @discardableResult
    package func file(kind: BlockKind, scope: BlockScope, title: String, body: String) throws -> Block {
        state.withLockedValue { s in
            if let b = s.blocks.first(where: { $0.open && $0.0.kind == kind && $0.0.scope == scope }) { return b.0 }
            let b = Block(id: "mem-\(s.blocks.count + 1)", kind: kind, scope: scope, title: title)
            s.blocks.append((b, true))
            return b
        }
    }
    package func close(id: String) throws {
        let closed = state.withLockedValue { s -> Bool in
            guard let i = s.blocks.firstIndex(where: { $0.0.id == id && $0.open }) else { return false }
            s.blocks[i].open = false
            return true
        }
        guard closed else { throw KAError.refusal("block \(id)", "no open block has this id", hint: "ka blocks lists the open ones") }
    }
}

/// The state database's reads and writes (SQLiteStateStore, SQLiteInstallStore): an SQLite error becomes a KAError
/// naming what was read or written.
extension DatabasePool {
    func stateWrite<T>(_ what: String, _ body: (Database) throws -> T) throws -> T {
        do { return try write(body) } catch { throw KAError.failure("state store", what, "\(error)", cause: error) }
    }
    func stateRead<T>(_ what: String, _ body: (Database) throws -> T) throws -> T {
        do { return try read(body) } catch { throw KAError.failure("state store", what, "\(error)", cause: error) }
    }
}
