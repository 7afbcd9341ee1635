import ArgumentParser
import Foundation

/// `ka keep <job-id> [--for <duration>]`: keeps a build job's tree on its build host from pruning, by a
/// `.ka-keep` mark in the tree holding the date it may go (or `forever`).
package struct KeepVerb: InlineVerb {
    package static let configuration = CommandConfiguration(commandName: "keep", abstract: "Keep a build job's tree on its build host from pruning.")
    @Argument(help: "Build job id.") package var job: String
    @Option(name: .customLong("for"), help: "How long to keep it (e.g. 7d); default: forever (until `ka keep` is run again with --for).")
    package var keepFor: String?
    package init() {}
    package var lane: Lane { .none }
    package func policySubject(in ctx: VerbContext) throws -> PolicySubject {
        _ = try JobID(job)
        if let keepFor, Duration.parseSeconds(keepFor) == nil {
            throw KAError.refusal("--for \(keepFor)", "not a duration", hint: "use e.g. 6h, 2d or 30m")
        }
        return PolicySubject()
    }

    package func plan(in ctx: VerbContext) async throws -> Planned<BuildJobTree> {
        let tree = try BuildJobTree.locate(job, in: ctx)
        return Planned(Plan(verb: Self.verbName, arguments: [job] + (keepFor.map { ["--for", $0] } ?? []),
                    steps: ["mark \(tree.host):\(tree.dir)/.ka-keep (\(keepFor.map { "for \($0)" } ?? "forever"))"]), tree)
    }

    package func run(_ planned: Planned<BuildJobTree>, in ctx: VerbContext) async throws -> VerbOutcome {
        let tree = planned.prepared
        let until = keepFor.flatMap(Duration.parseSeconds).map { ctx.now().addingTimeInterval(TimeInterval($0)).formatted(.iso8601) } ?? "forever"
        let script = "[ -d \"$1\" ] || { echo \"no tree at $1 (pruned?)\" >&2; exit 1; }; printf '%s\\n' \"$2\" > \"$1/.ka-keep\""
        let r = try await ctx.transports.transport(for: tree.host)
            .run(RemoteCommand(["sh", "-c", RemoteArgument(script), "ka-keep", RemoteArgument(tree.dir), RemoteArgument(until)], timeout: .seconds(60)))
        guard r.succeeded else { throw KAError.failure("ka keep \(tree.job)", "on \(tree.host): \(r.stderrText.trimmingCharacters(in: .whitespacesAndNewlines))") }
        return VerbOutcome("kept \(tree.host):\(tree.dir) until \(until)\n")
    }
}
