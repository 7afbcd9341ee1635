import ArgumentParser
import Foundation

/// `ka migrate-tree --from <p> --to <p>`: rename a patch dir, its patches' Scope: trailers and every manifest
/// selector that points into it, all or nothing.
package struct MigrateTreeVerb: InlineVerb, WaitsForTree {
    package static let configuration = CommandConfiguration(
        commandName: "migrate-tree",
        abstract: "Rename a patch dir atomically: the dir, its patches' Scope: trailers, and every manifest include.",
        discussion: """
        Exists because a merge once renamed arch/arm64/xor-neon-ffixed-x18-scs-build-fix-danctnix/ to \
        arch/arm64/scs-arm-neon-build-fix/ but left ohm.yaml's include stale. Every step is journaled under the \
        state dir; a failure (or crash) rolls everything back. Afterwards each host resolves to the same content hashes.
        """)

    @Option(help: "Existing dir under patches/, e.g. arch/arm64/old-name.")
    package var from: String

    @Option(help: "New dir under patches/ (must not exist), e.g. arch/arm64/new-name.")
    package var to: String

    @OptionGroup package var lockOptions: TreeLockOptions

    package init() {}

    package var lane: Lane { .tree }

    package func policySubject(in ctx: VerbContext) throws -> PolicySubject { PolicySubject() }

    package struct Prepared: Sendable {
        let ops: [TreeTransaction.Op]
        let rewrittenManifests: [String]
        let movedPatches: Int
    }

    package func plan(in ctx: VerbContext) async throws -> Planned<Prepared> {
        let ws = ctx.workspace
        let src = try TreePath(from), dst = try TreePath(to)
        let tree = PatchTree(ws)
        let srcURL = try tree.confine(src)
        guard FS.isDirectory(srcURL) else { throw KAError.refusal("--from \(from)", "no such patch dir under patches/") }
        guard !FS.exists(ws.url(dst)) else { throw KAError.refusal("--to \(to)", "already exists", hint: "pick a new name, or merge by hand") }
        guard !dst.isWithin(src), !src.isWithin(dst) else {
            throw KAError.refusal("--from \(from) --to \(to)", "one lies inside the other")
        }
        func moved(_ p: TreePath) throws -> TreePath { try TreePath(dst.value + p.value.dropFirst(src.value.count)) }

        var ops: [TreeTransaction.Op] = [.move(from: "patches/" + src.value, to: "patches/" + dst.value)]
        let patches = try tree.patches(selectedBy: src)
        for p in patches {
            let data = try FS.read(ws.url(p), display: "patches/" + p.value)
            let pf = try PatchFile(bytes: data, display: "patches/" + p.value)
            let newPath = try moved(p)
            // The tree is only moved if it is sound: every patch's trailer must match where it is now.
            let policy = try ctx.policy()
            do { try policy.admitPatch(pf, at: p) } catch let e as KAError { throw e.within("--from \(from)") }
            guard let rewritten = TrailerEdit.replace("Scope", with: newPath.parent, in: data) else {
                throw KAError.refusal("patches/" + p.value, "cannot rewrite its Scope: trailer (not a format-patch mail)")
            }
            ops.append(.write(path: "patches/" + newPath.value, data: rewritten))
        }
        var rewritten: [String] = []
        for host in Fleet.manifestHosts(ws) {
            let m = try Manifest.load(host, in: ws)
            var edits: [(Manifest.Selector, String?)] = []
            for sel in m.pathMentions {   // selectors, the apply_order list and exclusions move together
                guard let p = try? TreePath(sel.raw), p.isWithin(src) else { continue }
                edits.append((sel, try moved(p).value))
            }
            guard !edits.isEmpty else { continue }
            guard let data = ManifestEdit.rewrite(m.bytes, selectors: edits) else {
                throw KAError.refusal(m.file, "cannot rewrite its selectors in place")
            }
            _ = try Manifest.parse(data, host: host, file: m.file)   // the result must still be a valid manifest
            ops.append(.write(path: ws.display(ws.manifestFile(host)), data: data))
            rewritten.append(m.file)
        }
        var steps = ["move patches/\(src) → patches/\(dst) (\(patches.count) patch(es))"]
        steps.append("rewrite Scope: trailers of the moved patches to their new dirs")
        steps.append(rewritten.isEmpty ? "no manifest names \(src)" : "rewrite selectors in \(rewritten.joined(separator: ", "))")
        steps.append("check every host still resolves to the same content hashes; else roll back")
        let pins = try patches.map { Plan.Pin("patches/" + $0.value, "b2:" + Blake2b.hex(try FS.read(ws.url($0)))) }
        return Planned(Plan(verb: Self.verbName, arguments: ["--from", from, "--to", to], steps: steps, pins: pins), Prepared(ops: ops, rewrittenManifests: rewritten, movedPatches: patches.count))
    }

    package func run(_ planned: Planned<Prepared>, in ctx: VerbContext) async throws -> VerbOutcome {
        let prepared = planned.prepared
        let ws = ctx.workspace
        let policy = try ctx.policy()
        let before = Fleet.contentHashes(ws, policy: policy)
        let txn = TreeTransaction(ws)
        prepared.ops.forEach(txn.add)
        try txn.commit(faults: ctx.faults, verify: {
            let after = Fleet.contentHashes(ws, policy: policy)
            for (host, hashes) in before where after[host] != hashes {
                throw KAError.failure("host \(host)", "resolves to different content after the move")
            }
        })
        var text = "migrated patches/\(from) → patches/\(to): \(prepared.movedPatches) patch(es)\n"
        text += prepared.rewrittenManifests.isEmpty ? "no manifest named it\n" : "rewrote \(prepared.rewrittenManifests.joined(separator: ", "))\n"
        text += "every host resolves to the same content hashes as before\n"
        return VerbOutcome(text)
    }
}
