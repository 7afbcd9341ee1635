import ArgumentParser
import Foundation

/// `ka jobs [--json]`, `ka jobs show <job-id>`, `ka jobs cancel <job-id>`: the jobs this state dir knows, from the
/// CLI and from `ka serve` alike.
package struct JobsVerb: InlineVerb {
    package static let configuration = CommandConfiguration(
        commandName: "jobs",
        abstract: "List jobs; `show <job-id>` prints a job's journal and log tail; `cancel <job-id>` stops it.")

    package enum Action: String, ExpressibleByArgument, Sendable, CaseIterable { case list, show, cancel }

    @Argument(help: "list (default), show or cancel.")
    package var action: Action = .list

    @Argument(help: "The job id, for show and cancel (e.g. fresnel-20261130-1412-a3f9).")
    package var job: String?

    @Flag(help: "Print JSON.")
    package var json = false

    @Option(help: "How many jobs to list, newest first.")
    package var limit: Int = 30

    @Option(help: "How many log lines `show` prints.")
    package var lines: Int = 20

    package init() {}

    package var lane: Lane { .none }
    package var treeAccess: TreeAccess { .none }
    package var writesState: Bool { action == .cancel }

    package func validate() throws {
        if action == .list && job != nil { throw ValidationError("`ka jobs` lists; use `ka jobs show \(job ?? "")` for one job") }
        if action != .list && job == nil { throw ValidationError("`ka jobs \(action.rawValue)` needs a job id (see `ka jobs`)") }
        guard (1...1000).contains(limit), (0...10_000).contains(lines) else { throw ValidationError("--limit is 1…1000 and --lines 0…10000") }
    }

    package func policySubject(in ctx: VerbContext) throws -> PolicySubject {
        if let job { _ = try JobID(job) }
        return PolicySubject()
    }

    package func plan(in ctx: VerbContext) async throws -> Planned<Void> {
        let args = [action.rawValue] + (job.map { [$0] } ?? []) + (json ? ["--json"] : [])
        switch action {
        case .list, .show: return Planned(Plan(verb: "jobs", arguments: args, steps: ["read the job journal"]))
        case .cancel:
            let id = try JobID(job ?? "")
            let j = try ctx.jobs.require(id)
            return Planned(Plan(verb: "jobs", arguments: args, steps: ["cancel job \(id) (\(j.command), \(j.state.rawValue))"],
                        pins: [Plan.Pin("job \(id) state", j.state.isFinished ? j.state.rawValue : "unfinished")]))
        }
    }

    package func run(_ planned: Planned<Void>, in ctx: VerbContext) async throws -> VerbOutcome {
        switch action {
        case .list:
            let jobs = try ctx.jobs.jobs(limit: limit)
            if json { return VerbOutcome(Self.encode(jobs)) }
            if jobs.isEmpty { return VerbOutcome("no jobs yet") }
            return VerbOutcome(jobs.map(Self.line).joined(separator: "\n"))
        case .show:
            let j = try ctx.jobs.require(try JobID(job ?? ""))
            let tail = try JobLog.tail(JobLog.url(ctx.workspace, j.id), lines: lines)
            if json {
                struct Shown: Codable { let job: JobRecord; let logTail: [String] }
                return VerbOutcome(Self.encode(Shown(job: j, logTail: tail)))
            }
            return VerbOutcome(Self.journal(j) + (tail.isEmpty ? "" : "\nlog (\(JobLog.url(ctx.workspace, j.id).path)):\n" + tail.map { "  \($0)" }.joined(separator: "\n")))
        case .cancel:
            let id = try JobID(job ?? "")
            let j = try ctx.jobs.update(id) { j in
                guard !j.state.isFinished else { return }
                if j.owner.map(\.isAlive) ?? false {
                    j.cancelRequested = true   // its runner stops it and records how
                } else {
                    j.state = .cancelled; j.finishedAt = ctx.now(); j.detail = "cancelled (no process was running it)"; j.cancelRequested = true
                }
            }
            if j.state.isFinished && !j.cancelRequested { return VerbOutcome("job \(id) had already \(j.state.rawValue); nothing to cancel") }
            if j.state == .cancelled { return VerbOutcome("job \(id) cancelled") }
            return VerbOutcome("job \(id): cancel requested; \(j.owner.map(\.description) ?? "its runner") stops it and kills its remote commands")
        }
    }

    static func encode<T: Encodable>(_ v: T) -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        e.dateEncodingStrategy = .iso8601
        return (try? e.encode(v)).map { String(decoding: $0, as: UTF8.self) } ?? "null"   // Codable records of plain values always encode
    }

    static func line(_ j: JobRecord) -> String {
        let done = j.steps.filter { $0.state == .succeeded }.count
        let at = ISO8601DateFormatter().string(from: j.createdAt)
        return "\(j.id)  \(j.state.rawValue.padding(toLength: 11, withPad: " ", startingAt: 0)) \(done)/\(j.steps.count) steps  \(at)  \(j.command)  [\(j.origin)]"
    }

    /// The step list as the status comment shows it.
    package static func journal(_ j: JobRecord) -> String {
        var out = "job \(j.id): \(j.command) — \(j.state.rawValue)\(j.detail.map { " (\($0))" } ?? "")\n"
        out += "lanes: \(j.lanes.joined(separator: ", ")); from \(j.origin)\n"
        for (i, s) in j.steps.enumerated() {
            var line = "  \(s.state.mark) \(i + 1). \(s.name)"
            if let secs = s.seconds { line += String(format: " (%.1f s)", secs) }
            if let o = s.outcome { line += ": \(o)" }
            if s.attempts > 1 { line += " [started \(s.attempts) times]" }
            out += line + "\n"
        }
        return out
    }
}
