import Foundation

/// One line of `ka doctor`: what was checked, whether it holds, what was seen, and the one thing to do about it.
package struct DoctorCheck: Codable, Sendable, Equatable {
    package let area: String
    package let name: String
    package let ok: Bool
    package let detail: String
    package let fix: String?

    package static func pass(_ area: String, _ name: String, _ detail: String) -> DoctorCheck {
        DoctorCheck(area: area, name: name, ok: true, detail: detail, fix: nil)
    }
    package static func fail(_ area: String, _ name: String, _ detail: String, fix: String) -> DoctorCheck {
        DoctorCheck(area: area, name: name, ok: false, detail: detail, fix: fix)
    }

    /// `✓ area: name — detail`, and for a failure a `fix:` line under it.
    package var rendered: String {
        var text = "\(ok ? "✓" : "✗") \(area): \(name) — \(detail)"
        if let fix, !ok { text += "\n    fix: \(fix)" }
        return text
    }
}

/// `ka doctor`'s checks that need no Gitea: the checkout, KA_CONFIG, every host's preflight, the signing key, His.
/// Each check reports rather than throws, so one fault never hides the next.
package struct Doctor: Sendable {
    package let workspace: Workspace
    package let env: [String: String]

    package init(workspace: Workspace, env: [String: String] = ProcessInfo.processInfo.environment) {
        self.workspace = workspace; self.env = env
    }

    static func describe(_ error: Error) -> (String, String?) {
        if let e = error as? KAError { return (e.message, e.hint) }
        return ("\(error)", nil)
    }

    // MARK: the checkout

    package func checkout() -> (checks: [DoctorCheck], registry: HostRegistry?) {
        let ws = workspace
        var out: [DoctorCheck] = []
        let hosts = Fleet.manifestHosts(ws)
        guard FS.isDirectory(ws.fleetDir), !hosts.isEmpty else {
            out.append(.fail("checkout", "manifests", "no fleet/<host>.yaml under \(ws.root.path) (KA_ROOT)",
                             fix: "run ka from the kernel-agent checkout, or set KA_ROOT to it; each host needs fleet/<host>.yaml (ka help fleet)"))
            return (out, nil)
        }
        var manifests: [Manifest] = []
        for host in hosts {
            let file = ws.display(ws.manifestFile(host))
            do {
                let m = try Manifest.load(host, in: ws)
                manifests.append(m)
                out.append(.pass("checkout", file, "parses: baseline \(m.baseline.ref), kernel suffix -\(m.kernelSuffix) (\(m.kernelSuffixSource)), \(m.selectors.count) include(s)"))
            } catch {
                let (text, hint) = Self.describe(error)
                out.append(.fail("checkout", file, text, fix: hint ?? "fix the line it names (ka help fleet lists the keys)"))
            }
        }
        out.append(scopeCheck())
        let registry: HostRegistry?
        do {
            let r = try HostRegistry.load(ws, env: env)
            registry = r
            out.append(.pass("checkout", "fleet registry", Self.summary(of: r)))
        } catch {
            registry = nil
            let (text, hint) = Self.describe(error)
            out.append(.fail("checkout", "fleet registry", text, fix: hint ?? "fix fleet/hosts.yaml, or remove it to derive the registry from the manifests"))
        }
        if let registry {
            let policy = Policy(registry: registry, workspace: ws)
            for m in manifests {
                do {
                    try policy.admitTarget(m.host, manifest: m)
                    let resolution = try Resolver(workspace: ws, policy: policy).resolve(m)
                    out.append(.pass("checkout", "\(m.file) resolves", "\(resolution.entries.count) patch(es)"))
                } catch {
                    let (text, hint) = Self.describe(error)
                    out.append(.fail("checkout", "\(m.file) resolves", text, fix: hint ?? "fix the manifest or the patch it names"))
                }
            }
        }
        return (out, registry)
    }

    /// Every patch in patches/ carries its `Scope:` trailer (the hard rule promote enforces), cover letters aside.
    func scopeCheck() -> DoctorCheck {
        let ws = workspace
        let files = FS.regularFiles(under: ws.patchesDir).filter { $0.hasSuffix(".patch") && !$0.hasSuffix("/0000-cover-letter.patch") && $0 != "0000-cover-letter.patch" }
        var unscoped: [String] = []
        for rel in files {
            let path = ws.patchesDir.appendingPathComponent(rel)
            guard let data = FileManager.default.contents(atPath: path.path) else { unscoped.append(rel); continue }
            if PatchFile(bytes: data).scopeTrailers.isEmpty { unscoped.append(rel) }
        }
        guard unscoped.isEmpty else {
            return .fail("checkout", "Scope: trailers", "\(unscoped.count) of \(files.count) patch(es) carry no Scope: trailer (e.g. patches/\(unscoped[0]))",
                         fix: "run ka adopt (ka adopt --dry-run shows what it changes)")
        }
        return .pass("checkout", "Scope: trailers", "all \(files.count) patch(es) carry one")
    }

    static func summary(of r: HostRegistry) -> String {
        func names(_ role: HostRole) -> String {
            let list = r.hosts.values.filter { $0.roles.contains(role) }.map(\.name.value).sorted()
            return list.isEmpty ? "none" : list.joined(separator: ", ")
        }
        let routes = r.routing.keys.sorted { $0.rawValue < $1.rawValue }
            .map { "\($0.rawValue): \(r.routing[$0, default: []].map(\.value).joined(separator: " → "))" }.joined(separator: "; ")
        return "\(r.derived ? "derived (no fleet/hosts.yaml)" : r.file): targets \(names(.target)); build \(names(.build))"
            + (routes.isEmpty ? "" : " (\(routes))") + "; signing \(names(.signing))"
    }

    // MARK: KA_CONFIG

    package func config(registry: HostRegistry?) -> [DoctorCheck] {
        guard let path = env["KA_CONFIG"], !path.isEmpty else {
            return [.fail("config", "KA_CONFIG", "not set: no host addresses, no signing host, no His",
                          fix: "export KA_CONFIG=<the agent's YAML config> (README, Configuration); ka serve --config sets it too")]
        }
        var out: [DoctorCheck] = []
        let agent: AgentConfig
        do {
            let settings = try Settings.load(env: env, stateDir: workspace.stateDir)
            agent = settings.agent
            let pipeline = settings.pipeline
            let sections = [pipeline.signing == nil ? nil : "signing", pipeline.baseline == nil ? nil : "baseline", pipeline.logs == nil ? nil : "logs"].compactMap { $0 }
            out.append(.pass("config", "KA_CONFIG", "\(path) parses (\(agent.hosts.count) host(s)\(sections.isEmpty ? "" : "; " + sections.joined(separator: ", ")))"))
        } catch {
            let (text, hint) = Self.describe(error)
            return [.fail("config", "KA_CONFIG", text, fix: hint ?? "fix the line it names in \(path)")]
        }
        guard let registry else { return out }
        do {
            let fleet = try FleetTransports(registry: registry, config: agent, stateDir: workspace.stateDir)
            var missing: [String] = [], resolved: [String] = []
            for h in hostsToReach(registry) {
                do { resolved.append("\(h) → \(try fleet.endpoint(for: h))") } catch { missing.append(h.value) }
            }
            if missing.isEmpty {
                out.append(.pass("config", "host addresses", resolved.isEmpty ? "no host to reach" : resolved.joined(separator: ", ")))
            } else {
                out.append(.fail("config", "host addresses", "no ssh address for \(missing.joined(separator: ", "))",
                                 fix: "add hosts.<host>.ssh: {address: …, user: …} to \(path) for each"))
            }
        } catch {
            let (text, hint) = Self.describe(error)
            out.append(.fail("config", "host addresses", text, fix: hint ?? "fix hosts: in \(path)"))
        }
        return out
    }

    /// The hosts the pipeline reaches over ssh: the targets that have a manifest, the build hosts their builds route
    /// to, and the signing host. (An anticipated target without a manifest, or a build host no manifest routes to,
    /// is not reached by anything yet.)
    func hostsToReach(_ r: HostRegistry) -> [HostName] {
        var hosts = Set<HostName>()
        for h in Fleet.manifestHosts(workspace) where r.hosts[h]?.roles.contains(.target) == true {
            hosts.insert(h)
            // try? on purpose: a manifest that does not load, or routes nowhere, is reported under checkout; its
            // build hosts are then unknown, and the other hosts are still checked
            if let m = try? Manifest.load(h, in: workspace), let route = try? BuildRouting.candidates(for: m, registry: r) { hosts.formUnion(route) }
        }
        for e in r.hosts.values where e.roles.contains(.signing) { hosts.insert(e.name) }
        return hosts.sorted()
    }

    // MARK: hosts, signing, His

    /// `ka preflight` for every host the pipeline reaches, through the job runtime, all at once. An on-demand host
    /// that His reports asleep is not woken for a check: it is fine as long as His answers for it.
    package func hosts(_ ctx: VerbContext, registry: HostRegistry) async -> [DoctorCheck] {
        let names = hostsToReach(registry)
        var results: [HostName: DoctorCheck] = [:]
        let his: (any HisOps)?
        do { his = try HisClients.fromEnvironment(workspace, env: env) } catch { his = nil }   // reported under his
        await withTaskGroup(of: (HostName, DoctorCheck).self) { group in
            for h in names {
                group.addTask {
                    if let entry = registry.hosts[h], case .onDemand = entry.wake {
                        guard let his else {
                            return (h, .fail("hosts", "preflight \(h)", "(\(entry.rolesText)) woken on demand, but no His is configured to wake it",
                                             fix: "add his: to KA_CONFIG, or make \(h) always on"))
                        }
                        do {
                            let power = try await his.hostStatus(h)
                            if power != .up {
                                return (h, .pass("hosts", "preflight \(h)", "(\(entry.rolesText)) \(his.endpoint) says \(power.rawValue); woken when a build needs it, not for a check"))
                            }
                        } catch {
                            return (h, .fail("hosts", "preflight \(h)", "(\(entry.rolesText)) \(his.endpoint) cannot say whether it is up: \(Self.describe(error).0)",
                                             fix: Self.describe(error).1 ?? "check His"))
                        }
                    }
                    return (h, await Self.preflight(h, ctx: ctx, registry: registry))
                }
            }
            for await (h, check) in group { results[h] = check }
        }
        return names.compactMap { results[$0] }
    }

    static func preflight(_ host: HostName, ctx: VerbContext, registry: HostRegistry) async -> DoctorCheck {
        let name = "preflight \(host)"
        do {
            let entry = try registry.entry(host)
            // no job for a host that has no address: that is a config fault, reported once under config
            do { _ = try ctx.transports.transport(for: host) } catch {
                return .fail("hosts", name, "(\(entry.rolesText)) not checked: \(describe(error).0)", fix: describe(error).1 ?? "give it an ssh address in KA_CONFIG")
            }
            let steps = try HostChecks().checks(for: entry, host: host)
            let runner = JobRunner(store: ctx.jobs, workspace: ctx.workspace, transports: ctx.transports)
            let job = try runner.create(verb: PreflightVerb.verbName, arguments: [host.value], pins: [], subject: host.value,
                                        origin: .cli(user: "ka doctor"), steps: steps)
            let ended = try await runner.run(job.id, steps: steps, noWait: true)
            let roles = entry.rolesText
            if ended.state == .succeeded {
                return .pass("hosts", name, "(\(roles)) " + ended.steps.compactMap(\.outcome).joined(separator: "; "))
            }
            let failed = ended.steps.first { $0.state == .failed }
            return .fail("hosts", name, "(\(roles)) \(failed.map { "\($0.name): " } ?? "")\(ended.detail ?? failed?.outcome ?? ended.state.rawValue)",
                         fix: "ka jobs show \(job.id) has the log; ka preflight \(host) checks it again")
        } catch {
            let (text, hint) = describe(error)
            return .fail("hosts", name, text, fix: hint ?? "ka preflight \(host)")
        }
    }

    /// The signing key with the configured fingerprint is on the signing host (in its gnupg home).
    package func signing(_ ctx: VerbContext) async -> [DoctorCheck] {
        let pipeline: PipelineConfig
        do { pipeline = try PipelineConfig.fromEnvironment(env) } catch { return [] }   // reported under config
        guard let s = pipeline.signing else {
            return [.fail("signing", "signing host", "KA_CONFIG has no signing: section; nothing can be signed or published",
                          fix: "add signing: {host: <signing host>, key: <40-hex fingerprint>, repo: {name, dir}} to KA_CONFIG")]
        }
        guard let key = s.key, key.count == 40, key.allSatisfy(\.isHexDigit) else {
            return [.fail("signing", "signing key", "signing.key \(s.key.map { "'\($0)'" } ?? "is missing"): not a 40-hex-digit fingerprint",
                          fix: "set signing.key in KA_CONFIG to the key's full fingerprint (gpg --list-secret-keys --with-colons)")]
        }
        do {
            let transport = try ctx.transports.transport(for: s.host)
            let r = try await transport.run(RemoteCommand(["gpg", "--homedir", RemoteArgument(s.gnupgHome), "--batch", "--with-colons",
                                                           "--list-secret-keys", "--", RemoteArgument(key)], timeout: .seconds(30)))
            guard r.succeeded, r.stdoutText.uppercased().contains(key.uppercased()) else {
                return [.fail("signing", "signing key", "no secret key \(key) in \(s.gnupgHome) on \(s.host)",
                              fix: "import the signing key into \(s.gnupgHome) on \(s.host) (gpg --homedir \(s.gnupgHome) --import)")]
            }
            return [.pass("signing", "signing key", "\(key) in \(s.gnupgHome) on \(s.host)")]
        } catch {
            let (text, hint) = Self.describe(error)
            return [.fail("signing", "signing key", "cannot ask \(s.host): \(text)", fix: hint ?? "ka preflight \(s.host)")]
        }
    }

    /// His answers and offers wake-host (needed only when a host is woken on demand).
    package func his(registry: HostRegistry?) async -> [DoctorCheck] {
        let onDemand = registry?.hosts.values.filter { if case .onDemand = $0.wake { return true } else { return false } }.map(\.name.value).sorted() ?? []
        let config: HisConfig?
        do {
            guard let path = env["KA_CONFIG"], !path.isEmpty else { return [] }
            config = try HisConfig.load(path, via: "KA_CONFIG")
        } catch { return [] }   // reported under config
        guard let config else {
            if onDemand.isEmpty { return [.pass("his", "His", "not configured, and no host is woken on demand")] }
            return [.fail("his", "His", "no his: section, but \(onDemand.joined(separator: ", ")) wake(s) on demand through His",
                          fix: "add his: {url: …} or his: {command: […]} to KA_CONFIG")]
        }
        do {
            let his = try MCPHisOps(config: config, env: env)
            defer { Task { await his.close() } }
            let tools = try await his.offeredTools()
            guard tools.contains(HisTool.wakeHost.rawValue) else {
                return [.fail("his", "His", "\(config.endpoint) answers but offers no wake-host (it offers \(tools.joined(separator: ", ")))",
                              fix: "point his: in KA_CONFIG at the lmcp that serves His's ops tools")]
            }
            return [.pass("his", "His", "\(config.endpoint) answers; offers \(tools.joined(separator: ", "))")]
        } catch {
            let (text, hint) = Self.describe(error)
            return [.fail("his", "His", text, fix: hint ?? "check that His runs at \(config.endpoint)")]
        }
    }
}
