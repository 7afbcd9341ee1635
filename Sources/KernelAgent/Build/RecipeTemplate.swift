import Foundation
import Crypto

/// `package.template_at`: the user's own recipe (a dir in their packages checkout holding a PKGBUILD, its config,
/// hooks, a mkinitcpio preset and copies of some patches). As their ka-build did, ka verifies, it does not author:
/// - every recipe-side patch must be a patch of the lock (same sha256, or the same diff when only the commit
///   message differs, which is what `ka adopt`'s Scope: trailer does), else the build is refused as drift;
/// - a copy of the recipe is stamped in the job's dir: `_srctag` (baseline.ref), `pkgrel` and `_cumulative_b2sum`,
///   with the lock's cumulative beside it under its own name;
/// - makepkg runs on that copy. Their checkout is only read; the plan pins each of its files.
package struct RecipeTemplate: Sendable {
    package let dir: URL
    /// As the manifest names it, for messages.
    package let shown: String
    /// Every regular file of the recipe (name, b2sum), sorted by name: what the plan pins.
    package let files: [File]

    package struct File: Sendable, Equatable {
        package let name: String
        package let b2sum: String
        package let sha256: String
    }

    /// The lines of the PKGBUILD a stamp sets; each must be there, once, as `name=…`.
    package static let stampedVariables = ["_srctag", "pkgrel", "_cumulative_b2sum"]

    /// The recipe `manifest` names, or nil without `template_at`. `home`: the $HOME no recipe may lie under.
    package static func locate(_ manifest: Manifest, pipeline: PipelineConfig, stateRoot: URL,
                              home: String? = ProcessInfo.processInfo.environment["HOME"]) throws -> RecipeTemplate? {
        guard let raw = manifest.package?.templateAt else { return nil }
        let context = "\(manifest.file): package.template_at '\(raw)'"
        guard let checkout = pipeline.build.packagesCheckout else {
            throw KAError.refusal(context, "names a recipe, but KA_CONFIG sets no build.packages_checkout",
                                  hint: "set build: {packages_checkout: /srv/marfrit-packages} (a checkout outside $HOME) in KA_CONFIG")
        }
        let root = URL(fileURLWithPath: checkout).standardizedFileURL
        try Policy.refuseHome(root, shown: "build.packages_checkout '\(checkout)'", root: stateRoot, home: home)
        var parts = raw.split(separator: "/").map(String.init)
        guard !raw.hasPrefix("/"), !parts.isEmpty, !parts.contains(".."), !parts.contains(".") else {
            throw KAError.refusal(context, "must be a path inside the packages checkout", hint: "e.g. marfrit-packages/arch/\(manifest.package?.name ?? "<package>")/")
        }
        // Their spelling starts with the checkout's own name (marfrit-packages/arch/<pkg>/), and may name the PKGBUILD.
        if parts.first == root.lastPathComponent { parts.removeFirst() }
        var dir = parts.reduce(root) { $0.appendingPathComponent($1) }
        if parts.last == "PKGBUILD" { dir.deleteLastPathComponent() }
        guard FS.isDirectory(root) else {
            throw KAError.refusal(context, "the packages checkout \(checkout) is not a directory here", hint: "clone it there, or fix build.packages_checkout")
        }
        let real = URL(fileURLWithPath: FS.realPath(dir)), realRoot = URL(fileURLWithPath: FS.realPath(root))
        guard FS.isInside(real, realRoot) else {
            throw KAError.refusal(context, "leads out of the packages checkout (to \(real.path))")
        }
        guard FS.isDirectory(real), FS.exists(real.appendingPathComponent("PKGBUILD")) else {
            throw KAError.refusal(context, "\(real.path) holds no PKGBUILD", hint: "point template_at at the recipe dir, e.g. marfrit-packages/arch/\(manifest.package?.name ?? "<package>")/")
        }
        var files: [File] = []
        for name in try FileManager.default.contentsOfDirectory(atPath: real.path).sorted() where !name.hasPrefix(".") {
            let url = real.appendingPathComponent(name)
            guard !FS.isDirectory(url) else { continue }
            let data = try FS.read(url, display: "\(raw)/\(name)", limit: 256 << 20)
            files.append(File(name: name, b2sum: Blake2b.hex(data), sha256: Hex.encode(Array(SHA256.hash(data: data)))))
        }
        return RecipeTemplate(dir: real, shown: raw, files: files)
    }

    /// Refuses recipe-side patches that are not the lock's (ka-build's "verifies, doesn't author"); returns one
    /// note per patch checked. The cumulative's own name is skipped: the stamp puts the lock's there.
    package func verify(against lock: LockFile, cumulativeName: String) throws -> [String] {
        var notes: [String] = []
        for f in files where f.name.hasSuffix(".patch") && f.name != cumulativeName {
            let data = try FS.read(dir.appendingPathComponent(f.name), display: "\(shown)/\(f.name)", limit: 256 << 20)
            let named = lock.patches.filter { ($0.path as NSString).lastPathComponent == f.name }
            if let same = lock.patches.first(where: { $0.sha256 == f.sha256 }) {
                notes.append("\(f.name) = \(same.path) (sha256)")
                continue
            }
            let contentHash = PatchFile(bytes: data).contentHash
            if let same = lock.patches.first(where: { $0.contentHash == contentHash }) {
                notes.append("\(f.name) = \(same.path) (same diff; the commit message differs, e.g. ka adopt's Scope: trailer)")
                continue
            }
            let why = named.first.map { "its sha256 \(f.sha256.prefix(12))… is not the lock's \($0.sha256?.prefix(12) ?? "?")… for \($0.path)" }
                ?? "no patch of the lock has its sha256 or its diff"
            throw KAError.refusal("\(shown)/\(f.name)", "recipe-side patch drifted from \(lock.file): \(why)",
                                  hint: "the lock is authoritative: refresh the recipe's copy from patches/\(named.first?.path ?? "…"), or drop it from the recipe")
        }
        return notes
    }

    /// A copy of the recipe in `out` (which must not exist), stamped, with the cumulative beside it.
    package func stamp(into out: URL, cumulative: URL, cumulativeName: String, cumulativeB2sum: String, srctag: String, pkgrel: String) throws {
        let fm = FileManager.default
        try fm.createDirectory(at: out, withIntermediateDirectories: true)
        for f in files { try fm.copyItem(at: dir.appendingPathComponent(f.name), to: out.appendingPathComponent(f.name)) }
        // the recipe's copy may be stale or absent: the lock's cumulative is the one built
        let dest = out.appendingPathComponent(cumulativeName)
        if fm.fileExists(atPath: dest.path) { try fm.removeItem(at: dest) }
        try fm.copyItem(at: cumulative, to: dest)
        let pkgbuild = out.appendingPathComponent("PKGBUILD")
        var lines = String(decoding: try FS.read(pkgbuild, display: "\(shown)/PKGBUILD", limit: 4 << 20), as: UTF8.self)
            .split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let values = ["_srctag": srctag, "pkgrel": pkgrel, "_cumulative_b2sum": cumulativeB2sum]
        for name in Self.stampedVariables {
            let at = lines.indices.filter { lines[$0].hasPrefix(name + "=") }
            guard at.count == 1, let value = values[name] else {
                throw KAError.refusal("\(shown)/PKGBUILD", at.isEmpty ? "has no '\(name)=' line to stamp" : "sets '\(name)=' \(at.count) times",
                                      hint: "the recipe needs exactly one line each of \(Self.stampedVariables.map { "\($0)=" }.joined(separator: ", ")) (ka stamps them)")
            }
            // single-quoted for bash: the values are a tag, a number and hex, but a quote in a tag must stay text
            lines[at[0]] = "\(name)='\(value.replacingOccurrences(of: "'", with: "'\\''"))'"
        }
        try FS.writeAtomically(Data(lines.joined(separator: "\n").utf8), to: pkgbuild)
    }
}
