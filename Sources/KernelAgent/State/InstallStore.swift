import Foundation
import GRDB
import NIOConcurrencyHelpers

/// One install of a built kernel on a target (`ka install`), and what verification said of it.
package struct InstallRecord: Sendable, Equatable, Codable, FetchableRecord, PersistableRecord {
    package static let databaseTableName = "installs"
    package enum State: String, Sendable, Codable {
        case installing, installed, verified, drifted
    }
    /// The install job.
    package var job: String
    package var host: String
    /// The build job whose [ka:installable] this installs.
    package var buildJob: String
    package var version: String
    package var lockB2sum: String
    /// The lock's patches, one `<path> b2:<b2sum>` per line (what "patches new since the last good lock" compares).
    package var patches: String
    package var baselineRef: String
    package var state: State
    /// `<signing host>:<dir>` of the /boot backup taken before the install.
    package var backup: String?
    /// The kernel release the package installed (`uname -r` after the reboot must equal it).
    package var kernelRelease: String?
    /// The host's boot id before the reboot, and after it.
    package var bootBefore: String?
    package var bootAfter: String?
    package var rebootedAt: Date?
    package var heartbeatAt: Date?
    /// One line per bar: `bar1 pass …`.
    package var bars: String
    /// Bar 5: burn-in runs until this time; nil when the host does not opt in or it is over.
    package var burnInUntil: Date?
    package var startedAt: Date
    package var updatedAt: Date

    package init(job: String, host: String, buildJob: String, version: String, lockB2sum: String, patches: String, baselineRef: String,
                state: State, startedAt: Date) {
        self.job = job; self.host = host; self.buildJob = buildJob; self.version = version; self.lockB2sum = lockB2sum
        self.patches = patches; self.baselineRef = baselineRef; self.state = state; bars = ""; self.startedAt = startedAt; updatedAt = startedAt
    }

    package var patchLines: [String] { patches.split(separator: "\n").map(String.init) }
}

/// What closed an [ka:installable] build: the install that used it, and its outcome.
package struct InstallableClosure: Sendable, Equatable, Codable, FetchableRecord, PersistableRecord {
    package static let databaseTableName = "installable_closures"
    package var buildJob: String
    package var installJob: String
    package var outcome: String
    package var closedAt: Date
    package init(buildJob: String, installJob: String, outcome: String, closedAt: Date) {
        self.buildJob = buildJob; self.installJob = installJob; self.outcome = outcome; self.closedAt = closedAt
    }
}

/// The installs and the closed installables. One owner of these two tables.
package protocol InstallStore: Sendable {
    func record(_ r: InstallRecord) throws
    func install(job: String) throws -> InstallRecord?
    /// Newest first.
    func installs(host: String, limit: Int) throws -> [InstallRecord]
    /// The newest install of each of `hosts`, in one read (ka status asks for every host).
    func latest(hosts: [String]) throws -> [String: InstallRecord]
    /// The newest install of the host that verified (the "last good lock"), other than `excluding`.
    func lastGood(host: String, excluding: String?) throws -> InstallRecord?
    /// Installs whose burn-in is scheduled (Bar 5), for the verify timer.
    func burnInsDue(before: Date) throws -> [InstallRecord]
    func closeInstallable(_ c: InstallableClosure) throws
    func closure(buildJob: String) throws -> InstallableClosure?
}

extension InstallStore {
    package func latest(host: String) throws -> InstallRecord? { try installs(host: host, limit: 1).first }
}

struct SQLiteInstallStore: InstallStore {
    let pool: DatabasePool

    static func migrate(_ m: inout DatabaseMigrator) {
        m.registerMigration("v5-installs") { db in
            try db.create(table: "installs") { t in
                t.primaryKey("job", .text)
                t.column("host", .text).notNull().indexed()
                t.column("buildJob", .text).notNull()
                t.column("version", .text).notNull()
                t.column("lockB2sum", .text).notNull()
                t.column("patches", .text).notNull()
                t.column("baselineRef", .text).notNull()
                t.column("state", .text).notNull()
                t.column("backup", .text)
                t.column("kernelRelease", .text)
                t.column("bootBefore", .text)
                t.column("bootAfter", .text)
                t.column("rebootedAt", .datetime)
                t.column("heartbeatAt", .datetime)
                t.column("bars", .text).notNull()
                t.column("burnInUntil", .datetime)
                t.column("startedAt", .datetime).notNull()
                t.column("updatedAt", .datetime).notNull()
            }
            try db.create(table: "installable_closures") { t in
                t.primaryKey("buildJob", .text)
                t.column("installJob", .text).notNull()
                t.column("outcome", .text).notNull()
                t.column("closedAt", .datetime).notNull()
            }
        }
    }


