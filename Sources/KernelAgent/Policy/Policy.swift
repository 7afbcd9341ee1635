import Foundation

/// The hard rules of the seed, in one place. Every verb states what it touches (`PolicySubject`) and the
/// runner asks `admit` before planning; the resolver asks `admitPatch` for every patch it reaches.
/// Nothing here has an override flag: changing a rule means changing this file.
package struct Policy: Sendable {
    /// Seed, "Targets": never a promote/build/install target without `infra_opt_in: true` in its manifest.
    package static let infraHosts: Set<String> = ["noether", "hertz", "dcw2", "dcw3", "turing", "nuccies"]

    package let registry: HostRegistry
    package let workspace: Workspace
    package let home: String?

    package init(registry: HostRegistry, workspace: Workspace,
                home: String? = ProcessInfo.processInfo.environment["HOME"]) {
        self.registry = registry
        self.workspace = workspace
        self.home = home
    }

    package func isInfra(_ host: HostName) -> Bool {
        Self.infraHosts.contains(host.value) || (registry.hosts[host]?.isInfra ?? false)
    }

    /// Rule: infra hosts are never targets without an explicit opt-in in their manifest.
    package func admitTarget(_ host: HostName, manifest: Manifest?) throws {
        let entry = try registry.entry(host)
        if isInfra(host) && !(manifest?.infraOptIn ?? false) {
            let file = workspace.display(workspace.manifestFile(host))
            throw KAError.refusal(manifest?.file ?? file, "'\(host)' is an infra host (\(entry.rolesText)) and its manifest does not opt in",
                                  hint: "add 'infra_opt_in: true' to \(file) if this host really should take a custom kernel")
        }
    }

    /// Rule: a patch carries exactly one `Scope:` trailer and it equals its directory under patches/.
    package func admitPatch(_ patch: PatchFile, at path: TreePath) throws {
        let scopes = patch.scopeTrailers
        let dir = path.parent
        switch scopes.count {
        case 0:
            let where_ = patch.scopeLinesOutsideTrailers > 0 ? " (a Scope: line stands in the body, not in the trailer block)" : ""
            throw KAError.refusal(path.value, "unscoped patch: no 'Scope:' trailer\(where_)",
                                  hint: "run 'ka adopt' to add 'Scope: <its dir>' to every unscoped patch at once (ka adopt --dry-run shows what it changes), or add 'Scope: \(dir)' to the last paragraph of the commit message, above '---'")
        case 1:
            guard scopes[0] == dir else {
                throw KAError.refusal(path.value, "Scope: \(scopes[0]) differs from its directory \(dir)",
                                      hint: "move the patch with 'ka migrate-tree' or fix the trailer to 'Scope: \(dir)'")
            }
        default:
            throw KAError.refusal(path.value, "\(scopes.count) 'Scope:' trailers (\(scopes.joined(separator: ", "))); exactly one is allowed",
                                  hint: "keep only 'Scope: \(dir)'")
        }
    }

    /// Rule: abandon states what happens to the patches; no silent default.
    package func admitAbandon(keepAsArchive: Bool, purgeFromFleet: Bool) throws {
        if keepAsArchive == purgeFromFleet {
            throw KAError.refusal("abandon", keepAsArchive ? "--keep-as-archive and --purge-from-fleet exclude each other"
                                                           : "refused without --keep-as-archive or --purge-from-fleet",
                                  hint: "say what happens to the campaign's patches: keep them as an archive, or purge them from the fleet")
        }
    }

    /// Rule: never reach into $HOME. A local path a verb reads or writes must not lie under $HOME
    /// (unless it is inside the kernel-agent checkout itself), and never starts with '~'.
    package func admitLocalPath(_ raw: String, purpose: String) throws -> URL {
        if raw.hasPrefix("~") {
            throw KAError.refusal("\(purpose) '\(raw)'", "refers to a home directory; kernel-agent never reaches into $HOME",
                                  hint: "use a path outside $HOME, e.g. /srv/kernel-agent/…")
        }
        // Relative paths are taken from the checkout (KA_ROOT), so the CLI and the bot mean the same place.
        let url = (raw.hasPrefix("/") ? URL(fileURLWithPath: raw) : workspace.root.appendingPathComponent(raw)).standardizedFileURL
        try Self.refuseHome(url, shown: "\(purpose) '\(raw)'", root: workspace.root, home: home)
        return url
    }

    /// Rule: a path that, symlinks resolved, lies under $HOME outside the checkout is refused.
    package static func refuseHome(_ url: URL, shown: String, root: URL,
                                  home: String? = ProcessInfo.processInfo.environment["HOME"]) throws {
        guard let home, !home.isEmpty, home != "/" else { return }
        let homeURL = URL(fileURLWithPath: home)
        if FS.isInside(url, homeURL) && !FS.isInside(url, root) {
            throw KAError.refusal(shown, "lies under $HOME (\(FS.realPath(homeURL))); kernel-agent never reaches into $HOME",
                                  hint: "use a path outside $HOME, e.g. /srv/kernel-agent/…")
        }
    }

    /// The dirs every verb output goes to: `out/` and `build/` in the checkout (the upstream layout's), whatever
    /// front door asked. A dir here that is a symlink out of the checkout is refused where it is used.
    package var outputDirs: [URL] { ["out", "build"].map { workspace.root.appendingPathComponent($0) } }

    /// Rule: a verb writes only into the agent's own output dirs, whatever option names the path (`--out`,
    /// `--html`, …) and whichever front door (CLI or bot) passed it. On top of `admitLocalPath` (no `~`, no
    /// $HOME, relative to KA_ROOT): the path, symlinks resolved, lies in `out/` or `build/` of the checkout, and
    /// neither lies in nor contains patches/, fleet/, .git/ or the state dir. So no argument can make a verb
    /// overwrite the registry, the state database, the config, git's files or anything outside the checkout.
    package func admitOutputPath(_ raw: String, purpose: String) throws -> URL {
        let shown = "\(purpose) '\(raw)'"
        if raw.trimmingCharacters(in: .whitespaces).isEmpty {
            throw KAError.refusal(purpose, "is empty", hint: "name a path under out/, e.g. out/\(purpose == "--html" ? "dashboard.html" : "<host>")")
        }
        let url = try admitLocalPath(raw, purpose: purpose)
        let path = url.path
        guard path.utf8.count < Int(PATH_MAX) else {
            throw KAError.refusal(shown, "the path is \(path.utf8.count) bytes; the limit is \(PATH_MAX - 1)", hint: "use a shorter path")
        }
        if let long = path.split(separator: "/").first(where: { $0.utf8.count > Int(NAME_MAX) }) {
            throw KAError.refusal(shown, "a path component is \(long.utf8.count) bytes; the limit is \(NAME_MAX)", hint: "use shorter names")
        }
        try admitOutputLocation(url, shown: shown)
        return url
    }

    /// The location half of the output rule, for paths kernel-agent derives itself (promote's default dir).
    package func admitOutputLocation(_ url: URL, shown: String) throws {
        let ws = workspace
        let real = FS.realPath(url)
        guard real != FS.realPath(ws.root), real != "/" else {
            throw KAError.refusal(shown, "is the checkout (or /) itself", hint: "use a path of its own under out/, e.g. out/<host>")
        }
        for (dir, name) in [(ws.patchesDir, "patches/"), (ws.fleetDir, "fleet/"), (ws.root.appendingPathComponent(".git"), ".git/"),
                            (ws.stateDir, "the state dir")] where FS.isInside(url, dir) || FS.isInside(dir, url) {
            throw KAError.refusal(shown, "lies in or contains \(name)", hint: "use a path of its own under out/, e.g. out/<host>")
        }
        guard let home = outputDirs.first(where: { url.standardizedFileURL.path.hasPrefix($0.path + "/") || url.standardizedFileURL.path == $0.path }) else {
            throw KAError.refusal(shown, "is outside the agent's output dirs (out/ and build/ in \(ws.root.path)); verbs write nowhere else",
                                  hint: "give a path under out/, e.g. out/\(url.lastPathComponent)")
        }
        guard FS.isInside(home, ws.root) else {
            throw KAError.refusal(ws.display(home), "leads out of the checkout (to \(FS.realPath(home)))",
                                  hint: "make \(ws.display(home))/ a real directory in the checkout")
        }
        guard FS.isInside(url, home) else {
            throw KAError.refusal(shown, "leads out of \(ws.display(home))/ (symlink to \(real))", hint: "replace the symlink with a real directory")
        }
    }

    /// Everything a verb invocation touches, checked before it plans.
    package func admit(_ subject: PolicySubject) throws {
        for host in subject.targets {
            let manifest = FS.exists(workspace.manifestFile(host)) ? try Manifest.load(host, in: workspace) : nil
            try admitTarget(host, manifest: manifest)
        }
        for (path, purpose) in subject.localPaths { _ = try admitLocalPath(path, purpose: purpose) }
        for (path, purpose) in subject.outputPaths { _ = try admitOutputPath(path, purpose: purpose) }
        if let a = subject.abandon { try admitAbandon(keepAsArchive: a.keep, purgeFromFleet: a.purge) }
    }
}

/// What one verb invocation will touch, as the policy needs to see it.
package struct PolicySubject: Sendable {
    package var targets: [HostName] = []
    /// Paths the verb reads (and never writes): (path, the option that named it).
    package var localPaths: [(String, String)] = []
    /// Paths the verb writes: (path, the option that named it). Each goes through `admitOutputPath`.
    package var outputPaths: [(String, String)] = []
    package var abandon: (keep: Bool, purge: Bool)?
    package init(targets: [HostName] = [], localPaths: [(String, String)] = [], outputPaths: [(String, String)] = [],
                abandon: (keep: Bool, purge: Bool)? = nil) {
        self.targets = targets
        self.localPaths = localPaths
        self.outputPaths = outputPaths
        self.abandon = abandon
    }
}
