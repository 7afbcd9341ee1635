import Foundation

/// The on-demand hosts builds woke: a stored timer per host and job (`<state_dir>/his/leases/<host>/<job>.json`), so
/// a restart of the agent keeps them. A job holds its host until its build can no longer be running (the wall-clock
/// cap) and, once it is done with it, for the host's `idle_release`; the host is handed back to His when every job's
/// lease on it has run out, so one job's end never releases a host another job is still building on.
package struct WakeLeases: Sendable {
    package struct Lease: Sendable, Equatable, Codable {
        package let host: String
        package let job: String
        package let releaseAt: Date
    }

    let dir: URL
    let now: @Sendable () -> Date

    package init(stateDir: URL, now: @escaping @Sendable () -> Date = { Date() }) {
        dir = stateDir.appendingPathComponent("his").appendingPathComponent("leases")
        self.now = now
    }

    func hostDir(_ host: HostName) -> URL { dir.appendingPathComponent(host.value) }

    /// `job` holds `host` for `seconds` from now (replacing its earlier lease on it).
    package func hold(_ host: HostName, job: JobID, for seconds: Int) throws {
        try FileManager.default.createDirectory(at: hostDir(host), withIntermediateDirectories: true)
        let lease = Lease(host: host.value, job: job.value, releaseAt: now().addingTimeInterval(TimeInterval(seconds)))
        let e = JSONEncoder(); e.dateEncodingStrategy = .iso8601
        try FS.writeAtomically(try e.encode(lease), to: hostDir(host).appendingPathComponent(job.value + ".json"))
    }

    /// Every lease; an unreadable file is reported with its path and left out, so it cannot stop the other hosts'.
    package func all() throws -> (leases: [Lease], unreadable: [String]) {
        guard FS.isDirectory(dir) else { return ([], []) }
        let d = JSONDecoder(); d.dateDecodingStrategy = .iso8601
        var leases: [Lease] = [], unreadable: [String] = []
        for host in try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() {
            let hd = dir.appendingPathComponent(host)
            guard FS.isDirectory(hd) else { continue }
            for name in try FileManager.default.contentsOfDirectory(atPath: hd.path).sorted() where name.hasSuffix(".json") {
                let url = hd.appendingPathComponent(name)
                do { leases.append(try d.decode(Lease.self, from: try FS.read(url, display: url.path, limit: 4096))) } catch {
                    unreadable.append("\(url.path): not a wake lease (\(error)); remove it to let \(host) be released")
                }
            }
        }
        return (leases, unreadable)
    }

    /// The hosts whose every lease has run out.
    package func dueHosts() throws -> [HostName] {
        let t = now()
        let byHost = Dictionary(grouping: try all().leases, by: \.host)
        return try byHost.filter { $0.value.allSatisfy { $0.releaseAt <= t } }.keys.sorted().map { try HostName($0) }
    }

    /// Hands every due host back to His (`release-host`) and forgets its leases. His without that tool (or one that
    /// marks it destructive: the sweep is no planned step), or no His: the leases are dropped with a note and the
    /// host is left to His. An unreachable His is tried again at the next sweep. One line per host handled.
    @discardableResult
    package func release(due his: (any HisOps)?) async throws -> [String] {
        var notes = try all().unreadable
        for host in try dueHosts() {
            var note: String
            if let his {
                do { note = "\(host): \(try await his.releaseHost(host))" } catch let e as KAError where e.kind == .refusal {
                    note = "\(host): His will not release it here (\(e.description)); the lease is dropped and \(host) is left to His"
                } catch let e as KAError {
                    notes.append("\(host): release failed, tried again later: \(e.description)")
                    continue
                }
            } else {
                note = "\(host): no His configured; the lease is dropped"
            }
            // a job that took the host again while His answered keeps it
            let t = now()
            let d = JSONDecoder(); d.dateDecodingStrategy = .iso8601
            for name in try FileManager.default.contentsOfDirectory(atPath: hostDir(host).path) where name.hasSuffix(".json") {
                let url = hostDir(host).appendingPathComponent(name)
                var renewed = false
                do { renewed = try d.decode(Lease.self, from: try FS.read(url, display: url.path, limit: 4096)).releaseAt > t } catch {
                    renewed = false   // unreadable: it goes with the host's other leases
                }
                if renewed { continue }
                try FileManager.default.removeItem(at: url)
            }
            notes.append(note)
        }
        return notes
    }
}
