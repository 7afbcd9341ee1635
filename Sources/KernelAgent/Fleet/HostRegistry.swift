import Foundation

package enum HostRole: String, CaseIterable, Sendable {
    case target, build, signing, infra
    case compileOnly = "compile-only"
}

package enum BuildTier: String, CaseIterable, Sendable { case primary, secondary, fallback }

package enum Distro: String, CaseIterable, Sendable { case arch, debian }

package enum CPUArch: String, CaseIterable, Sendable {
    case aarch64, x86_64

    /// Kbuild's ARCH for it.
    package var kernelArch: String { self == .aarch64 ? "arm64" : "x86" }
    /// Debian's (and Arch's) cross toolchain prefix for building on another arch.
    package var defaultCrossPrefix: String { "\(rawValue)-linux-gnu-" }
}

package enum WakePolicy: Equatable, Sendable, CustomStringConvertible {
    case alwaysOn
    /// Woken through His (`wake-host`), released after `idleReleaseMinutes` without work.
    case onDemand(via: String, idleReleaseMinutes: Int)

    package var description: String {
        switch self {
        case .alwaysOn: return "always on"
        case let .onDemand(via, idle): return "on demand via \(via), idle release \(idle) min"
        }
    }
}

package struct HostEntry: Sendable {
    package let name: HostName
    package let roles: Set<HostRole>
    package let arch: CPUArch
    package let distro: Distro
    package let wake: WakePolicy
    package let buildTier: BuildTier?
    /// For containers: the machine that carries it (fermi on hertz, kbuild-x86 on data).
    package let runsOn: HostName?
    package let notes: String?
    /// `ssh: {address, port, user}`: where its sshd is (KA_CONFIG may override each field).
    package let ssh: SSHEndpointSpec?

    package var isInfra: Bool { roles.contains(.infra) }
    package var rolesText: String {
        HostRole.allCases.filter { roles.contains($0) }.map { r in
            r == .build ? "build(\(buildTier?.rawValue ?? "?"))" : r.rawValue
        }.joined(separator: ",")
    }
}

