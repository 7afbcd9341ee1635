import ArgumentParser
import Foundation

/// A kernel-agent verb: its arguments (ArgumentParser), what the hard rules must check, its typed plan and how it
/// does its work (`VerbExecution`: inline, or a job of named steps). `VerbPipeline` is the only caller of these.
package protocol Verb: AsyncParsableCommand {
    /// What planning computed that the work reuses (promote's streamed series; a tree verb's operations).
    associatedtype Prepared: Sendable = Void
    /// What the policy must admit before anything else happens. Every verb answers, even if with nothing.
    func policySubject(in ctx: VerbContext) throws -> PolicySubject
    var lane: Lane { get }
    /// What it does to patches/ and fleet/; the pipeline holds the tree lock accordingly (default: read, or
    /// write for verbs on the tree lane).
    var treeAccess: TreeAccess { get }
    /// Whether it records anything in the state store (default yes); a read-only verb starts faster.
    var writesState: Bool { get }
    /// Whether its work is a job (which the bot resumes after a restart).
    static var runsAsJob: Bool { get }
    func plan(in ctx: VerbContext) async throws -> Planned<Prepared>
    func execution(of planned: Planned<Prepared>, in ctx: VerbContext) throws -> VerbExecution
    /// For a job a restart left: its steps again (nil for inline verbs).
    func resumption(in ctx: VerbContext) throws -> JobSpec?
}

/// A verb whose work is one inline run.
package protocol InlineVerb: Verb {
    func run(_ planned: Planned<Prepared>, in ctx: VerbContext) async throws -> VerbOutcome
}

extension InlineVerb {
    package static var runsAsJob: Bool { false }
    package func execution(of planned: Planned<Prepared>, in ctx: VerbContext) throws -> VerbExecution {
        .inline { try await run(planned, in: ctx) }
    }
    package func resumption(in ctx: VerbContext) throws -> JobSpec? { nil }
}

extension Verb {
    package static var verbName: String { configuration.commandName ?? "\(Self.self)" }

    package var treeAccess: TreeAccess { lane == .tree ? .write : .read }
    package var writesState: Bool { true }

    /// Runs `body` holding the tree lock this verb needs, after recovering any transaction a dead process left.
    /// The pipeline goes through here, so no verb ever reads a half-done tree or undoes another's live work.
    package func withTreeAccess<T>(in ctx: VerbContext, _ body: () async throws -> T) async throws -> T {
        let noWait = ctx.noWait || ((self as? any WaitsForTree)?.lockOptions.noWait ?? false)
        let lock = try TreeLock.acquire(ctx.workspace, access: treeAccess, state: ctx.state,
                                        holder: "ka \(Self.verbName)", noWait: noWait, note: ctx.note)
        defer { lock.release() }
        return try await body()
    }

    /// The pipeline run at once for an inline verb, as the CLI runs it but without printing (tests and tools; the
    /// front doors call `VerbPipeline` themselves): the plan and the outcome.
    package func execute(in ctx: VerbContext) async throws -> (Plan, VerbOutcome) {
        switch try await VerbPipeline.perform(self, consented: nil, origin: .cli(user: ctx.requester), in: ctx) {
        case let .done(plan, outcome): return (plan, outcome)
        case let .job(job, _): throw KAError.failure("ka \(Self.verbName)", "is a job (\(job.id)): run it with ka \(Self.verbName) or VerbPipeline.run")
        case let .consentVoid(changed): throw KAError(.refusal, ["ka \(Self.verbName)", "inputs changed since the plan"] + changed)
        }
    }

    /// ArgumentParser's entry: the CLI runs the verb immediately.
    package mutating func run() async throws {
        try await CLI.run(self)
    }
}
