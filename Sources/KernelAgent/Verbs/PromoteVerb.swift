import ArgumentParser
import Foundation

/// `ka promote <host>`: resolve `fleet/<host>.yaml` into `build/<host>/<baseline.ref>/`: the cumulative series
/// (`0001-<host>-cumulative-series.patch`), `manifest.lock` and `apply-report.txt`.
package struct PromoteVerb: InlineVerb, WaitsForTree {
    package static let configuration = CommandConfiguration(
        commandName: "promote",
        abstract: "Resolve fleet/<host>.yaml into build/<host>/<baseline.ref>/: the cumulative series + manifest.lock.",
        discussion: """
        Selects every patch under the manifest's scope tags plus its explicit includes, orders them \
        (arch, subsystem, driver, soc, module, board; then dir; then the dir's series file or C-locale names), \
        refuses unscoped, blocked or conflicting patches, checks the series applies with zero fuzz when a \
        baseline tree is at hand, and writes <out>/0001-<host>-cumulative-series.patch, <out>/manifest.lock and \
        <out>/apply-report.txt (<out> is build/<host>/<baseline.ref>/ unless --out names another). Refusals exit 2 and write nothing. Promote never builds or installs.
        """)

    @Argument(help: "The host whose manifest (fleet/<host>.yaml) to resolve.")
    package var host: HostName

    @Option(help: "Output directory (default: build/<host>/<baseline.ref>/ in the kernel-agent checkout).")
    package var out: String?

    @Option(name: [.customLong("tree"), .customLong("validate-against")],
            help: "Baseline kernel tree for the apply check (default: the manifest's source_dir, if present). --validate-against is the same option, in the Python ka-promote's spelling.")
    package var tree: String?

    @OptionGroup package var lockOptions: TreeLockOptions

    package init() {}

    package struct Prepared: Sendable {
        let promotion: Promotion
        let tree: URL?
        let treeNote: String
        let out: URL
    }

    package var lane: Lane { .host(host) }

    package func policySubject(in ctx: VerbContext) throws -> PolicySubject {
        var paths: [(String, String)] = []
        if let tree { paths.append((tree, "--tree")) }
        return PolicySubject(targets: [host], localPaths: paths, outputPaths: out.map { [($0, "--out")] } ?? [])
    }

    package func plan(in ctx: VerbContext) async throws -> Planned<Prepared> {
        let hostName = host
        let policy = try ctx.policy()
        let manifest = try Manifest.load(hostName, in: ctx.workspace)
        try policy.admitTarget(hostName, manifest: manifest)
        let defaultOut = try ctx.workspace.promoteDir(hostName, ref: manifest.baseline.ref, manifest: manifest.file)
        // The output dir is checked first: the cumulative is staged beside it while the series streams.
        let outURL = try PromoteOutput.validate(
            try out.map { try policy.admitOutputPath($0, purpose: "--out") } ?? defaultOut,
            raw: out, policy: policy,
            owned: PromoteOutput.ownedNames(host: hostName))
        var treeURL: URL?
        var treeNote: String
        if let tree {
            let url = try policy.admitLocalPath(tree, purpose: "--tree")
            guard FS.isDirectory(url) else {
                throw KAError.refusal("--tree \(tree)", "no such directory", hint: "point --tree at a checkout of \(manifest.baseline.ref)")
            }
            treeURL = url
            treeNote = "against \(url.path)"
        } else if let src = manifest.sourceDir {
            let url = try policy.admitLocalPath(src, purpose: "\(manifest.file) source_dir")
            if FS.isDirectory(url) { treeURL = url; treeNote = "against \(url.path) (source_dir)" }
            else { treeNote = "skipped: source_dir \(src) is not present here" }
        } else {
            treeNote = "skipped: no baseline tree (give --tree or set source_dir)"
        }
        let inputs = try BuildInputs.resolve(manifest, ws: ctx.workspace, pipeline: try ctx.settings().pipeline)
        let promotion = try Promotion.stream(manifest, resolver: Resolver(workspace: ctx.workspace, policy: policy, openBlocks: try await ctx.openBlocks()),
                                             out: outURL, shown: ctx.workspace.display(outURL), inputs: inputs)
        let series = promotion.series
        let conflicts = series.conflicts
        // Without a tree, overlapping hunks of two origins are refused here. With one, the apply check decides: a
        // series that applies is not in conflict, and one that fails at an overlapping patch is.
        if !conflicts.isEmpty && treeURL == nil { throw Self.conflictRefusal(conflicts, host: host.value, manifest: manifest.file) }
        Timings.mark("conflicts")
        let duplicates = series.duplicates.count
        var steps = ["resolve \(manifest.file): \(series.count) patch(es)"
                     + (duplicates == 0 ? "" : ", \(duplicates) reached twice and applied once"),
                     "kernel suffix -\(manifest.kernelSuffix) (\(manifest.kernelSuffixSource))"]
        steps.reserveCapacity(series.count + 3)
        for i in 0..<series.count { steps.append(Self.exactly("  apply \(series.path(i)) (\(series.via[i].joined(separator: "; ")))")) }
        steps.append("apply check \(treeNote)")
        if !conflicts.isEmpty { steps.append("\(conflicts.count) overlapping hunk pair(s) of different origins: the apply check decides (a failure at one is a campaign conflict)") }
        steps.append("write \(ctx.workspace.display(outURL))/{\(PromoteOutput.ownedNames(host: hostName).sorted().joined(separator: ", "))} as one unit")
        return Planned(Plan(verb: Self.verbName, arguments: [host.value] + (out.map { ["--out", $0] } ?? []) + (tree.map { ["--tree", $0] } ?? []),
                    steps: steps, pins: promotion.pins), Prepared(promotion: promotion, tree: treeURL, treeNote: treeNote, out: outURL))
    }

    /// The refusal for overlapping hunks of two origins, with a [ka:campaign-conflict] block per pair.
    static func conflictRefusal(_ conflicts: [CampaignConflict], host: String, manifest: String, applyCheck: String? = nil) -> KAError {
        // plan only reads: the refusal names the blocks it wants filed; the front door files them
        let requests = conflicts.map { c in
            BlockRequest(kind: .campaignConflict, scope: .patches([c.first, c.second]), title: "\(c.first) ↔ \(c.second)",
                         body: "ka promote \(host) found overlapping hunks:\n\n- \(c)\n\nClose this issue once one patch is rebased onto the other or dropped.")
        }
        return KAError(.refusal, [manifest, "campaign conflict: \(conflicts.count) overlapping hunk pair(s)"] + (applyCheck.map { [$0] } ?? [])
                       + conflicts.map(\.description),
                       hint: "decide the order: rebase one patch onto the other, or drop one from the manifest", blocks: requests)
    }

    /// `text` in storage of its own length: a plan keeps one step per patch, and interpolation leaves slack.
    static func exactly(_ text: String) -> String {
        var text = text
        return text.withUTF8 { bytes in
            String(unsafeUninitializedCapacity: bytes.count) { out in
                _ = out.initialize(fromContentsOf: bytes)
                return bytes.count
            }
        }
    }

    package func run(_ planned: Planned<Prepared>, in ctx: VerbContext) async throws -> VerbOutcome {
        let prepared = planned.prepared
        let promotion = prepared.promotion
        let series = promotion.series
        let m = promotion.manifest
        let ws = ctx.workspace
        let cumulative = promotion.cumulative
        let shownOut = ws.display(prepared.out)
        var applyNote = prepared.treeNote
        let reportFile = try StagedFile.create(for: prepared.out, shown: "\(shownOut)/apply-report.txt")
        var reportSink = FileSink(reportFile)
        if let tree = prepared.tree {
            let checked = try ApplyChecker.check(series, cumulative: cumulative, tree: tree, display: tree.path, manifest: m.file,
                                                 report: &reportSink)
            _ = try reportSink.finish()
            if !checked.passed {
                let failing = Set(checked.failures.map(\.path))
                let hit = series.conflicts.filter { failing.contains($0.first) || failing.contains($0.second) }
                if !hit.isEmpty {
                    try PromoteOutput.createDirs(prepared.out)
                    let reportURL = prepared.out.appendingPathComponent("apply-report.txt")
                    try reportFile.replace(reportURL)
                    throw Self.conflictRefusal(hit, host: host.value, manifest: m.file,
                                               applyCheck: "the apply check against \(m.baseline.ref) fails at an overlapping patch (see \(ws.display(reportURL)))")
                }
                let requests = checked.failures.map { f in
                    BlockRequest(kind: .patchFail, scope: .patches([f.path]), title: "\(f.path) does not apply to \(m.baseline.ref)",
                                 body: "ka promote \(host): \(f.status.rawValue)\n\n" + f.details.map { "- \($0)" }.joined(separator: "\n")
                                     + "\n\nClose this issue once the patch is refreshed.")
                }
                let reportURL = prepared.out.appendingPathComponent("apply-report.txt")
                try PromoteOutput.createDirs(prepared.out)
                try reportFile.replace(reportURL)
                throw KAError(.refusal, [m.file, checked.refusalLines(reportPath: ws.display(reportURL))],
                              hint: "see \(ws.display(reportURL)); refresh the failing patches against \(m.baseline.ref). The lock was not written.",
                              blocks: requests)
            }
            applyNote = "pass (\(checked.summary)) against \(m.baseline.ref)"
            Timings.mark("apply check")
        } else {
            try reportSink.write("# kernel-agent apply check: \(m.file)\nresult: SKIPPED — \(prepared.treeNote)\n")
            _ = try reportSink.finish()
        }
        let lockFile = try StagedFile.create(for: prepared.out, shown: "\(shownOut)/manifest.lock")
        var lockSink = FileSink(lockFile)
        try promotion.writeLock(applyCheck: applyNote, to: &lockSink)
        let lockB2 = try lockSink.finish()
        Timings.mark("render lock")
        let cumulativeName = Promotion.cumulativeName(m.host)
        var patchPaths = ""
        patchPaths.reserveCapacity(series.names.reduce(0) { $0 + $1.utf8.count })
        for i in 0..<series.count { patchPaths += (i == 0 ? "" : "\n") + series.path(i) }
        let record = PromotionRecord(
            host: m.host.value, kernelSuffix: m.kernelSuffix, lockB2sum: lockB2, cumulativeB2sum: promotion.cumulativeB2sum,
            manifestB2sum: m.b2sum, patchPaths: patchPaths, outDir: prepared.out.path, promotedAt: ctx.now())
        patchPaths = ""
        // The output swap and the state record are one unit, journaled: a kill between them is finished by the
        // next tree verb (PromoteJournal).
        var journal: URL?
        var swapped = false
        do {
            try PromoteOutput.publish([("apply-report.txt", reportFile), (cumulativeName, cumulative), ("manifest.lock", lockFile)],
                                      to: prepared.out,
                                      journal: { staging in
                                          journal = try PromoteJournal.begin(.init(out: prepared.out.path, staging: staging.path,
                                                                                   lockB2sum: lockB2, record: record), ws: ws)
                                      },
                                      afterSwap: { swapped = true; try ctx.state.recordPromotion(record) })
        } catch {
            // Failed before the swap: nothing was published, so the journal has nothing to finish. After it, the
            // journal stays and the next tree verb records the published promotion.
            if !swapped, let journal {
                do { try PromoteJournal.end(journal) } catch let e as KAError { ctx.note("\(e)") }
            }
            throw error
        }
        if let journal { try PromoteJournal.end(journal) }
        Timings.mark("write + record")
        var text = "promoted \(m.host): \(series.count) patch(es), kernel suffix -\(m.kernelSuffix)\n"
        text.reserveCapacity(series.names.reduce(1024) { $0 + $1.utf8.count + 24 })   // one line a patch, no regrowth
        for i in 0..<series.count { text += "  \(series.path(i))  \(promotion.contentHashPrefix(i))…\n" }
        for d in series.duplicates {
            text += "  note: \(series.path(d)) reached \(series.via[d].count)× (\(series.via[d].joined(separator: "; "))), applied once\n"
        }
        text += "apply check: \(applyNote)\n"
        text += "\(cumulativeName) b2sum \(promotion.cumulativeB2sum.prefix(16))…\n"
        text += "manifest.lock    b2sum \(lockB2.prefix(16))… in \(ws.display(prepared.out))\n"
        text += "nothing was built or installed; next: ka build \(m.host)\n"
        if out == nil, let note = ws.legacyOutNote(m.host) { text += note + "\n" }
        return VerbOutcome(text)
    }
}
