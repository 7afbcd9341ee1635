import ArgumentParser
import Foundation
import NIOConcurrencyHelpers

/// A verb whose work is a job of named steps on other hosts (preflight, build, install, verify, prune, …).
/// Its plan only reads: it names the steps, which consent shows; the job runtime runs them.
package protocol JobVerb: Verb where Prepared == Void {
    /// What the job id starts with: the host it is about.
    var jobSubject: String { get }
    /// The steps, computed from the arguments and what the plan read. No side effects.
    func steps(in ctx: VerbContext) throws -> [JobStep]
    /// The text a person reads when the job ended (CLI output, the bot's final reply).
    func summary(of job: JobRecord, in ctx: VerbContext) -> String
    /// Its arguments as a command line would spell them (the job record, the audit line).
    var arguments: [String] { get }
}

extension JobVerb {
    package func plan(in ctx: VerbContext) async throws -> Planned<Void> {
        Planned(Plan(verb: Self.verbName, arguments: arguments, steps: try steps(in: ctx).map(\.name)))
    }

    package static var runsAsJob: Bool { true }

    package func execution(of planned: Planned<Void>, in ctx: VerbContext) throws -> VerbExecution { .job(try jobSpec(in: ctx)) }

    package func resumption(in ctx: VerbContext) throws -> JobSpec? { try jobSpec(in: ctx) }

    func jobSpec(in ctx: VerbContext) throws -> JobSpec {
        JobSpec(subject: jobSubject, steps: try steps(in: ctx), summary: { job, ctx in summary(of: job, in: ctx) })
    }

    package var writesState: Bool { true }
    package var treeAccess: TreeAccess { .read }
}

/// Prints one progress line per step change to stderr when it is a terminal (or always, for logs).
struct StepLinePrinter: JobObserver {
    let seen = SeenSteps()
    func jobChanged(_ job: JobRecord, log: JobLog) {
        for (i, s) in job.steps.enumerated() {
            guard seen.changed(i, s.state) else { continue }
            var line = "\(s.state.mark) [\(i + 1)/\(job.steps.count)] \(s.name)"
            if let secs = s.seconds { line += String(format: " (%.1f s)", secs) }
            if s.state == .succeeded || s.state == .failed, let o = s.outcome { line += ": \(o)" }
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
        for s in job.steps where s.state == .running {
            if let p = s.progress, seen.newProgress(p) { FileHandle.standardError.write(Data("    … \(p)\n".utf8)) }
        }
        if job.state == .waiting, let d = job.detail, seen.noteWaiting() { FileHandle.standardError.write(Data("ka: \(d)\n".utf8)) }
    }
}

final class SeenSteps: Sendable {
    private struct State { var states: [Int: StepState] = [:]; var waited = false; var progress: String? }
    private let state = NIOLockedValueBox(State())
    func changed(_ i: Int, _ s: StepState) -> Bool {
        state.withLockedValue { st in
            guard s != .pending, st.states[i] != s else { return false }
            st.states[i] = s
            return true
        }
    }
    func newProgress(_ p: String) -> Bool {
        state.withLockedValue { st in defer { st.progress = p }; return st.progress != p }
    }
    func noteWaiting() -> Bool { state.withLockedValue { st in defer { st.waited = true }; return !st.waited } }
}

/// Turns SIGINT/SIGTERM into a call (cancelling the job's task) instead of the default death, so the job is
/// journaled as interrupted and its remote commands are killed.
// Unchecked: DispatchSource is not marked Sendable, but its cancel() is thread-safe and idempotent, and the array is
// never changed after init.
final class SignalCanceller: @unchecked Sendable {
    private let sources: [DispatchSourceSignal]
    private let signals: [Int32]

    init(signals: [Int32], _ handler: @escaping @Sendable () -> Void) {
        self.signals = signals
        var sources: [DispatchSourceSignal] = []
        for s in signals {
            signal(s, SIG_IGN)
            let src = DispatchSource.makeSignalSource(signal: s, queue: .global())
            src.setEventHandler(handler: handler)
            src.resume()
            sources.append(src)
        }
        self.sources = sources
    }

    func stop() {
        for s in sources { s.cancel() }
        for s in signals { signal(s, SIG_DFL) }
    }
}