    func record(_ r: InstallRecord) throws { try pool.stateWrite("record install") { try r.save($0) } }
    func install(job: String) throws -> InstallRecord? { try pool.stateRead("read install") { try InstallRecord.fetchOne($0, key: job) } }
    func installs(host: String, limit: Int) throws -> [InstallRecord] {
        try pool.stateRead("read installs") {
            try InstallRecord.filter(Column("host") == host).order(Column("startedAt").desc, Column("job").desc).limit(limit).fetchAll($0)
        }
    }
    func latest(hosts: [String]) throws -> [String: InstallRecord] {
        try pool.stateRead("read installs") { db in
            var out: [String: InstallRecord] = [:]
            for r in try InstallRecord.filter(hosts.contains(Column("host"))).order(Column("startedAt"), Column("job")).fetchAll(db) { out[r.host] = r }
            return out
        }
    }
    func lastGood(host: String, excluding: String?) throws -> InstallRecord? {
        try pool.stateRead("read the last good install") {
            try InstallRecord.filter(Column("host") == host && Column("state") == InstallRecord.State.verified.rawValue && Column("job") != (excluding ?? ""))
                .order(Column("startedAt").desc).fetchOne($0)
        }
    }
    func burnInsDue(before: Date) throws -> [InstallRecord] {
        try pool.stateRead("read burn-ins") { try InstallRecord.filter(Column("burnInUntil") != nil).order(Column("burnInUntil")).fetchAll($0) }
    }
    func closeInstallable(_ c: InstallableClosure) throws { try pool.stateWrite("close installable") { try c.save($0) } }
    func closure(buildJob: String) throws -> InstallableClosure? {
        try pool.stateRead("read installable closure") { try InstallableClosure.fetchOne($0, key: buildJob) }
    }
}

final class MemoryInstallStore: InstallStore, Sendable {
    private struct State {
        var records: [String: InstallRecord] = [:]
        var closures: [String: InstallableClosure] = [:]
    }
    private let state = NIOLockedValueBox(State())
    func record(_ r: InstallRecord) throws { state.withLockedValue { $0.records[r.job] = r } }
    func install(job: String) throws -> InstallRecord? { state.withLockedValue { $0.records[job] } }
    func installs(host: String, limit: Int) throws -> [InstallRecord] {
        state.withLockedValue { s in Array(s.records.values.filter { $0.host == host }.sorted { ($0.startedAt, $0.job) > ($1.startedAt, $1.job) }.prefix(limit)) }
    }
    func latest(hosts: [String]) throws -> [String: InstallRecord] {
        state.withLockedValue { s in
            var out: [String: InstallRecord] = [:]
            for r in s.records.values.sorted(by: { ($0.startedAt, $0.job) < ($1.startedAt, $1.job) }) where hosts.contains(r.host) { out[r.host] = r }
            return out
        }
    }
    func lastGood(host: String, excluding: String?) throws -> InstallRecord? {
        state.withLockedValue { s in s.records.values.filter { $0.host == host && $0.state == .verified && $0.job != excluding }.max { $0.startedAt < $1.startedAt } }
    }
    func burnInsDue(before: Date) throws -> [InstallRecord] {
        state.withLockedValue { s in s.records.values.filter { $0.burnInUntil != nil }.sorted { ($0.burnInUntil ?? before) < ($1.burnInUntil ?? before) } }
    }
    func closeInstallable(_ c: InstallableClosure) throws { state.withLockedValue { $0.closures[c.buildJob] = c } }
    func closure(buildJob: String) throws -> InstallableClosure? { state.withLockedValue { $0.closures[buildJob] } }
}
