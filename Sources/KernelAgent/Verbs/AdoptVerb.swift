import ArgumentParser
import Foundation

/// `ka adopt [--dry-run]`: the one-time step that makes a tree written without `Scope:` trailers (the upstream
/// layout, where the directory alone was the tag) satisfy the scope rule, without changing any diff.
package struct AdoptVerb: InlineVerb, WaitsForTree {
    package static let configuration = CommandConfiguration(
        commandName: "adopt",
        abstract: "Add a Scope: trailer equal to its directory to every patch that has none (all or nothing).",
        discussion: """
        For a patch tree kept without Scope: trailers, where the directory was the scope tag. Each patch under \
        patches/<kind>/… without a Scope: trailer gets one naming its directory, in its trailer block (a new \
        paragraph if the message has none), so git interpret-trailers reads it too. The diffs and so the content \
        hashes do not change. A patch whose existing Scope: names another directory is refused, and then nothing \
        is written. Running it again changes nothing.
        """)

    @Flag(help: "Print what would change and change nothing.")
    package var dryRun = false

    @OptionGroup package var lockOptions: TreeLockOptions

    package init() {}

    package var lane: Lane { .tree }
    package var treeAccess: TreeAccess { dryRun ? .read : .write }

    package func policySubject(in ctx: VerbContext) throws -> PolicySubject { PolicySubject() }

    package struct Prepared: Sendable {
        let ops: [TreeTransaction.Op]
        let adopted: [String]
        let alreadyScoped: Int
    }

    package func plan(in ctx: VerbContext) async throws -> Planned<Prepared> {
        let ws = ctx.workspace
        let paths = try PatchTree(ws).allPatches()
        let parsed = try Resolver.parseAll(paths, in: ws)
        var ops: [TreeTransaction.Op] = []
        var adopted: [String] = []
        var problems: [String] = []
        var already = 0
        var pins: [Plan.Pin] = []
        for (p, patch) in zip(paths, parsed) {
            let shown = "patches/" + p.value
            let scopes = patch.scopeTrailers
            if scopes == [p.parent] { already += 1; continue }
            guard scopes.isEmpty else {
                problems.append(scopes.count == 1
                    ? "\(shown): its Scope: \(scopes[0]) disagrees with its directory \(p.parent) (move it with ka migrate-tree, or fix the trailer)"
                    : "\(shown): \(scopes.count) Scope: trailers (\(scopes.joined(separator: ", "))); keep exactly one")
                continue
            }
            let edited: Data
            switch TrailerEdit.appending([("Scope", p.parent)], to: patch.bytes) {
            case let .success(d): edited = d
            case .failure(.noDivider):
                problems.append("\(shown): not a format-patch mail (no '---' line ends its message), so it has no trailer block")
                continue
            case let .failure(.nulByte(line)):
                problems.append("\(shown):\(line): its message holds a NUL byte, where git stops reading it; remove it, then adopt again")
                continue
            case .failure(.wouldNotReadBack):
                problems.append("\(shown): git would not read an added Scope: trailer (it skips the message's last paragraph, an old `Conflicts:` list or comments); end the message with a plain paragraph, then adopt again")
                continue
            }
            let check = PatchFile(bytes: edited)
            guard check.scopeTrailers == [p.parent], check.contentHash == patch.contentHash else {
                problems.append("\(shown): adding the trailer would not read back as Scope: \(p.parent)")
                continue
            }
            ops.append(.write(path: shown, data: edited))
            adopted.append(p.value)
            pins.append(.init(shown, "b2:" + patch.b2sum))
        }
        if !problems.isEmpty {
            throw KAError(.refusal, ["ka adopt", "\(problems.count) patch(es) cannot be adopted; nothing was changed"] + problems,
                          hint: "fix the patches named, then run ka adopt again")
        }
        let steps = adopted.isEmpty ? ["nothing to adopt: all \(already) patch(es) carry their Scope: trailer"]
            : adopted.map { "add 'Scope: \(($0 as NSString).deletingLastPathComponent)' to patches/\($0)" }
        return Planned(Plan(verb: Self.verbName, arguments: dryRun ? ["--dry-run"] : [], steps: steps, pins: pins), Prepared(ops: ops, adopted: adopted, alreadyScoped: already))
    }

    package func run(_ planned: Planned<Prepared>, in ctx: VerbContext) async throws -> VerbOutcome {
        let p = planned.prepared
        var text = ""
        for a in p.adopted { text += "  + Scope: \((a as NSString).deletingLastPathComponent)  patches/\(a)\n" }
        if dryRun {
            return VerbOutcome("would adopt \(p.adopted.count) patch(es); \(p.alreadyScoped) already scoped; nothing was changed (--dry-run)\n" + text)
        }
        if !p.ops.isEmpty {
            let txn = TreeTransaction(ctx.workspace)
            p.ops.forEach(txn.add)
            try txn.commit(state: ctx.state, faults: ctx.faults)
        }
        return VerbOutcome("adopted \(p.adopted.count) patch(es); \(p.alreadyScoped) already scoped; content hashes unchanged\n" + text)
    }
}
