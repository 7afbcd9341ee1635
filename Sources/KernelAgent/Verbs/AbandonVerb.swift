import ArgumentParser
import Foundation

/// `ka abandon <campaign> --keep-as-archive | --purge-from-fleet`.
package struct AbandonVerb: InlineVerb, WaitsForTree {
    package static let configuration = CommandConfiguration(
        commandName: "abandon",
        abstract: "Abandon a campaign: keep its patches as an archive, or purge them from the tree and manifests.",
        discussion: """
        One of the two flags is required (hard rule). --purge-from-fleet removes every patch whose Campaign: \
        trailer names the campaign, drops manifest includes that pointed only at them, and marks every host \
        that carried them as drifted (its installed kernel still has them; the next install converges). All or nothing.
        """)

    @Argument(help: "Campaign name.")
    package var campaign: String

    @Flag(help: "Keep the patches in the tree, recorded as an archived campaign.")
    package var keepAsArchive = false

    @Flag(help: "Remove the campaign's patches from the tree and the manifests; affected hosts become drifted.")
    package var purgeFromFleet = false

    @OptionGroup package var lockOptions: TreeLockOptions

    package init() {}

    package var lane: Lane { .tree }

    package func policySubject(in ctx: VerbContext) throws -> PolicySubject {
        _ = try CampaignName(campaign)
        return PolicySubject(abandon: (keepAsArchive, purgeFromFleet))
    }

    package struct Prepared: Sendable { let ops: [TreeTransaction.Op]; let removed: [TreePath]; let hosts: [HostName]; let manifests: [String] }

    package func plan(in ctx: VerbContext) async throws -> Planned<Prepared> {
        let ws = ctx.workspace
        let policy = try ctx.policy()
        try policy.admitAbandon(keepAsArchive: keepAsArchive, purgeFromFleet: purgeFromFleet)
        let name = try CampaignName(campaign)
        let patches = try CampaignPatches.find(name, in: ws)
        let known = try ctx.state.campaign(name.value) != nil
        if patches.isEmpty && !known {
            throw KAError.refusal("campaign \(name)", "unknown: no patch in the tree carries 'Campaign: \(name)'")
        }
        let args = [campaign, keepAsArchive ? "--keep-as-archive" : "--purge-from-fleet"]
        if keepAsArchive {
            return Planned(Plan(verb: Self.verbName, arguments: args,
                        steps: ["record campaign \(name) as abandoned (archived); its \(patches.count) patch(es) stay in the tree, manifests unchanged"]),
                           Prepared(ops: [], removed: [], hosts: [], manifests: []))
        }
        let removed = Set(patches.map(\.value))
        let hosts = CampaignPatches.hosts(including: removed, ws: ws, policy: policy)
        var ops: [TreeTransaction.Op] = patches.map { .remove(path: "patches/" + $0.value) }
        // series files that list removed patches lose those lines
        for dir in Set(patches.map(\.parent)).sorted() {
            let series = ws.patchesDir.appendingPathComponent(dir).appendingPathComponent("series")
            guard FS.exists(series) else { continue }
            let lines = String(decoding: try FS.read(series), as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
            let kept = lines.filter { !removed.contains(dir + "/" + $0.trimmingCharacters(in: .whitespaces)) }
            ops.append(.write(path: "patches/\(dir)/series", data: Data(kept.joined(separator: "\n").utf8)))
        }
        // dirs left with no patch disappear (deepest first)
        let all = try PatchTree(ws).allPatches().map(\.value)
        var emptied: [String] = []
        for dir in Set(patches.map(\.parent)) {
            if !all.contains(where: { !removed.contains($0) && $0.hasPrefix(dir + "/") }) { emptied.append(dir) }
        }
        for dir in emptied.sorted(by: { $0.count > $1.count }) {
            let seriesPath = ws.patchesDir.appendingPathComponent(dir).appendingPathComponent("series")
            if FS.exists(seriesPath) { ops.append(.remove(path: "patches/\(dir)/series")) }
            ops.append(.removeEmptyDir(path: "patches/" + dir))
        }
        // manifest selectors that pointed only at purged patches go
        var manifests: [String] = []
        for host in Fleet.manifestHosts(ws) {
            let m = try Manifest.load(host, in: ws)
            var drops: [(Manifest.Selector, String?)] = []
            for sel in m.selectors {
                guard let p = try? TreePath(sel.raw) else { continue }
                let selected = all.filter { $0 == p.value || $0.hasPrefix(p.value + "/") }
                if !selected.isEmpty && selected.allSatisfy(removed.contains) { drops.append((sel, nil)) }
            }
            // the apply_order list names the dropped includes too
            let dropped = Set(drops.map { $0.0.raw })
            for item in m.orderList where dropped.contains(item.raw) { drops.append((item, nil)) }
            // and a verify probe of purged patches only goes with them
            for probe in m.verify?.probes ?? [] {
                let selected = all.filter { $0 == probe.patch.value || $0.hasPrefix(probe.patch.value + "/") }
                if !selected.isEmpty && selected.allSatisfy(removed.contains) { drops.append((probe.mention, nil)) }
            }
            guard !drops.isEmpty, let data = ManifestEdit.rewrite(m.bytes, selectors: drops) else { continue }
            _ = try Manifest.parse(data, host: host, file: m.file)
            ops.append(.write(path: ws.display(ws.manifestFile(host)), data: data))
            manifests.append(m.file)
        }
        var steps = patches.map { "remove patches/\($0.value)" }
        steps += emptied.sorted().map { "remove emptied dir patches/\($0)" }
        steps += manifests.map { "drop selectors naming only purged patches from \($0)" }
        steps.append(hosts.isEmpty ? "no host carried them" : "mark drifted: \(hosts.map(\.value).joined(separator: ", "))")
        let pins = try patches.map { Plan.Pin("patches/" + $0.value, "b2:" + Blake2b.hex(try FS.read(ws.url($0)))) }
        return Planned(Plan(verb: Self.verbName, arguments: args, steps: steps, pins: pins), Prepared(ops: ops, removed: patches, hosts: hosts, manifests: manifests))
    }

    package func run(_ planned: Planned<Prepared>, in ctx: VerbContext) async throws -> VerbOutcome {
        if keepAsArchive {
            try ctx.state.setCampaign(campaign, status: .abandonedArchived, at: ctx.now())
            return VerbOutcome("abandoned \(campaign), kept as archive; tree and manifests unchanged\n")
        }
        let p = planned.prepared
        let ws = ctx.workspace
        let policy = try ctx.policy()
        let resolvableBefore = Set(Fleet.resolveAll(ws, policy: policy).compactMap { h, r in
            if case .success = r { return h } else { return nil } })
        let txn = TreeTransaction(ws)
        p.ops.forEach(txn.add)
        // The drift marks and the campaign record are steps of the same transaction: a kill between the purge and
        // them cannot leave patches gone with no host marked, or a campaign nobody can name again.
        let now = ctx.now()
        for h in p.hosts {
            txn.add(.state(.markDrifted(host: h.value, reason: "campaign \(campaign) purged; installed kernel still carries its patches", at: now)))
        }
        txn.add(.state(.setCampaign(name: campaign, status: .abandonedPurged, at: now)))
        try txn.commit(state: ctx.state, faults: ctx.faults, verify: {
            for (h, r) in Fleet.resolveAll(ws, policy: policy) where resolvableBefore.contains(h) {
                if case let .failure(e) = r { throw e.within("host \(h) would no longer resolve") }
            }
        })
        var text = "purged campaign \(campaign): \(p.removed.count) patch(es) removed\n"
        text += p.manifests.isEmpty ? "" : "rewrote \(p.manifests.joined(separator: ", "))\n"
        text += p.hosts.isEmpty ? "no host carried them\n" : "drifted: \(p.hosts.map(\.value).joined(separator: ", ")) (ka promote + ka install converge them)\n"
        return VerbOutcome(text)
    }
}
