import Foundation

/// A job's id: `<subject>-<yyyymmdd>-<hhmm>-<4 hex>`, e.g. `fresnel-20261130-1412-a3f9`. Valid as a path
/// component (the job's log lives under `<state>/jobs/<id>/`) and, for one subject, sorted by start time.
package struct JobID: Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    package let value: String

    package init(_ raw: String) throws {
        guard Self.isValid(raw) else {
            throw KAError.refusal("job '\(raw.prefix(80))'", "not a job id",
                                  hint: "a job id looks like fresnel-20261130-1412-a3f9; `ka jobs` lists them")
        }
        value = raw
    }

    /// A new id for a job about `subject` (a host name, or the verb for a job on no host).
    package static func make(subject: String, at date: Date, random: UInt16 = UInt16.random(in: .min ... .max)) -> JobID {
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = TimeZone(identifier: "UTC") ?? cal.timeZone
        let c = cal.dateComponents([.year, .month, .day, .hour, .minute], from: date)
        func two(_ n: Int?) -> String { let v = n ?? 0; return v < 10 ? "0\(v)" : "\(v)" }
        let hex = String(random, radix: 16)
        let stamp = "\(c.year ?? 1970)\(two(c.month))\(two(c.day))-\(two(c.hour))\(two(c.minute))"
        // Subjects are host names or verb names, both already valid; the fallback keeps `make` total.
        let safe = HostName.isValid(subject) ? subject : "job"
        return JobID(unchecked: "\(safe)-\(stamp)-\(String(repeating: "0", count: 4 - hex.count))\(hex)")
    }

    private init(unchecked: String) { value = unchecked }

    static func isValid(_ s: String) -> Bool {
        let parts = s.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count >= 4, s.utf8.count <= 96 else { return false }
        let tail = parts.suffix(3).map(String.init)
        let subject = parts.dropLast(3).joined(separator: "-")
        let digits = { (t: String, n: Int) in t.utf8.count == n && t.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } }
        let hex = tail[2].utf8.count == 4 && tail[2].utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
        return HostName.isValid(subject) && digits(tail[0], 8) && digits(tail[1], 4) && hex
    }

    package var description: String { value }
    package static func < (a: JobID, b: JobID) -> Bool { a.value < b.value }
    package init(from decoder: Decoder) throws { try self.init(try decoder.singleValueContainer().decode(String.self)) }
    package func encode(to encoder: Encoder) throws { var c = encoder.singleValueContainer(); try c.encode(value) }
}

package enum JobState: String, Sendable, Codable, CaseIterable {
    case queued, waiting, running, succeeded, failed, cancelled, interrupted
    package var isFinished: Bool { self == .succeeded || self == .failed || self == .cancelled }
}

package enum StepState: String, Sendable, Codable {
    case pending, running, succeeded, failed, skipped
    package var mark: String {
        switch self {
        case .pending: return "·"
        case .running: return "⏳"
        case .succeeded: return "✓"
        case .failed: return "✗"
        case .skipped: return "–"
        }
    }
}

/// One step of a job as the journal holds it.
package struct StepRecord: Sendable, Codable, Equatable {
    package var name: String
    package var state: StepState
    package var startedAt: Date?
    package var finishedAt: Date?
    /// One line: what the step found, or why it failed.
    package var outcome: String?
    /// Where the step's output starts in the job's log, so `jobs show` can print one step's lines.
    package var logOffset: UInt64?
    /// How many times the step was started: a non-resumable step never starts twice.
    package var attempts: Int
    /// While it runs, how far a long step is (a kernel build's phase, targets and time); absent in older journals.
    package var progress: String?

    package init(name: String) {
        self.name = name; state = .pending; startedAt = nil; finishedAt = nil; outcome = nil; logOffset = nil; attempts = 0
        progress = nil
    }

    package var seconds: Double? {
        guard let s = startedAt, let f = finishedAt else { return nil }
        return f.timeIntervalSince(s)
    }
}

/// Who started a job: a person at the CLI, or a run the bot took consent for on an issue.
package enum JobOrigin: Sendable, Codable, Equatable, CustomStringConvertible {
    case cli(user: String)
    case issue(Int, run: Int64)
    package var description: String {
        switch self {
        case let .cli(user): return "cli (\(user))"
        case let .issue(n, run): return "issue #\(n), run #\(run)"
        }
    }
}

/// Every run of a verb is a job: what it runs, on which lanes, pinned to what, and the journal of its steps.
package struct JobRecord: Sendable, Codable, Equatable {
    package let id: JobID
    package let verb: String
    package let arguments: [String]
    /// The consent pins (e.g. the lock hash) the job runs against.
    package let pins: [Plan.Pin]
    package let lanes: [String]
    package let origin: JobOrigin
    package var state: JobState
    package let createdAt: Date
    package var startedAt: Date?
    package var finishedAt: Date?
    package var steps: [StepRecord]
    /// The last word: why it failed, was cancelled or interrupted.
    package var detail: String?
    /// Set by `ka jobs cancel` (maybe from another process); the running process sees it and stops.
    package var cancelRequested: Bool
    /// The process running it now, so a restart can tell a job whose runner died from one still running elsewhere.
    package var owner: ProcessIdentity?

    package init(id: JobID, verb: String, arguments: [String], pins: [Plan.Pin], lanes: [String], origin: JobOrigin,
                steps: [String], at: Date) {
        self.id = id; self.verb = verb; self.arguments = arguments; self.pins = pins; self.lanes = lanes
        self.origin = origin; state = .queued; createdAt = at; startedAt = nil; finishedAt = nil
        self.steps = steps.map(StepRecord.init(name:)); detail = nil; cancelRequested = false; owner = nil
    }

    package var command: String { (["ka", verb] + arguments).joined(separator: " ") }
}

/// A process, told apart from a later one that reuses its pid by its start time (field 22 of /proc/<pid>/stat).
package struct ProcessIdentity: Sendable, Codable, Equatable, CustomStringConvertible {
    package let pid: Int32
    package let startTicks: UInt64

    package static var current: ProcessIdentity {
        let pid = getpid()
        return ProcessIdentity(pid: pid, startTicks: startTicks(pid) ?? 0)
    }

    static func startTicks(_ pid: Int32) -> UInt64? {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/stat") else { return nil }
        let text = String(decoding: data, as: UTF8.self)
        // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state); start time is field 22
        return fields.count > 19 ? UInt64(fields[19]) : nil
    }

    package var isAlive: Bool { Self.startTicks(pid) == startTicks }
    package var description: String { "pid \(pid)" }
}
