import ArgumentParser
import Foundation

/// `ka pause-prune [--reason <text>]`: a global pause of pruning, stored with who and when. `ka prune` does nothing
/// while it holds (and says so); `ka status` shows it; `ka resume-prune` lifts it.
package struct PausePruneVerb: InlineVerb {
    package static let configuration = CommandConfiguration(
        commandName: "pause-prune", abstract: "Pause pruning of build dirs, backups and archives (stored, with who and when) until ka resume-prune.")
    @Option(help: "Why, shown by ka status and ka prune.") package var reason: String?
    package init() {}
    package var lane: Lane { .none }
    package func policySubject(in ctx: VerbContext) throws -> PolicySubject {
        if let reason, reason.count > 200 || reason.contains(where: { $0.isNewline }) {
            throw KAError.refusal("--reason", "is longer than 200 characters or spans lines", hint: "one short line")
        }
        return PolicySubject()
    }

    package func plan(in ctx: VerbContext) async throws -> Planned<Void> {
        Planned(Plan(verb: Self.verbName, arguments: reason.map { ["--reason", $0] } ?? [],
             steps: ["store the pause of pruning (by \(ctx.requester)); ka prune then does nothing until ka resume-prune"]))
    }

    package func run(_ planned: Planned<Void>, in ctx: VerbContext) async throws -> VerbOutcome {
        let wanted = PrunePauseRecord(by: ctx.requester, at: ctx.now(), reason: reason)
        let held = try ctx.state.pausePrune(wanted)
        return VerbOutcome(held == wanted ? "pruning is \(held.shown)\n" : "pruning was already \(held.shown); left as it was\n")
    }
}
