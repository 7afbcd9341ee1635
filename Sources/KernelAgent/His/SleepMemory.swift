import Foundation

/// Asleep hosts remembered with a backoff (60 s doubling to 15 min), persisted under <state_dir>/his/ so separate
/// `ka` processes share it: a sleeping fleet is not probed on every request (lmcp's incidents).
///
/// One file per host, `<state_dir>/his/asleep-<host>.json`, replaced whole by a rename; the last writer wins, which
/// at worst probes a host once more than needed.
package struct SleepMemory: Sendable {
    package static let firstBackoff: TimeInterval = 60
    package static let maxBackoff: TimeInterval = 15 * 60

    struct Record: Codable, Equatable {
        /// Do not probe before this (seconds since 1970).
        var until: Double
        /// The backoff that set `until`; the next consecutive note doubles it.
        var backoff: Double
        /// Consecutive asleep notes since the host was last seen awake.
        var notes: Int
    }

    package let dir: URL
    private let now: @Sendable () -> Date

    package init(stateDir: URL, now: @escaping @Sendable () -> Date = { Date() }) {
        dir = stateDir.appendingPathComponent("his")
        self.now = now
    }

    func file(_ host: HostName) -> URL { dir.appendingPathComponent("asleep-\(host.value).json") }

    /// Non-nil: do not probe `host` before this date.
    package func asleepUntil(_ host: HostName) throws -> Date? {
        guard let record = try read(host) else { return nil }
        let until = Date(timeIntervalSince1970: record.until)
        return until > now() ? until : nil
    }

    /// The host was found asleep: not to be probed for 60 s, doubling on each consecutive note up to 15 min.
    package func noteAsleep(_ host: HostName) throws {
        let previous = try read(host)
        let backoff = previous.map { min($0.backoff * 2, Self.maxBackoff) } ?? Self.firstBackoff
        try write(Record(until: now().timeIntervalSince1970 + backoff, backoff: backoff, notes: (previous?.notes ?? 0) + 1), for: host)
    }

    /// The host answered: forget it was asleep (the next asleep note starts again at 60 s).
    package func noteAwake(_ host: HostName) throws {
        do {
            try FileManager.default.removeItem(at: file(host))
        } catch CocoaError.fileNoSuchFile {
            return
        } catch {
            throw KAError.failure(file(host).path, "cannot remove the asleep record: \(error.localizedDescription)", cause: error)
        }
    }

    /// The backoff now in force for `host` (nil: not remembered asleep).
    package func backoff(_ host: HostName) throws -> TimeInterval? { try read(host)?.backoff }

    func read(_ host: HostName) throws -> Record? {
        let url = file(host)
        guard FS.exists(url) else { return nil }
        let data = try FS.read(url, limit: 4096)
        do {
            return try JSONDecoder().decode(Record.self, from: data)
        } catch {
            throw KAError.failure(url.path, "not an asleep record: \(error)", cause: error,
                                  hint: "remove the file; the host is then probed at the next request")
        }
    }

    func write(_ record: Record, for host: HostName) throws {
        let url = file(host)
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try JSONEncoder().encode(record).write(to: url, options: .atomic)
        } catch {
            throw KAError.failure(url.path, "cannot record that \(host) is asleep: \(error.localizedDescription)", cause: error,
                                  hint: "check that the state dir \(dir.deletingLastPathComponent().path) is writable")
        }
    }
}