/// `fleet/hosts.yaml`: every host the seed names, and the build routing per architecture.
package struct HostRegistry: Sendable {
    package let hosts: [HostName: HostEntry]
    package let routing: [CPUArch: [HostName]]
    /// Where the hosts are listed: `fleet/hosts.yaml`, or, derived, the manifests and KA_CONFIG.
    package let file: String
    /// Derived from the manifests (no `fleet/hosts.yaml`): see `HostRegistry.derive`.
    package var derived: Bool = false

    /// Where a person adds a host or a build route, in words that fit how this registry was made.
    package var whereToAddHosts: String {
        derived ? "add fleet/<host>.yaml for a target, build_host: {primary: …} in a manifest for a build host, or hosts.<host> in KA_CONFIG (ka help fleet)"
                : "hosts are listed in \(file)"
    }

    package func entry(_ host: HostName, context: String? = nil) throws -> HostEntry {
        guard let e = hosts[host] else {
            let near = hosts.keys.map(\.value).min { editDistance($0, host.value) < editDistance($1, host.value) }
            var hint = whereToAddHosts
            if let near, editDistance(near, host.value) <= 2 { hint = "did you mean '\(near)'? " + hint }
            throw KAError.refusal(context ?? "host '\(host)'", "unknown host (not in \(file))", hint: hint)
        }
        return e
    }

    /// The build hosts for an arch, in routing order.
    package func buildRoute(for arch: CPUArch) -> [HostName] { routing[arch] ?? [] }

    /// `fleet/hosts.yaml` when the checkout has one; else the registry derived from the manifests and KA_CONFIG.
    package static func load(_ ws: Workspace, env: [String: String] = ProcessInfo.processInfo.environment) throws -> HostRegistry {
        try load(ws, settings: { try Settings.load(env: env, stateDir: ws.stateDir) })
    }

    /// `settings` is read only when there is no registry file to read.
    package static func load(_ ws: Workspace, settings: () throws -> Settings) throws -> HostRegistry {
        let display = ws.display(ws.registryFile)
        guard FS.exists(ws.registryFile) else {
            let s = try settings()
            return try derive(ws, agent: s.agent, pipeline: s.pipeline)
        }
        let bytes = try FS.read(try ws.confine(ws.registryFile, within: ws.fleetDir), display: display, limit: YAMLValue.maxFileBytes)
        return try parsed.value(for: bytes, file: display) { try parse(String(decoding: bytes, as: UTF8.self), file: display) }
    }

    /// The last registry parsed, by its exact bytes: `ka serve` plans every comment against the same hosts.yaml,
    /// and parsing it was a quarter of a plan's CPU (bench-replies). A changed byte parses again.
    static let parsed = LastParsed<HostRegistry>()

    package static func parse(_ text: String, file: String) throws -> HostRegistry {
        let doc = try YAMLValue.parse(text, file: file)
        let top = try doc.mapping(allowed: ["hosts", "routing"])
        var hosts: [HostName: HostEntry] = [:]
        guard case let .mapping(hm) = try top.required("hosts").node else {
            throw try top.required("hosts").error("expected a mapping of host name → entry")
        }
        for (k, v) in hm {
            let keyValue = YAMLValue(node: k, file: file, keyPath: "hosts")
            let raw = try keyValue.string()
            let name: HostName
            do { name = try HostName(raw) } catch let e as KAError { throw keyValue.error(e.message) }
            let entryValue = YAMLValue(node: v, file: file, keyPath: "hosts.\(raw)")
            let m = try entryValue.mapping(allowed: ["roles", "arch", "distro", "wake", "build_tier", "runs_on", "notes", "idle_release", "wake_via", "ssh"])
            var roles = Set<HostRole>()
            for r in try m.required("roles").sequence() {
                guard let role = HostRole(rawValue: try r.string()) else {
                    throw r.error("unknown role '\(try r.string())'", hint: "roles: \(HostRole.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                roles.insert(role)
            }
            let archV = try m.required("arch")
            guard let arch = CPUArch(rawValue: try archV.string()) else {
                throw archV.error("unknown arch", hint: "one of \(CPUArch.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            let distroV = try m.required("distro")
            guard let distro = Distro(rawValue: try distroV.string()) else {
                throw distroV.error("unknown distro", hint: "one of \(Distro.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            let wakeV = try m.required("wake")
            let wake: WakePolicy
            switch try wakeV.string() {
            case "always": wake = .alwaysOn
            case "on-demand":
                let idle = try m["idle_release"].map { try Duration.minutes(from: $0) } ?? 30
                wake = .onDemand(via: try m["wake_via"]?.string() ?? "his", idleReleaseMinutes: idle)
            default: throw wakeV.error("unknown wake policy", hint: "use 'always' or 'on-demand' (with idle_release: 30m)")
            }
            var tier: BuildTier?
            if let t = m["build_tier"] {
                guard let bt = BuildTier(rawValue: try t.string()) else {
                    throw t.error("unknown build tier", hint: "one of primary, secondary, fallback")
                }
                tier = bt
            }
            if roles.contains(.build) && tier == nil { throw entryValue.error("a build host needs build_tier") }
            let runsOn = try m["runs_on"].map { v in
                do { return try HostName(try v.string()) } catch let e as KAError { throw v.error(e.message) }
            }
            hosts[name] = HostEntry(name: name, roles: roles, arch: arch, distro: distro, wake: wake,
                                    buildTier: tier, runsOn: runsOn, notes: try m["notes"]?.string(),
                                    ssh: try m["ssh"].map(SSHEndpointSpec.parse))
        }
        var routing: [CPUArch: [HostName]] = [:]
        if let r = top["routing"] {
            let rm = try r.mapping(allowed: Set(CPUArch.allCases.map(\.rawValue)))
            for key in rm.keys {
                guard let arch = CPUArch(rawValue: key), let list = rm[key] else { continue }
                routing[arch] = try list.sequence().map { v in
                    let n: HostName
                    do { n = try HostName(try v.string()) } catch let e as KAError { throw v.error(e.message) }
                    guard let h = hosts[n] else { throw v.error("routing names unknown host '\(n)'") }
                    guard h.roles.contains(.build) else { throw v.error("routing names '\(n)', which has no build role") }
                    return n
                }
            }
        }
        for (name, h) in hosts {
            if let on = h.runsOn, hosts[on] == nil {
                throw KAError.refusal("\(file): hosts.\(name).runs_on", "unknown host '\(on)'")
            }
        }
        return HostRegistry(hosts: hosts, routing: routing, file: file)
    }
}

extension HostRegistry {
    /// The label a derived registry gives itself in messages.
    package static let derivedFile = "the fleet (derived from fleet/*.yaml and KA_CONFIG; no fleet/hosts.yaml)"

    /// The registry of a checkout without `fleet/hosts.yaml` (the user's own repo has none):
    /// - every `fleet/<host>.yaml` is a target;
    /// - the hosts a manifest names in `build_host.primary` / `build_host.fallback` are build hosts of that tier,
    ///   routed for their targets' arch, primaries before fallbacks;
    /// - the infra hosts the design names keep the infra role (a manifest of theirs needs `infra_opt_in`);
    /// - KA_CONFIG's `signing.host` signs, its `logs.host` and every `hosts.<name>` are hosts too, and
    ///   `hosts.<name>.{arch, distro}` set what no manifest says (default aarch64, arch: the user's fleet).
    /// A manifest that does not parse still makes its host a target: the verb that reads it reports the error.
    package static func derive(_ ws: Workspace, agent: AgentConfig, pipeline: PipelineConfig) throws -> HostRegistry {
        struct Draft { var roles = Set<HostRole>(); var tier: BuildTier?; var arch: CPUArch?; var distro: Distro?; var notes: [String] = [] }
        var drafts: [HostName: Draft] = [:]
        var routeOrder: [(HostName, BuildTier, CPUArch?)] = []
        let manifests = Fleet.manifestHosts(ws)
        var parsed: [HostName: Manifest] = [:]
        for host in manifests {
            drafts[host, default: Draft()].roles.insert(.target)
            drafts[host, default: Draft()].notes.append("target: \(ws.display(ws.manifestFile(host)))")
            // parse errors surface in the verb that needs the manifest, with their line
            if let m = try? Manifest.load(host, in: ws) { parsed[host] = m }   // try? on purpose: see above
        }
        for (name, h) in agent.hosts {
            if let a = h.arch { drafts[name, default: Draft()].arch = a }
            if let d = h.distro { drafts[name, default: Draft()].distro = d }
            if drafts[name] == nil { drafts[name] = Draft() }
        }
        func archOf(_ h: HostName) -> CPUArch { drafts[h]?.arch ?? .aarch64 }
        for host in manifests {
            guard let own = parsed[host]?.buildHosts else { continue }
            for (i, raw) in ([own.primary] + own.fallback).enumerated() {
                guard let b = try? HostName(raw) else { continue }   // Manifest.parse refuses a bad name already
                let tier: BuildTier = i == 0 ? .primary : .fallback
                var d = drafts[b, default: Draft()]
                d.roles.insert(.build)
                if d.tier != .primary { d.tier = tier }
                if d.arch == nil && !d.roles.contains(.target) { d.arch = archOf(host) }
                d.notes.append("build (\(tier.rawValue)) for \(host)")
                drafts[b] = d
                routeOrder.append((b, tier, archOf(host)))
            }
        }
        if let signer = pipeline.signing?.host {
            drafts[signer, default: Draft()].roles.insert(.signing)
            drafts[signer, default: Draft()].notes.append("signing (KA_CONFIG signing.host)")
        }
        if let logs = pipeline.logs?.host, drafts[logs] == nil { drafts[logs] = Draft() }
        for name in drafts.keys where Policy.infraHosts.contains(name.value) { drafts[name]?.roles.insert(.infra) }
        var hosts: [HostName: HostEntry] = [:]
        for (name, d) in drafts {
            hosts[name] = HostEntry(name: name, roles: d.roles, arch: d.arch ?? .aarch64, distro: d.distro ?? .arch, wake: .alwaysOn,
                                    buildTier: d.roles.contains(.build) ? (d.tier ?? .primary) : nil, runsOn: nil,
                                    notes: d.notes.isEmpty ? nil : d.notes.joined(separator: "; "), ssh: nil)
        }
        var routing: [CPUArch: [HostName]] = [:]
        for tier in [BuildTier.primary, .fallback] {
            for (h, t, arch) in routeOrder where t == tier {
                let a = arch ?? .aarch64
                if !(routing[a] ?? []).contains(h) { routing[a, default: []].append(h) }
            }
        }
        var registry = HostRegistry(hosts: hosts, routing: routing, file: derivedFile)
        registry.derived = true
        return registry
    }
}

package enum Duration {
    /// `30m`, `6h`, `2d` or plain minutes.
    package static func minutes(from v: YAMLValue) throws -> Int {
        let s = try v.string()
        guard let m = parseMinutes(s) else { throw v.error("bad duration '\(s)'", hint: "use e.g. 30m, 6h or 1d") }
        return m
    }

    /// `30s`, `30m`, `6h`, `2d` or plain minutes, as seconds; nil for anything else, including a count too
    /// large to hold in seconds (the text comes from hosts.yaml, ka.yaml and the command line).
    package static func parseSeconds(_ s: String) -> Int? {
        let units: [Character: Int] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        var digits = Substring(s), unit = 60
        if let last = s.last, let u = units[last] { digits = digits.dropLast(); unit = u }
        guard !digits.isEmpty, digits.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let n = Int(digits) else { return nil }
        let (seconds, overflow) = n.multipliedReportingOverflow(by: unit)
        return overflow ? nil : seconds
    }

    package static func parseMinutes(_ s: String) -> Int? { parseSeconds(s).map { $0 / 60 } }
}
