import Foundation
import GRDB
import NIOConcurrencyHelpers

/// Where jobs and their journals live. The CLI and `ka serve` share one (the state database), so a job started
/// by either is listed, shown and cancelled by both.
package protocol JobStore: Sendable {
    func insert(_ job: JobRecord) throws
    func job(_ id: JobID) throws -> JobRecord?
    /// Newest first; `states` nil lists every state.
    func jobs(states: Set<JobState>?, limit: Int) throws -> [JobRecord]
    /// Reads, changes and writes one job in one transaction, so two processes never lose each other's change.
    @discardableResult
    func update(_ id: JobID, _ change: (inout JobRecord) throws -> Void) throws -> JobRecord
    /// Whether `ka jobs cancel` asked the job to stop: asked before every step and on every poll tick, so it reads
    /// no more than it must.
    func cancelRequested(_ id: JobID) throws -> Bool
}

extension JobStore {
    package func jobs(limit: Int = 50) throws -> [JobRecord] { try jobs(states: nil, limit: limit) }

    package func cancelRequested(_ id: JobID) throws -> Bool { try require(id).cancelRequested }

    /// The job, or a refusal naming it that a person can act on.
    package func require(_ id: JobID) throws -> JobRecord {
        guard let job = try job(id) else {
            throw KAError.refusal("job \(id)", "no such job", hint: "`ka jobs` lists the jobs this state dir knows")
        }
        return job
    }
}

/// The in-memory store, for unit tests. It fails where the real one would: an unknown id, a duplicate insert.
package final class MemoryJobStore: JobStore, Sendable {
    private let records = NIOLockedValueBox<[JobID: JobRecord]>([:])

    package init() {}

    package func insert(_ job: JobRecord) throws {
        try records.withLockedValue { records in
            guard records[job.id] == nil else { throw KAError.failure("job store", "job \(job.id) exists already") }
            records[job.id] = job
        }
    }

    package func job(_ id: JobID) throws -> JobRecord? { records.withLockedValue { $0[id] } }

    package func jobs(states: Set<JobState>?, limit: Int) throws -> [JobRecord] {
        records.withLockedValue { records in
            let all = records.values.filter { states?.contains($0.state) ?? true }
            return Array(all.sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }.prefix(limit))
        }
    }

    package func update(_ id: JobID, _ change: (inout JobRecord) throws -> Void) throws -> JobRecord {
        try records.withLockedValue { records in
            guard var r = records[id] else { throw KAError.failure("job store", "no job \(id)") }
            try change(&r)
            records[id] = r
            return r
        }
    }
}

