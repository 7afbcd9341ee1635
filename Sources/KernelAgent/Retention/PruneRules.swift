import Foundation

/// The seed's retention numbers, in one place.
package enum Retention {
    /// A failed build's tree stays in `keep/` this long, unless `ka keep` extends it.
    package static let failedBuildDays = 14
    /// Install backups (the newest of each host always stays).
    package static let backupDays = 7
    /// Archived jobs on the signing host, and their logs on the log host.
    package static let archiveDays = 365
}

/// What `ka prune` saw: plain listings, read by `PruneListing` from the hosts.
package struct PruneInventory: Sendable, Equatable, Codable {
    /// One dir under a build host's `/srv/kernel-agent/{source,output,keep}/`.
    package struct BuildDir: Sendable, Equatable, Codable {
        package enum Area: String, Sendable, Codable, CaseIterable { case source, output, keep }
        package var host: String
        package var area: Area
        package var name: String
        package var modified: Date
        /// The first line of its `.ka-keep` (an ISO 8601 date or `forever`), nil when it has none.
        package var keepMark: String?
        package init(host: String, area: Area, name: String, modified: Date, keepMark: String? = nil) {
            self.host = host; self.area = area; self.name = name; self.modified = modified; self.keepMark = keepMark
        }
        package var path: String { "\(HostChecks.workRoot)/\(area.rawValue)/\(name)" }
    }

    /// `<backups_dir>/<host>/<version>/` on the signing host.
    package struct Backup: Sendable, Equatable, Codable {
        package var host: String
        package var version: String
        package var modified: Date
        /// Its absolute path on the signing host.
        package var path: String
        package init(host: String, version: String, modified: Date, path: String) {
            self.host = host; self.version = version; self.modified = modified; self.path = path
        }
    }

    /// `<archive_dir>/<job>/` on the signing host, or `<logs.dir>/<subject>/<job>/` on the log host.
    package struct Dated: Sendable, Equatable, Codable {
        package var path: String
        package var modified: Date
        package init(path: String, modified: Date) { self.path = path; self.modified = modified }
    }

    package var buildDirs: [BuildDir] = []
    package var backups: [Backup] = []
    package var archives: [Dated] = []
    package var publishedLogs: [Dated] = []
    /// The state of each job this state dir knows, by id.
    package var jobStates: [String: JobState] = [:]
    package init() {}
}

/// One line of the prune list: what happens to one thing, and why.
package struct PruneItem: Sendable, Equatable, Codable {
    package enum Action: String, Sendable, Codable {
        /// A succeeded build: its tree and logs go to the archive, then its build dirs are removed.
        case archive
        case remove
        case leave
    }
    package var action: Action
    /// `signing`, `logs` or a build host's name: where `path` is.
    package var host: String
    package var path: String
    package var why: String
    /// For build dirs: the job, and the `.ka-keep` line seen when listed (the removal re-checks it).
    package var job: String?
    package var keepMark: String?

    package var line: String { "\(action.rawValue) \(host):\(path) — \(why)" }
}

