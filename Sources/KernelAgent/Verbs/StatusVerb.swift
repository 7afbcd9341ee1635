import ArgumentParser
import Foundation

/// `ka status [--json] [--html FILE]`: one line per host; or the dashboard page written for offline use.
package struct StatusVerb: InlineVerb, WaitsForTree {
    package static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "One line per host: roles, build host, locked suffix and lock hash, drift/pending state, open blocks.")

    @Flag(help: "Print JSON instead of the table.")
    package var json = false

    @Option(help: "Write the dashboard page (the HTML `ka serve` shows at GET /) to this file under out/ or build/, e.g. out/dashboard.html.")
    package var html: String?

    /// Renders the dashboard page; the composition root passes one in the context (the page's templates live in
    /// the control plane).
    package typealias HTMLRenderer = @Sendable (_ ctx: VerbContext) async throws -> String

    /// What `ka status --json` prints (and `GET /api/status` serves).
    package static func json(_ rows: [Row]) throws -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try enc.encode(rows), as: UTF8.self) + "\n"
    }

    @OptionGroup package var lockOptions: TreeLockOptions

    package var writesState: Bool { false }

    package init() {}

    package var lane: Lane { .none }

    package func policySubject(in ctx: VerbContext) throws -> PolicySubject {
        PolicySubject(outputPaths: html.map { [($0, "--html")] } ?? [])
    }

    /// What every dashboard page carries in its head, so `--html` replaces only a page it wrote.
    package static let pageMark = #"<meta name="generator" content="kernel-agent">"#

    /// The page's file, checked again at run time (the bot runs after consent, when the file system may have
    /// changed): the output rule, a name ending in .html, not a promote output dir, and no file but an earlier page.
    static func pageFile(_ raw: String, policy: Policy) throws -> URL {
        let url = try policy.admitOutputPath(raw, purpose: "--html")
        let shown = "--html '\(raw)'"
        guard ["html", "htm"].contains(url.pathExtension.lowercased()) else {
            throw KAError.refusal(shown, "the dashboard page's name must end in .html", hint: "e.g. --html out/dashboard.html")
        }
        let dir = url.deletingLastPathComponent()
        if FS.exists(dir.appendingPathComponent("manifest.lock")) {
            throw KAError.refusal(shown, "lies in a promote output dir (\(policy.workspace.display(dir))/ holds a manifest.lock)",
                                  hint: "write the page beside it, e.g. out/dashboard.html")
        }
        var st = stat()
        if lstat(url.path, &st) == 0 {
            switch FS.readRegular(url.path, limit: 64 << 20) {
            case let .success(data) where data.prefix(4096).range(of: Data(pageMark.utf8)) != nil: break
            case .success:
                throw KAError.refusal(shown, "exists and is not a dashboard page kernel-agent wrote",
                                      hint: "name a new file, or remove this one yourself if it is really yours to replace")
            case let .failure(problem):
                throw KAError.refusal(shown, problem.message, hint: problem.hint ?? "name a new file under out/")
            }
        }
        return url
    }

    package struct Row: Codable, Sendable, Equatable {
        package let host: String
        package let roles: [String]
        package let arch: String
        package let buildHost: String?
        package let lockedSuffix: String?
        package let lockB2sum: String?
        package let state: String
        package let detail: String?
        package let openBlocks: [String]
        /// The newest signed, published build waiting for `ka install` (its version), if any.
        package let installable: String?
    }

    /// Past `locked`: what the pipeline did with this lock. installable (built, signed, waiting for ka install),
    /// installed (Bars 1–4 not passed yet), verified; a lock nobody built stays locked.
    static func pipelineState(_ host: HostName, lock: PromotionRecord, state: StateStore, install: InstallRecord?,
                              installable: InstallableRecord?) throws -> (String, String?) {
        if let install, install.lockB2sum == lock.lockB2sum {
            switch install.state {
            case .verified:
                return ("verified", "\(install.version) by install \(install.job)" + (install.burnInUntil.map { "; burn-in until \($0.formatted(.iso8601))" } ?? ""))
            case .installed: return ("installed", "\(install.version) by install \(install.job); not verified yet (ka verify \(host))")
            case .installing: return ("installing", "install \(install.job) of \(install.version) has not finished")
            case .drifted: return ("drifted", "install \(install.job) failed verification")
            }
        }
        if let installable, installable.lockB2sum == lock.lockB2sum, try state.installs.closure(buildJob: installable.job) == nil {
            return ("installable", "\(installable.version) from build \(installable.job); next: ka install \(host)")
        }
        return ("locked", nil)
    }

    package func rows(in ctx: VerbContext) async throws -> [Row] {
        let ws = ctx.workspace
        let registry = try ctx.registry()
        let policy = Policy(registry: registry, workspace: ws)
        let blocks = try await ctx.openBlocks()
        let manifestHosts = Set(Fleet.manifestHosts(ws))
        let resolver = Resolver(workspace: ws, policy: policy)
        let hosts = registry.hosts.keys.sorted()
        let records = try ctx.state.hostRecords(hosts.map(\.value))
        let installs = try ctx.state.installs.latest(hosts: hosts.map(\.value))
        return try hosts.map { host in
            let e = registry.hosts[host]!
            let route = registry.buildRoute(for: e.arch)
            let lock = records.promotions[host.value]
            var state: String, detail: String?
            if let d = records.drifts[host.value] {
                state = "drifted"; detail = d.reason
            } else if !manifestHosts.contains(host) {
                state = e.roles.contains(.target) ? "stock" : "-"
                detail = e.roles.contains(.target) ? "no manifest" : nil
            } else {
                do {
                    // only the cumulative's b2sum is compared, so nothing else is hashed and nothing is kept
                    let current = try resolver.scan(try Manifest.load(host, in: ws), into: nil,
                                                    options: .init(hashes: false, conflicts: false)).cumulativeB2sum
                    if let lock {
                        state = lock.cumulativeB2sum == current ? "locked" : "pending"
                        detail = lock.cumulativeB2sum == current ? nil : "tree or manifest changed since the lock; run ka promote \(host)"
                        if state == "locked" {
                            (state, detail) = try Self.pipelineState(host, lock: lock, state: ctx.state, install: installs[host.value],
                                                                     installable: records.installables[host.value])
                        }
                    } else { state = "pending"; detail = "never promoted" }
                } catch let err as KAError {
                    state = "error"; detail = err.message
                }
            }
            let mine = blocks.filter { b in
                if b.concerns(host: host.value) { return true }
                // a build host's block shows on the targets it reroutes; a compile-only host builds nothing of theirs
                if case let .buildHost(bh) = b.scope, e.roles.contains(.target), route.first?.value == bh { return true }
                if case let .patches(ps) = b.scope, let lock { return ps.contains { lock.patchPaths.split(separator: "\n").contains(Substring($0)) } }
                return false
            }
            return Row(host: host.value, roles: e.rolesText.split(separator: ",").map(String.init), arch: e.arch.rawValue,
                       buildHost: e.roles.contains(.target) ? route.first?.value : nil,
                       lockedSuffix: lock?.kernelSuffix, lockB2sum: lock?.lockB2sum, state: state, detail: detail,
                       openBlocks: mine.map { "\($0.kind.titlePrefix) \($0.id)" }, installable: records.installables[host.value]?.version)
        }
    }

    package func plan(in ctx: VerbContext) async throws -> Planned<Void> {
        if let html {
            return Planned(Plan(verb: Self.verbName, arguments: ["--html", html],
                        steps: ["read fleet/, patches/, the state store and jobs; write the dashboard page to \(html); change nothing else"]))
        }
        return Planned(Plan(verb: Self.verbName, arguments: json ? ["--json"] : [], steps: ["read fleet/, patches/ and the state store; change nothing"]))
    }

    package func run(_ planned: Planned<Void>, in ctx: VerbContext) async throws -> VerbOutcome {
        if let html {
            guard let render = ctx.renderDashboard else {
                throw KAError.refusal("ka status --html", "this build has no dashboard renderer", hint: "run the ka binary, not the library")
            }
            let url = try Self.pageFile(html, policy: try ctx.policy())
            let page = try await render(ctx)
            try FS.writeAtomically(Data(page.utf8), to: url)
            return VerbOutcome("wrote the dashboard page (\(page.utf8.count) bytes) to \(html)\n")
        }
        let rows = try await rows(in: ctx)
        if json { return VerbOutcome(try Self.json(rows)) }
        var cols: [[String]] = [["HOST", "ROLES", "BUILD", "SUFFIX", "LOCK", "STATE", "BLOCKS"]]
        for r in rows {
            var state = r.state + (r.detail.map { " (\($0))" } ?? "")
            if let v = r.installable { state += ", installable \(v)" }
            cols.append([r.host, r.roles.joined(separator: ","), r.buildHost ?? "-", r.lockedSuffix.map { "-" + $0 } ?? "-",
                         r.lockB2sum.map { String($0.prefix(12)) } ?? "-", state,
                         r.openBlocks.isEmpty ? "-" : r.openBlocks.joined(separator: " ")])
        }
        let widths = (0..<6).map { i in cols.map { $0[i].count }.max() ?? 0 }
        var text = cols.map { row in
            row.enumerated().map { i, c in i < 6 ? c.padding(toLength: widths[i], withPad: " ", startingAt: 0) : c }.joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
        // The fleet-wide pause is no host's row: a line of its own under the table.
        if let pause = try ctx.state.prunePause() { text += "pruning: \(pause.shown); ka resume-prune lifts it\n" }
        return VerbOutcome(text)
    }
}
