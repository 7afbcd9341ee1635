import ArgumentParser
import Foundation

/// `ka snooze <issue-id> [--for <duration>]`: postpone the reminders of an [ka:installable] issue.
package struct SnoozeVerb: InlineVerb {
    package static let configuration = CommandConfiguration(
        commandName: "snooze",
        abstract: "Postpone the reminders of an [ka:installable] issue.",
        discussion: "The reminder ladder (filed, +1 h, +6 h, daily) resumes after the snooze; the stage is kept.")

    @Argument(help: "Issue number of the [ka:installable] issue.")
    package var issue: Int

    @Option(name: .customLong("for"), help: "How long, e.g. 6h, 2d, 30m (default 6h).")
    package var snoozeFor: String?

    package init() {}

    package var lane: Lane { .none }

    package func policySubject(in ctx: VerbContext) throws -> PolicySubject {
        guard issue > 0 else { throw KAError.refusal("issue \(issue)", "issue numbers start at 1") }
        try duration(snoozeFor)
        return PolicySubject()
    }

    var seconds: Int { Duration.parseSeconds(snoozeFor ?? "6h") ?? 6 * 3600 }

    package func plan(in ctx: VerbContext) async throws -> Planned<Void> {
        try duration(snoozeFor)
        let until = ctx.now().addingTimeInterval(TimeInterval(seconds))
        return Planned(Plan(verb: Self.verbName, arguments: ["\(issue)"] + (snoozeFor.map { ["--for", $0] } ?? []),
                    steps: ["hold the reminders of #\(issue) until \(ISO8601DateFormatter().string(from: until))"]))
    }

    package func run(_ planned: Planned<Void>, in ctx: VerbContext) async throws -> VerbOutcome {
        let until = ctx.now().addingTimeInterval(TimeInterval(seconds))
        guard try ctx.state.snoozeReminder(issue: issue, until: until) else {
            throw KAError.refusal("issue #\(issue)", "has no open [ka:installable] reminder", hint: "ka reminders lists the tracked issues")
        }
        return VerbOutcome("reminders of #\(issue) snoozed until \(ISO8601DateFormatter().string(from: until))\n")
    }
}

/// Refuses a `--for` that is not a duration (6h, 2d, 30m).
func duration(_ raw: String?) throws {
    guard let raw else { return }
    guard Duration.parseSeconds(raw) != nil else { throw KAError.refusal("--for \(raw)", "not a duration", hint: "use e.g. 6h, 2d or 30m") }
}