/// The prune decision: from listings and a clock to what goes and why. No I/O, so tests age things with a clock.
package enum PruneRules {
    static func days(_ from: Date, _ now: Date) -> Int { Int((now.timeIntervalSince(from) / 86400).rounded(.down)) }

    /// What a `.ka-keep` line says: kept forever, kept until a date, or unreadable (then kept: never remove on a doubt).
    enum KeepMark: Equatable {
        case forever, until(Date), unreadable(String)
        init(_ text: String) {
            if text == "forever" { self = .forever; return }
            do { self = .until(try Date(text, strategy: .iso8601)) } catch { self = .unreadable(text) }
        }
        /// Why it stays at `now`, or nil when the mark no longer holds it.
        func holds(at now: Date) -> String? {
            switch self {
            case .forever: return "kept forever (ka keep)"
            case let .until(d): return d > now ? "kept until \(d.formatted(.iso8601)) (ka keep)" : nil
            case let .unreadable(t): return "its .ka-keep says '\(t.prefix(60))', which is neither a date nor 'forever': left"
            }
        }
    }

    /// `signer` and `logHost` name the hosts the backups, archives and published logs were listed on.
    package static func decide(_ inv: PruneInventory, now: Date, signer: String, logHost: String) -> [PruneItem] {
        buildDirs(inv, now: now) + backups(inv.backups, signer: signer, now: now)
            + dated(inv.archives, host: signer, what: "archive", now: now) + dated(inv.publishedLogs, host: logHost, what: "published log", now: now)
    }

    static func buildDirs(_ inv: PruneInventory, now: Date) -> [PruneItem] {
        var out: [PruneItem] = []
        let byJob = Dictionary(grouping: inv.buildDirs) { "\($0.host)\t\($0.name)" }
        for key in byJob.keys.sorted() {
            let dirs = (byJob[key] ?? []).sorted { $0.area.rawValue > $1.area.rawValue }   // source, output, keep
            func item(_ d: PruneInventory.BuildDir, _ action: PruneItem.Action, _ why: String) -> PruneItem {
                PruneItem(action: action, host: d.host, path: d.path, why: why, job: d.name, keepMark: d.keepMark)
            }
            guard let first = dirs.first else { continue }
            guard JobID.isValid(first.name) else {   // not ours to judge: a name that is no job id
                out += dirs.map { item($0, .leave, "not a job id") }
                continue
            }
            // A keep mark on any of the job's dirs holds all of them.
            if let held = dirs.compactMap({ $0.keepMark.flatMap { KeepMark($0).holds(at: now) } }).first {
                out += dirs.map { item($0, .leave, held) }
                continue
            }
            let state = inv.jobStates[first.name]
            for d in dirs {
                let age = days(d.modified, now)
                let expiredKeep = d.keepMark.map { _ in " (its ka keep date has passed)" } ?? ""
                switch (d.area, state) {
                case (.source, .succeeded?):
                    out.append(item(d, .archive, "build succeeded: tree and logs to the archive, then removed"))
                case (.output, .succeeded?):
                    out.append(item(d, .remove, "build succeeded: its packages were published"))
                case (_, nil) where d.area != .keep:
                    out.append(item(d, .leave, "no job of this state dir"))
                case (_, let s?) where !s.isFinished:
                    out.append(item(d, .leave, "job is \(s.rawValue)"))
                default:
                    // keep/ (a failed build), or the dirs of a failed or cancelled job left outside keep/
                    let what = d.area == .keep ? "failed build" : "\(state?.rawValue ?? "unknown") build"
                    if age >= Retention.failedBuildDays {
                        out.append(item(d, .remove, "\(what), \(age) days old (kept \(Retention.failedBuildDays) days)\(expiredKeep)"))
                    } else {
                        out.append(item(d, .leave, "\(what), \(age) days old (kept \(Retention.failedBuildDays) days)"))
                    }
                }
            }
        }
        return out
    }

    /// Backups older than 7 days go, except the newest of each host, whatever its age.
    static func backups(_ all: [PruneInventory.Backup], signer: String, now: Date) -> [PruneItem] {
        var out: [PruneItem] = []
        for (host, list) in Dictionary(grouping: all, by: \.host).sorted(by: { $0.key < $1.key }) {
            let newest = list.max { ($0.modified, $0.version) < ($1.modified, $1.version) }
            for b in list.sorted(by: { $0.modified < $1.modified }) {
                let age = days(b.modified, now)
                let path = b.path
                if b == newest {
                    out.append(PruneItem(action: .leave, host: signer, path: path, why: "the newest backup of \(host) (\(age) days old) always stays"))
                } else if age >= Retention.backupDays {
                    out.append(PruneItem(action: .remove, host: signer, path: path, why: "backup \(age) days old (kept \(Retention.backupDays) days)"))
                } else {
                    out.append(PruneItem(action: .leave, host: signer, path: path, why: "backup \(age) days old (kept \(Retention.backupDays) days)"))
                }
            }
        }
        return out
    }

    /// Archives and published logs older than a year go; younger ones are not listed.
    static func dated(_ all: [PruneInventory.Dated], host: String, what: String, now: Date) -> [PruneItem] {
        all.sorted { $0.path < $1.path }.compactMap { a in
            let age = days(a.modified, now)
            guard age >= Retention.archiveDays else { return nil }
            return PruneItem(action: .remove, host: host, path: a.path, why: "\(what) \(age) days old (kept \(Retention.archiveDays) days)")
        }
    }
}
