import ArgumentParser
import Foundation

/// `ka yank <host> <patch-or-scope>`: the loopback (7→4). Takes suspect patches out of one host's manifest: an
/// `excluded:` entry with its provenance (who, when, why), and any selector that named only them dropped. The host
/// is marked drifted; the next promote → build → install converges it. Never promotes, builds or installs itself.
package struct YankVerb: InlineVerb {
    package static let configuration = CommandConfiguration(
        commandName: "yank",
        abstract: "Take a suspect patch (or scope) out of <host>'s manifest, with provenance; marks the host drifted until promote → build → install.",
        discussion: "Writes an `excluded:` entry {path, reason} into fleet/<host>.yaml (an exclude inside a selected dir carves it out) and drops selectors that named only the yanked patches.")

    @Argument(help: "Target host.") package var host: HostName
    @Argument(help: "Patch path or dir under patches/ (e.g. board/pinebook-pro/0001-….patch).") package var patch: String
    @Option(help: "Why (goes into the excluded entry's reason), e.g. the regression issue.") package var reason: String?

    package init() {}

    package var lane: Lane { .tree }

    package func policySubject(in ctx: VerbContext) throws -> PolicySubject {
        _ = try TreePath(patch)
        if let reason, reason.count > 300 || reason.contains(where: \.isNewline) {
            throw KAError.refusal("--reason", "must be one line of at most 300 characters")
        }
        return PolicySubject(targets: [host])
    }

    package struct Prepared: Sendable { let data: Data; let file: String; let yanked: [String] }

    package func plan(in ctx: VerbContext) async throws -> Planned<Prepared> {
        let target = host
        let ws = ctx.workspace
        let path = try TreePath(patch)
        let manifest = try Manifest.load(target, in: ws)
        let selected = try Resolver(workspace: ws, policy: try ctx.policy()).select(manifest).paths.map(\.value)
        let yanked = selected.filter { $0 == path.value || $0.hasPrefix(path.value + "/") }
        guard !yanked.isEmpty else {
            throw KAError.refusal("\(manifest.file)", "does not select patches/\(path.value) (nothing to yank)",
                                  hint: "ka status shows what \(target)'s lock carries; name a patch or dir it selects")
        }
        // Selectors at or inside the yanked path go; an exclude inside a remaining dir carves the rest out.
        var drops: [(Manifest.Selector, String?)] = manifest.selectors.filter { $0.raw == path.value || $0.raw.hasPrefix(path.value + "/") }.map { ($0, nil) }
        let dropped = Set(drops.map { $0.0.raw })
        for item in manifest.orderList where dropped.contains(item.raw) { drops.append((item, nil)) }
        // a probe of the yanked patches goes with them (the host no longer gets what it checks)
        for probe in manifest.verify?.probes ?? [] where probe.patch.value == path.value || probe.patch.value.hasPrefix(path.value + "/") {
            drops.append((probe.mention, nil))
        }
        var data = manifest.bytes
        if !drops.isEmpty {
            guard let edited = ManifestEdit.rewrite(data, selectors: drops) else {
                throw KAError.failure(manifest.file, "cannot drop the selectors naming \(path.value) from its text", hint: "edit it by hand")
            }
            data = edited
        }
        let who = ctx.requester   // the commenter through the bot; the CLI user otherwise
        let why = "yanked by \(who) on \(ctx.now().formatted(.iso8601)) with ka yank" + (reason.map { ": \($0)" } ?? "")
        guard !manifest.excluded.contains(where: { $0.raw == path.value }) else {
            throw KAError.refusal("\(manifest.file)", "already excludes \(path.value)")
        }
        data = try Self.addingExcluded(data, path: path.value, reason: why, file: manifest.file)
        _ = try Manifest.parse(data, host: target, file: manifest.file)   // what is written must load
        let steps = drops.map { "drop the entry for \($0.0.raw) (\(manifest.file):\($0.0.line))" }
            + ["add excluded: {path: \(path.value), reason: \(why)} to \(manifest.file)",
               "mark \(target) drifted: \(yanked.count) patch(es) out; ka promote \(target) → ka build \(target) → ka install \(target) converges it"]
        let pins = try yanked.map { Plan.Pin("patches/" + $0, "b2:" + Blake2b.hex(try FS.read(ws.url(try TreePath($0))))) }
            + [Plan.Pin(manifest.file, "b2:" + Blake2b.hex(manifest.bytes))]
        return Planned(Plan(verb: Self.verbName, arguments: [host.value, patch] + (reason.map { ["--reason", $0] } ?? []), steps: steps, pins: pins), Prepared(data: data, file: manifest.file, yanked: yanked))
    }

    package func run(_ planned: Planned<Prepared>, in ctx: VerbContext) async throws -> VerbOutcome {
        let p = planned.prepared
        let target = host
        let txn = TreeTransaction(ctx.workspace)
        txn.add(.write(path: p.file, data: p.data))
        txn.add(.state(.markDrifted(host: target.value, reason: "yanked \(patch) (\(p.yanked.count) patch(es)); ka promote → build → install converges it", at: ctx.now())))
        try txn.commit(state: ctx.state, faults: ctx.faults)
        return VerbOutcome("yanked \(p.yanked.count) patch(es) from \(p.file):\n" + p.yanked.map { "  - \($0)\n" }.joined()
                           + "\(target) is drifted; next: ka promote \(target) && ka build \(target), then ka install \(target)\n")
    }

    /// The manifest text with one more `excluded:` entry, appended to the list when there is one (block style), else
    /// as a new list at the end. Everything else stays byte for byte.
    static func addingExcluded(_ data: Data, path: String, reason: String, file: String) throws -> Data {
        guard let text = String(validating: data, as: UTF8.self) else { throw KAError.refusal(file, "is not UTF-8 text") }
        let quotedReason = "\"" + reason.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        let entry = ["  - path: \(path)", "    reason: \(quotedReason)"]
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if let key = lines.firstIndex(where: { $0.hasPrefix("excluded:") }) {
            let rest = lines[key].dropFirst("excluded:".count).trimmingCharacters(in: .whitespaces)
            guard rest.isEmpty || rest.hasPrefix("#") || rest == "[]" else {
                throw KAError.refusal("\(file):\(key + 1)", "its excluded: list is in flow style", hint: "write it as a block list (- path: …) so ka yank can add to it")
            }
            if rest == "[]" { lines[key] = "excluded:" }
            var end = key + 1   // after the last line of the list (indented or blank-then-indented)
            var i = key + 1
            while i < lines.count {
                let l = lines[i]
                if l.hasPrefix(" ") || l.hasPrefix("\t") || l.hasPrefix("-") { end = i + 1; i += 1; continue }
                if l.trimmingCharacters(in: .whitespaces).isEmpty || l.hasPrefix("#") { i += 1; continue }
                break
            }
            lines.insert(contentsOf: entry, at: end)
        } else {
            if lines.last == "" { lines.removeLast() }
            lines += ["excluded:                      # ka yank: patches taken out of this host's series"] + entry + [""]
        }
        return Data(lines.joined(separator: "\n").utf8)
    }
}