/// Jobs in the state database (GRDB, WAL): one row per job (its header as JSON beside the columns we query), and
/// one row per step of its journal. A step's change writes that step's row and the header, so a journal entry costs
/// the same at step 100 as at step 1 (re-encoding the whole journal for each entry was a third of a job's CPU,
/// scripts/bench-jobs). A `version` counts the job's writes: a process that wrote the last one keeps the record
/// it wrote and reads it again only when another process wrote since (`ka jobs cancel`).
package final class SQLiteJobStore: JobStore, Sendable {
    let pool: DatabasePool
    private let lastWritten = LastWritten()

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
        m.registerMigration("v3-job-steps") { db in
            try db.create(table: "job_steps") { t in
                t.column("job", .text).notNull().references("jobs", column: "id", onDelete: .cascade)
                t.column("idx", .integer).notNull()
                t.column("record", .blob).notNull()
                t.primaryKey(["job", "idx"])
            }
            try db.alter(table: "jobs") { t in t.add(column: "version", .integer).notNull().defaults(to: 0) }
            // Journals written before: their steps move to rows of their own, the header keeps none.
            for row in try Row.fetchAll(db, sql: "SELECT id, record FROM jobs") {
                let id: String = row["id"]
                let r = try decode(row["record"], id)
                try saveSteps(db, id, r.steps, previous: nil)
                try db.execute(sql: "UPDATE jobs SET record = ? WHERE id = ?", arguments: [try header(r), id])
            }
        }
    }

    // Dates as Foundation's own seconds (a Double printed to round-trip), so a record reads back equal to what was written.
    private static let encoder: JSONEncoder = { let e = JSONEncoder(); e.outputFormatting = .sortedKeys; return e }()
    private static let decoder = JSONDecoder()

    private static func decode<T: Decodable>(_ data: Data, _ id: String, as: T.Type = JobRecord.self) throws -> T {
        do { return try decoder.decode(T.self, from: data) } catch {
            throw KAError.failure("state store", "job \(id)", "its record does not read back: \(error)", cause: error,
                                  hint: "the state database was changed by hand or by a newer ka")
        }
    }

    /// The job without its steps (they have rows of their own).
    private static func header(_ r: JobRecord) throws -> Data {
        var h = r
        h.steps = []
        return try encoder.encode(h)
    }

    /// Writes the steps that differ from `previous` (all of them without one).
    private static func saveSteps(_ db: Database, _ id: String, _ steps: [StepRecord], previous: [StepRecord]?) throws {
        for (i, step) in steps.enumerated() where previous.map({ i >= $0.count || $0[i] != step }) ?? true {
            try db.execute(sql: "INSERT INTO job_steps (job, idx, record) VALUES (?, ?, ?) ON CONFLICT(job, idx) DO UPDATE SET record = excluded.record",
                           arguments: [id, i, try encoder.encode(step)])
        }
        if let previous, previous.count > steps.count {
            try db.execute(sql: "DELETE FROM job_steps WHERE job = ? AND idx >= ?", arguments: [id, steps.count])
        }
    }

    /// The whole record: its header and its steps in order.
    private static func read(_ db: Database, _ id: String, header: Data) throws -> JobRecord {
        var r: JobRecord = try decode(header, id)
        r.steps = try Row.fetchAll(db, sql: "SELECT record FROM job_steps WHERE job = ? ORDER BY idx", arguments: [id])
            .map { try decode($0["record"], id, as: StepRecord.self) }
        return r
    }

    private func guarded<T>(_ what: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as KAError { throw e } catch {
            throw KAError.failure("state store", what, "\(error)", cause: error)
        }
    }

    package func insert(_ job: JobRecord) throws {
        try guarded("insert job \(job.id)") {
            try pool.write { db in
                try db.execute(sql: "INSERT INTO jobs (id, verb, state, createdAt, record, version) VALUES (?, ?, ?, ?, ?, 1)",
                               arguments: [job.id.value, job.verb, job.state.rawValue, job.createdAt, try Self.header(job)])
                try Self.saveSteps(db, job.id.value, job.steps, previous: nil)
            }
            lastWritten.keep(job, version: 1)
        }
    }

    package func job(_ id: JobID) throws -> JobRecord? {
        try guarded("read job \(id)") {
            try pool.read { db in
                try Data.fetchOne(db, sql: "SELECT record FROM jobs WHERE id = ?", arguments: [id.value])
                    .map { try Self.read(db, id.value, header: $0) }
            }
        }
    }

    package func jobs(states: Set<JobState>?, limit: Int) throws -> [JobRecord] {
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
                return try rows.map { try Self.read(db, $0["id"], header: $0["record"]) }
            }
        }
    }

    /// The header only: the steps are not read.
    package func cancelRequested(_ id: JobID) throws -> Bool {
        try guarded("read job \(id)") {
            guard let header = try pool.read({ try Data.fetchOne($0, sql: "SELECT record FROM jobs WHERE id = ?", arguments: [id.value]) }) else {
                throw KAError.refusal("job \(id)", "no such job", hint: "`ka jobs` lists the jobs this state dir knows")
            }
            return try Self.decode(header, id.value).cancelRequested
        }
    }

    package func update(_ id: JobID, _ change: (inout JobRecord) throws -> Void) throws -> JobRecord {
        try guarded("update job \(id)") {
            let (r, version) = try pool.write { db -> (JobRecord, Int64) in
                guard let row = try Row.fetchOne(db, sql: "SELECT record, version FROM jobs WHERE id = ?", arguments: [id.value]) else {
                    throw KAError.failure("state store", "no job \(id)")
                }
                let version: Int64 = row["version"]
                let before = try lastWritten.record(id, version: version) ?? Self.read(db, id.value, header: row["record"])
                var r = before
                try change(&r)
                try db.execute(sql: "UPDATE jobs SET state = ?, record = ?, version = ? WHERE id = ?",
                               arguments: [r.state.rawValue, try Self.header(r), version + 1, id.value])
                try Self.saveSteps(db, id.value, r.steps, previous: before.steps)
                return (r, version + 1)
            }
            lastWritten.keep(r, version: version)
            return r
        }
    }
}

/// The records this process wrote last, by job, with the version they were written as: valid while no other
/// process has written the job since. A few jobs run at once; the oldest entries go first.
private final class LastWritten: Sendable {
    private struct State {
        var entries: [JobID: (version: Int64, record: JobRecord)] = [:]
        var order: [JobID] = []
    }
    private let state = NIOLockedValueBox(State())
    private let capacity = 32

    func record(_ id: JobID, version: Int64) -> JobRecord? {
        state.withLockedValue { s in s.entries[id].flatMap { $0.version == version ? $0.record : nil } }
    }

    func keep(_ r: JobRecord, version: Int64) {
        state.withLockedValue { s in
            if s.entries.updateValue((version, r), forKey: r.id) == nil {
                s.order.append(r.id)
                if s.order.count > capacity { s.entries[s.order.removeFirst()] = nil }
            }
        }
    }
}
