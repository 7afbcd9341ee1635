import ArgumentParser
import Foundation

/// `ka resume-prune`: lifts the pause `ka pause-prune` stored.
package struct ResumePruneVerb: InlineVerb {
    package static let configuration = CommandConfiguration(commandName: "resume-prune", abstract: "Resume pruning after ka pause-prune.")
    package init() {}
    package var lane: Lane { .none }
    package func policySubject(in ctx: VerbContext) throws -> PolicySubject { PolicySubject() }

    package func plan(in ctx: VerbContext) async throws -> Planned<Void> {
        Planned(Plan(verb: Self.verbName, arguments: [], steps: ["lift the pause of pruning; the next ka prune (or its timer) prunes again"]))
    }

    package func run(_ planned: Planned<Void>, in ctx: VerbContext) async throws -> VerbOutcome {
        guard let lifted = try ctx.state.resumePrune() else { return VerbOutcome("pruning was not paused; nothing changed\n") }
        return VerbOutcome("pruning resumed (it was \(lifted.shown)); resumed by \(ctx.requester)\n")
    }
}
