import ArgumentParser
import Foundation

/// `ka import <campaign> <patch-or-glob> --to <scope>`: copy patches from a campaign checkout into the tree.
package struct ImportVerb: InlineVerb, WaitsForTree {
    package static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Copy patches from a campaign checkout into the scope-tagged tree.",
        discussion: """
        Adds 'Campaign: <campaign>' and 'Scope: <scope>' trailers where missing and refuses a patch whose \
        trailers say otherwise. The checkout defaults to $KA_CAMPAIGNS_DIR/<campaign> (or ../<campaign> next to \
        the kernel-agent checkout). All patches land or none do; re-importing identical bytes is a no-op.
        """)

    @Argument(help: "Campaign name (its repo, e.g. fresnel-fourier).")
    package var campaign: String

    @Argument(help: "A patch path or glob, relative to the campaign checkout (e.g. 'patches/00*.patch').")
    package var pattern: String

    @Option(help: "Scope dir under patches/ to import into, e.g. board/pinebook-pro.")
    package var to: String

    @Option(help: "The campaign checkout (default: $KA_CAMPAIGNS_DIR/<campaign> or ../<campaign>).")
    package var checkout: String?

    @OptionGroup package var lockOptions: TreeLockOptions

    package init() {}

    package var lane: Lane { .tree }

    func checkoutPath(_ ws: Workspace) -> String {
        if let checkout { return checkout }
        if let base = ProcessInfo.processInfo.environment["KA_CAMPAIGNS_DIR"] { return base + "/" + campaign }
        return ws.root.deletingLastPathComponent().appendingPathComponent(campaign).path
    }

    package func policySubject(in ctx: VerbContext) throws -> PolicySubject {
        _ = try CampaignName(campaign)
        return PolicySubject(localPaths: [(checkoutPath(ctx.workspace), "campaign checkout")])
    }

    package struct Prepared: Sendable { let ops: [TreeTransaction.Op]; let imported: [String]; let unchanged: [String] }

    package func plan(in ctx: VerbContext) async throws -> Planned<Prepared> {
        let ws = ctx.workspace
        let name = try CampaignName(campaign)
        let scope = try TreePath(to)
        let dir = try ctx.policy().admitLocalPath(checkoutPath(ws), purpose: "campaign checkout")
        guard FS.isDirectory(dir) else {
            throw KAError.refusal("campaign \(name)", "checkout \(dir.path) not found", hint: "pass --checkout DIR or set KA_CAMPAIGNS_DIR")
        }
        guard !pattern.hasPrefix("/"), !pattern.split(separator: "/").contains("..") else {
            throw KAError.refusal("'\(pattern)'", "must be relative to the checkout, without '..'")
        }
        let matches = FS.regularFiles(under: dir).filter { fnmatch(pattern, $0, FNM_PATHNAME) == 0 }
        guard !matches.isEmpty else { throw KAError.refusal("campaign \(name)", "'\(pattern)' matches no file in \(dir.path)") }
        var ops: [TreeTransaction.Op] = [], imported: [String] = [], unchanged: [String] = []
        var seen = Set<String>()
        var refusals: [KAError] = []
        // All or nothing, but every refused patch is named at once.
        for rel in matches {
            do {
                switch try prepare(rel, from: dir, campaign: name, scope: scope, seen: &seen, ctx: ctx) {
                case let .write(dest, data):
                    ops.append(.write(path: "patches/" + dest, data: data))
                    imported.append(dest)
                case let .unchanged(dest):
                    unchanged.append(dest)
                }
            } catch let e as KAError {
                refusals.append(e)
            }
        }
        if refusals.count == 1, let only = refusals.first { throw only }
        if refusals.count > 1 {
            let list = refusals.map { e in "  - \(e.message)" + (e.hint.map { "\n      fix: \($0)" } ?? "") }
            throw KAError(refusals.contains { $0.kind == .failure } ? .failure : .refusal, ["campaign \(name)", "\(refusals.count) of \(matches.count) patch(es) refused; nothing was imported:\n"
                                     + list.joined(separator: "\n")],
                          hint: "fix or leave out each patch above, then import again (import lands all patches or none)")
        }
        let steps = imported.map { "write patches/\($0)" } + unchanged.map { "keep patches/\($0) (identical)" }
            + ["record campaign \(name) as active"]
        return Planned(Plan(verb: Self.verbName, arguments: [campaign, pattern, "--to", to], steps: steps,
                    pins: [.init("matches", matches.joined(separator: ","))]), Prepared(ops: ops, imported: imported, unchanged: unchanged))
    }

    enum Landing { case write(String, Data), unchanged(String) }

    /// One match: read, check, add the missing trailers, and say where it lands.
    func prepare(_ rel: String, from dir: URL, campaign name: CampaignName, scope: TreePath, seen: inout Set<String>,
                 ctx: VerbContext) throws -> Landing {
        let src = dir.appendingPathComponent(rel)
        let link = "\(name):\(rel)"
        var data = try FS.read(src, display: link)
        let pf = PatchFile(bytes: data)
        if let p = pf.problem { throw KAError.refusal("\(link):\(p.line)", p.message, hint: p.hint) }
        guard !pf.files.isEmpty else { throw KAError.refusal(link, "not a patch (no diff in it)") }
        guard TrailerEdit.hasDivider(data) else {
            throw KAError.refusal(link, "not a git format-patch mail (no '---' divider)", hint: "export it with git format-patch")
        }
        if let c = pf.campaign, c != name.value {
            throw KAError.refusal(link, "carries 'Campaign: \(c)', not \(name)")
        }
        var add: [(String, String)] = []
        if pf.campaign == nil { add.append(("Campaign", name.value)) }
        switch pf.scopeTrailers.count {
        case 0: add.append(("Scope", scope.value))
        case 1 where pf.scopeTrailers[0] == scope.value: break
        case 1: throw KAError.refusal(link, "carries 'Scope: \(pf.scopeTrailers[0])', not \(scope)",
                                      hint: "import it with --to \(pf.scopeTrailers[0]), or fix its trailer")
        default: throw KAError.refusal(link, "has \(pf.scopeTrailers.count) Scope: trailers; exactly one is allowed")
        }
        if !add.isEmpty {
            switch TrailerEdit.appending(add, to: data) {
            case let .success(d): data = d
            case .failure(.noDivider):
                throw KAError.refusal(link, "cannot add trailers: it has no `---` line between its message and its diff",
                                      hint: "make it with `git format-patch`, which writes one")
            case let .failure(.nulByte(line)):
                throw KAError.refusal("\(link):\(line)", "the message holds a NUL byte; git stops reading it there, so a trailer added below would not count",
                                      hint: "remove the NUL byte from the patch's message, then import it again")
            case .failure(.wouldNotReadBack):
                throw KAError.refusal(link, "cannot add trailers git would read: git skips the message's last paragraph (an old `Conflicts:` list or comments) and takes the first as the title, so Campaign:/Scope: added there would not count",
                                      hint: "end the message with a plain paragraph of its own (e.g. move the `Conflicts:` list into the body), then import it again")
            }
        }
        let fileName = src.lastPathComponent
        guard PatchTree.isPatchName(fileName) else { throw KAError.refusal(link, "file name must end in .patch or .diff") }
        let dest = try scope.appending(fileName)
        guard seen.insert(dest.value).inserted else { throw KAError.refusal(link, "two matches share the file name \(fileName)") }
        // Our own edit must read back as git reads it; if it does not, that is our bug, not the patch's.
        let edited = try PatchFile(bytes: data, display: link)
        guard edited.scopeTrailers == [scope.value], edited.campaign == name.value else {
            throw KAError.failure(link, "the added trailers do not read back as git reads them (Scope: \(edited.scopeTrailers), Campaign: \(edited.campaign ?? "none"))",
                                  hint: "report this as a kernel-agent bug; nothing was imported")
        }
        do { try ctx.policy().admitPatch(edited, at: dest) } catch let e as KAError {
            // the policy names the tree path, which does not exist yet: name the source
            throw KAError(e.kind, [link + " (to patches/\(dest))"] + e.chain.dropFirst(), hint: e.hint)
        }
        let destURL = ctx.workspace.url(dest)
        if FS.exists(destURL) {
            if (try FS.read(destURL)) == data { return .unchanged(dest.value) }
            throw KAError.refusal(link, "patches/\(dest) already exists with other content",
                                  hint: "remove or rename the tree's copy first; import never overwrites")
        }
        return .write(dest.value, data)
    }

    package func run(_ planned: Planned<Prepared>, in ctx: VerbContext) async throws -> VerbOutcome {
        let p = planned.prepared
        let txn = TreeTransaction(ctx.workspace)
        p.ops.forEach(txn.add)
        // the campaign record lands with the patches, or not at all
        if try ctx.state.campaign(campaign) == nil { txn.add(.state(.setCampaign(name: campaign, status: .active, at: ctx.now()))) }
        try txn.commit(state: ctx.state, faults: ctx.faults)
        var text = "imported \(p.imported.count) patch(es) from \(campaign) into patches/\(to)\n"
        for i in p.imported { text += "  + \(i)\n" }
        for u in p.unchanged { text += "  = \(u) (already there, identical)\n" }
        text += "no manifest was changed; include the scope in fleet/<host>.yaml, then ka promote <host>\n"
        return VerbOutcome(text)
    }
}
