import Foundation

/// A verb's plan as consent shows it, with what planning already computed, typed by the verb (promote's streamed
/// series, a tree verb's operations). The plan's fields read through it (`planned.steps`).
@dynamicMemberLookup
package struct Planned<Prepared: Sendable>: Sendable {
    package var plan: Plan
    package let prepared: Prepared

    package init(_ plan: Plan, _ prepared: Prepared) { self.plan = plan; self.prepared = prepared }

    package subscript<T>(dynamicMember path: KeyPath<Plan, T>) -> T { plan[keyPath: path] }
}

extension Planned where Prepared == Void {
    package init(_ plan: Plan) { self.init(plan, ()) }
}

/// How a planned verb does its work: at once (`inline`), or as a job of named steps.
package enum VerbExecution {
    case inline(() async throws -> VerbOutcome)
    case job(JobSpec)
}

/// A job a verb asks for: who it is about, its steps, and the text a person reads when it ended.
package struct JobSpec {
    package let subject: String
    package let steps: [JobStep]
    package let summary: (JobRecord, VerbContext) -> String

    package init(subject: String, steps: [JobStep], summary: @escaping (JobRecord, VerbContext) -> String) {
        self.subject = subject; self.steps = steps; self.summary = summary
    }
}

/// The one path from a parsed verb to its outcome, for both front doors. It owns, once: the tree lock (with the
/// recovery of a dead process's transaction), `policy.admit`, the plan, the comparison with consented pins,
/// running inline or creating the job, and filing the blocks a refusal asks for. The CLI adapts it to printing, the
/// audit issue and the exit code; the engine to lanes, status comments and folding.
package enum VerbPipeline {
    /// `/ka-<verb>`, and reading a plan: admitted and planned under the tree lock, nothing run.
    /// `arguments`: the argv the front door parsed, which the plan shows (nil: the verb's own spelling).
    package static func propose<V: Verb>(_ verb: V, arguments: [String]? = nil, in ctx: VerbContext) async throws -> Plan {
        try await verb.withTreeAccess(in: ctx) {
            try await filingBlocks(in: ctx) { try await admittedPlan(verb, arguments: arguments, in: ctx).plan }
        }
    }

    /// What `perform` ended with.
    package enum Performed {
        /// An inline verb ran.
        case done(Plan, VerbOutcome)
        /// A job was created (or found, when resumed); the front door runs it with its own observer.
        case job(JobRecord, JobSpec)
        /// The consented pins no longer hold: nothing was done. One line per changed pin.
        case consentVoid([String])
    }

    /// The CLI (`consented` nil: no pins to hold) and `/ka-yes` (the pins the person consented to). Under one hold
    /// of the tree lock: admit, plan, compare the pins, then run the inline work, or create the job. `resuming`: the
    /// job a restart left, which goes on with its own steps (they may be past what a plan would now refuse).
    package static func perform<V: Verb>(_ verb: V, consented: [Plan.Pin]?, arguments: [String]? = nil, origin: JobOrigin, in ctx: VerbContext,
                                        resuming: JobRecord? = nil) async throws -> Performed {
        try await verb.withTreeAccess(in: ctx) {
            try await filingBlocks(in: ctx) {
                if let resuming {
                    try admit(verb, in: ctx)
                    guard let spec = try verb.resumption(in: ctx) else {
                        throw KAError.failure("job \(resuming.id)", "ka \(V.verbName) has no job to resume")
                    }
                    return .job(resuming, spec)
                }
                let planned = try await admittedPlan(verb, arguments: arguments, in: ctx)
                if let consented {
                    let changed = Plan(verb: V.verbName, arguments: planned.arguments, steps: [], pins: consented).changedPins(comparedTo: planned.plan)
                    if !changed.isEmpty { return .consentVoid(changed) }
                }
                switch try verb.execution(of: planned, in: ctx) {
                case let .inline(work):
                    return .done(planned.plan, try await work())
                case let .job(spec):
                    let runner = JobRunner(store: ctx.jobs, workspace: ctx.workspace, transports: ctx.transports, now: ctx.now)
                    let job = try runner.create(verb: V.verbName, arguments: planned.arguments, pins: consented ?? [], subject: spec.subject,
                                                origin: origin, steps: spec.steps)
                    return .job(job, spec)
                }
            }
        }
    }

    /// Runs a job `perform` created, reporting each change to `observer`. Cancelling the task interrupts it.
    package static func run(_ job: JobRecord, steps: [JobStep], observer: (any JobObserver)?, in ctx: VerbContext) async throws -> JobRecord {
        let runner = JobRunner(store: ctx.jobs, workspace: ctx.workspace, transports: ctx.transports, observer: observer, now: ctx.now)
        return try await runner.run(job.id, steps: steps, noWait: ctx.noWait)
    }

    /// The hard rules, asked here and nowhere else.
    static func admit<V: Verb>(_ verb: V, in ctx: VerbContext) throws {
        try ctx.policy().admit(try verb.policySubject(in: ctx))
    }

    static func admittedPlan<V: Verb>(_ verb: V, arguments: [String]?, in ctx: VerbContext) async throws -> Planned<V.Prepared> {
        try admit(verb, in: ctx)
        var planned = try await verb.plan(in: ctx)
        if let arguments { planned.plan.arguments = arguments }
        return planned
    }

    /// A refusal's block requests are filed here, once, for every front door that files blocks.
    static func filingBlocks<T>(in ctx: VerbContext, _ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch {
            try await ctx.fileRequestedBlocks(of: error)
            throw error
        }
    }
}
