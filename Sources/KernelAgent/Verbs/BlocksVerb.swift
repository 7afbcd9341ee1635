import ArgumentParser
import Foundation

/// `ka blocks [--json]` and `ka blocks close <id>`: the local blocks (the CLI's; the bot's blocks are issues in
/// the tracker, closed there).
package struct BlocksVerb: InlineVerb {
    package static let configuration = CommandConfiguration(
        commandName: "blocks",
        abstract: "List the open local blocks, or `close <id>` one (the bot's blocks are tracker issues: close those there).")

    @Argument(help: "`close` to close a block; omit to list.")
    package var action: String?

    @Argument(help: "The block id to close (e.g. local-3).")
    package var id: String?

    @Flag(help: "Print JSON.")
    package var json = false

    package init() {}

    package var lane: Lane { .none }
    package var treeAccess: TreeAccess { .none }
    package var writesState: Bool { action == "close" }

    package func validate() throws {
        switch (action, id) {
        case (nil, nil), ("close", .some): return
        case ("close", nil): throw ValidationError("`ka blocks close` needs a block id (see `ka blocks`)")
        default: throw ValidationError("use `ka blocks` to list, or `ka blocks close <id>`")
        }
    }

    package func policySubject(in ctx: VerbContext) throws -> PolicySubject { PolicySubject() }

    package func plan(in ctx: VerbContext) async throws -> Planned<Void> {
        if let id { return Planned(Plan(verb: "blocks", arguments: ["close", id], steps: ["close block \(id)"])) }
        return Planned(Plan(verb: "blocks", arguments: json ? ["--json"] : [], steps: ["list the open blocks"]))
    }

    package func run(_ planned: Planned<Void>, in ctx: VerbContext) async throws -> VerbOutcome {
        if let id {
            try await ctx.blocks.close(id: id)
            return VerbOutcome("block \(id) closed")
        }
        let blocks = try await ctx.openBlocks()
        if json { return VerbOutcome(JobsVerb.encode(blocks)) }
        if blocks.isEmpty { return VerbOutcome("no open blocks") }
        return VerbOutcome(blocks.map { "\($0.id)  \($0.kind.rawValue)  \($0.scope.marker)  \($0.title)" }.joined(separator: "\n"))
    }
}
