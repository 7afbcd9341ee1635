import ArgumentParser
import Foundation

/// `ka resume-prune`: lifts the pause `ka pause-prune` stored.
public struct ResumePruneVerb: InlineVerb {
    public static let configuration = CommandConfiguration(commandName: "resume-prune", abstract: "Resume pruning after ka pause-prune.")
    public init() {}
    public var lane: Lane { .none }
    public func policySubject(in ctx: VerbContext) throws -> PolicySubject { PolicySubject() }

    public func plan(in ctx: VerbContext) async throws -> Planned<Void> {
        Planned(Plan(verb: Self.verbName, arguments: [], steps: ["lift the pause of pruning; the next ka prune (or its timer) prunes again"]))
    }

    public func run(_ planned: Planned<Void>, in ctx: VerbContext) async throws -> VerbOutcome {
        guard let lifted = try ctx.state.resumePrune() else { return VerbOutcome("pruning was not paused; nothing changed\n") }
        return VerbOutcome("pruning resumed (it was \(lifted.shown)); resumed by \(ctx.requester)\n")
    }
}
