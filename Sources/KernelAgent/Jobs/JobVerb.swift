import ArgumentParser
import Foundation

/// A verb whose run is a job of named steps on other hosts (preflight now; build, install, verify later).
/// Its plan only reads: it names the steps, which consent shows; the job runtime runs them.
public protocol JobVerb: Verb {
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
    public func plan(in ctx: VerbContext) async throws -> Plan {
        Plan(verb: Self.verbName, arguments: arguments, steps: try steps(in: ctx).map(\.name))
    }

    /// A job verb is never run synchronously: both front doors go through the job runtime.
    public func run(_ plan: Plan, in ctx: VerbContext) async throws -> VerbOutcome {
        throw KAError.failure("ka \(Self.verbName)", "is a job: it runs through the job runtime, not synchronously")
    }

    public var writesState: Bool { true }
    public var treeAccess: TreeAccess { .read }

    /// ArgumentParser's entry: the CLI runs the job at once, printing a line per step.
    public mutating func run() async throws {
        try await CLI.runJob(self)
    }
}

/// Carries a non-Sendable value to the one task that uses it.
final class UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

final class JobCLIOutcome: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Result<Void, Error> = .success(())
    func set(_ v: Result<Void, Error>) { lock.lock(); value = v; lock.unlock() }
    func get() -> Result<Void, Error> { lock.lock(); defer { lock.unlock() }; return value }
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
        if job.state == .waiting, let d = job.detail, seen.noteWaiting() { FileHandle.standardError.write(Data("ka: \(d)\n".utf8)) }
    }
}

final class SeenSteps: @unchecked Sendable {
    private let lock = NSLock()
    private var states: [Int: StepState] = [:]
    private var waited = false
    func changed(_ i: Int, _ s: StepState) -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard s != .pending, states[i] != s else { return false }
        states[i] = s
        return true
    }
    func noteWaiting() -> Bool { lock.lock(); defer { lock.unlock() }; defer { waited = true }; return !waited }
}

extension CLI {
    /// The CLI front door for a job verb: policy, plan (its steps), a job record, then the steps, with a
    /// line per step. SIGINT and SIGTERM stop it; the job is left interrupted.
    public static func runJob<V: JobVerb>(_ verb: V) async throws {
        let ctx: VerbContext
        let job: JobRecord
        let steps: [JobStep]
        do {
            ctx = try context()
            (job, steps) = try await verb.withTreeAccess(in: ctx) {
                try ctx.policy().admit(try verb.policySubject(in: ctx))
                // The plan only reads, and refuses what the job would (a stale lock) before a job exists.
                _ = try await verb.plan(in: ctx)
                let steps = try verb.steps(in: ctx)
                let runner = JobRunner(store: ctx.jobs, workspace: ctx.workspace, transports: ctx.transports)
                let job = try runner.create(verb: V.verbName, arguments: verb.arguments, pins: [], subject: verb.jobSubject,
                                            origin: .cli(user: ProcessInfo.processInfo.userName), steps: steps)
                return (job, steps)
            }
        } catch let e as KAError {
            await auditHook?(V.verbName, verb.arguments, e.description, false)
            FileHandle.standardError.write(Data("ka \(V.verbName): \(e.kind == .refusal ? "refused: " : "error: ")\(e)\n".utf8))
            throw ExitCode(e.exitCode)
        }
        FileHandle.standardError.write(Data("ka \(V.verbName): job \(job.id)\n".utf8))
        let runner = JobRunner(store: ctx.jobs, workspace: ctx.workspace, transports: ctx.transports, observer: StepLinePrinter())
        let work = Task { try await runner.run(job.id, steps: steps, noWait: ctx.noWait) }
        let signals = SignalCanceller(signals: [SIGINT, SIGTERM]) { work.cancel() }
        defer { signals.stop() }
        let ended: JobRecord
        do { ended = try await work.value } catch let e as KAError {
            FileHandle.standardError.write(Data("ka \(V.verbName): error: \(e)\n".utf8))
            throw ExitCode(e.exitCode)
        }
        let text = verb.summary(of: ended, in: ctx)
        print(text, terminator: text.hasSuffix("\n") ? "" : "\n")
        await auditHook?(V.verbName, verb.arguments, text, ended.state == .succeeded)
        switch ended.state {
        case .succeeded: return
        case .interrupted, .cancelled: throw ExitCode(130)
        default: throw ExitCode(1)
        }
    }
}

/// Turns SIGINT/SIGTERM into a call (cancelling the job's task) instead of the default death, so the job is
/// journaled as interrupted and its remote commands are killed.
final class SignalCanceller: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []
    private let signals: [Int32]

    init(signals: [Int32], _ handler: @escaping @Sendable () -> Void) {
        self.signals = signals
        for s in signals {
            signal(s, SIG_IGN)
            let src = DispatchSource.makeSignalSource(signal: s, queue: .global())
            src.setEventHandler(handler: handler)
            src.resume()
            sources.append(src)
        }
    }

    func stop() {
        for s in sources { s.cancel() }
        for s in signals { signal(s, SIG_DFL) }
        sources = []
    }
}
