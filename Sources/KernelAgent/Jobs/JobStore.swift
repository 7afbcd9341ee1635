import Foundation
import GRDB

/// Where jobs and their journals live. The CLI and `ka serve` share one (the state database), so a job started
/// by either is listed, shown and cancelled by both.
public protocol JobStore: Sendable {
    func insert(_ job: JobRecord) throws
    func job(_ id: JobID) throws -> JobRecord?
    /// Newest first; `states` nil lists every state.
    func jobs(states: Set<JobState>?, limit: Int) throws -> [JobRecord]
    /// Reads, changes and writes one job in one transaction, so two processes never lose each other's change.
    @discardableResult
    func update(_ id: JobID, _ change: (inout JobRecord) throws -> Void) throws -> JobRecord
}

extension JobStore {
    public func jobs(limit: Int = 50) throws -> [JobRecord] { try jobs(states: nil, limit: limit) }

    /// The job, or a refusal naming it that a person can act on.
    public func require(_ id: JobID) throws -> JobRecord {
        guard let job = try job(id) else {
            throw KAError.refusal("job \(id)", "no such job", hint: "`ka jobs` lists the jobs this state dir knows")
        }
        return job
    }
}

/// The in-memory store, for unit tests. It fails where the real one would: an unknown id, a duplicate insert.
public final class MemoryJobStore: JobStore, @unchecked Sendable {
    private let lock = NSLock()
    private var records: [JobID: JobRecord] = [:]

    public init() {}

    public func insert(_ job: JobRecord) throws {
        lock.lock(); defer { lock.unlock() }
        guard records[job.id] == nil else { throw KAError.failure("job store", "job \(job.id) exists already") }
        records[job.id] = job
    }

    public func job(_ id: JobID) throws -> JobRecord? { lock.lock(); defer { lock.unlock() }; return records[id] }

    public func jobs(states: Set<JobState>?, limit: Int) throws -> [JobRecord] {
        lock.lock(); defer { lock.unlock() }
        let all = records.values.filter { states?.contains($0.state) ?? true }
        return Array(all.sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }.prefix(limit))
    }

    public func update(_ id: JobID, _ change: (inout JobRecord) throws -> Void) throws -> JobRecord {
        lock.lock(); defer { lock.unlock() }
        guard var r = records[id] else { throw KAError.failure("job store", "no job \(id)") }
        try change(&r)
        records[id] = r
        return r
    }
}

/// Jobs in the state database (GRDB, WAL): one row per job, its journal as JSON beside the columns we query.
public final class SQLiteJobStore: JobStore, Sendable {
    let pool: DatabasePool

    init(pool: DatabasePool) { self.pool = pool }

    static func migrate(_ m: inout DatabaseMigrator) {
        m.registerMigration("v2-jobs") { db in
            try db.create(table: "jobs") { t in
                t.primaryKey("id", .text)
                t.column("verb", .text).notNull()
                t.column("state", .text).notNull()
                t.column("createdAt", .datetime).notNull()
                t.column("record", .blob).notNull()
            }
            try db.create(index: "jobs_by_state", on: "jobs", columns: ["state", "createdAt"])
        }
    }

    // Dates as Foundation's own seconds (a Double printed to round-trip), so a record reads back equal to what was written.
    private static let encoder: JSONEncoder = { let e = JSONEncoder(); e.outputFormatting = .sortedKeys; return e }()
    private static let decoder = JSONDecoder()

    private func decode(_ data: Data, _ id: String) throws -> JobRecord {
        do { return try Self.decoder.decode(JobRecord.self, from: data) } catch {
            throw KAError.failure("state store", "job \(id)", "its record does not read back: \(error)",
                                  hint: "the state database was changed by hand or by a newer ka")
        }
    }

    private func save(_ db: Database, _ r: JobRecord, insert: Bool) throws {
        let data = try Self.encoder.encode(r)
        if insert {
            try db.execute(sql: "INSERT INTO jobs (id, verb, state, createdAt, record) VALUES (?, ?, ?, ?, ?)",
                           arguments: [r.id.value, r.verb, r.state.rawValue, r.createdAt, data])
        } else {
            try db.execute(sql: "UPDATE jobs SET state = ?, record = ? WHERE id = ?", arguments: [r.state.rawValue, data, r.id.value])
        }
    }

    private func guarded<T>(_ what: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as KAError { throw e } catch {
            throw KAError.failure("state store", what, "\(error)")
        }
    }

    public func insert(_ job: JobRecord) throws {
        try guarded("insert job \(job.id)") { try pool.write { try save($0, job, insert: true) } }
    }

    public func job(_ id: JobID) throws -> JobRecord? {
        try guarded("read job \(id)") {
            try pool.read { db in
                try Data.fetchOne(db, sql: "SELECT record FROM jobs WHERE id = ?", arguments: [id.value]).map { try decode($0, id.value) }
            }
        }
    }

    public func jobs(states: Set<JobState>?, limit: Int) throws -> [JobRecord] {
        try guarded("list jobs") {
            try pool.read { db in
                let rows: [Row]
                if let states {
                    let marks = Array(repeating: "?", count: states.count).joined(separator: ", ")
                    rows = try Row.fetchAll(db, sql: "SELECT id, record FROM jobs WHERE state IN (\(marks)) ORDER BY createdAt DESC, id DESC LIMIT ?",
                                            arguments: StatementArguments(states.map(\.rawValue).sorted().map { $0 as any DatabaseValueConvertible } + [limit]))
                } else {
                    rows = try Row.fetchAll(db, sql: "SELECT id, record FROM jobs ORDER BY createdAt DESC, id DESC LIMIT ?", arguments: [limit])
                }
                return try rows.map { try decode($0["record"], $0["id"]) }
            }
        }
    }

    public func update(_ id: JobID, _ change: (inout JobRecord) throws -> Void) throws -> JobRecord {
        try guarded("update job \(id)") {
            try pool.write { db in
                guard let data = try Data.fetchOne(db, sql: "SELECT record FROM jobs WHERE id = ?", arguments: [id.value]) else {
                    throw KAError.failure("state store", "no job \(id)")
                }
                var r = try decode(data, id.value)
                try change(&r)
                try save(db, r, insert: false)
                return r
            }
        }
    }
}
