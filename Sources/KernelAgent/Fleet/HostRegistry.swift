import Foundation

public enum HostRole: String, CaseIterable, Sendable {
    case target, build, signing, infra
    case compileOnly = "compile-only"
}

public enum BuildTier: String, CaseIterable, Sendable { case primary, secondary, fallback }

public enum Distro: String, CaseIterable, Sendable { case arch, debian }

public enum CPUArch: String, CaseIterable, Sendable { case aarch64, x86_64 }

public enum WakePolicy: Equatable, Sendable, CustomStringConvertible {
    case alwaysOn
    /// Woken through His (`wake-host`), released after `idleReleaseMinutes` without work.
    case onDemand(via: String, idleReleaseMinutes: Int)

    public var description: String {
        switch self {
        case .alwaysOn: return "always on"
        case let .onDemand(via, idle): return "on demand via \(via), idle release \(idle) min"
        }
    }
}

public struct HostEntry: Sendable {
    public let name: HostName
    public let roles: Set<HostRole>
    public let arch: CPUArch
    public let distro: Distro
    public let wake: WakePolicy
    public let buildTier: BuildTier?
    /// For containers: the machine that carries it (fermi on hertz, kbuild-x86 on data).
    public let runsOn: HostName?
    public let notes: String?
    /// `ssh: {address, port, user}`: where its sshd is (KA_CONFIG may override each field).
    public let ssh: SSHEndpointSpec?

    public var isInfra: Bool { roles.contains(.infra) }
    public var rolesText: String {
        HostRole.allCases.filter { roles.contains($0) }.map { r in
            r == .build ? "build(\(buildTier?.rawValue ?? "?"))" : r.rawValue
        }.joined(separator: ",")
    }
}

/// `fleet/hosts.yaml`: every host the seed names, and the build routing per architecture.
public struct HostRegistry: Sendable {
    public let hosts: [HostName: HostEntry]
    public let routing: [CPUArch: [HostName]]
    public let file: String

    public func entry(_ host: HostName, context: String? = nil) throws -> HostEntry {
        guard let e = hosts[host] else {
            let near = hosts.keys.map(\.value).min { editDistance($0, host.value) < editDistance($1, host.value) }
            var hint = "hosts are listed in \(file)"
            if let near, editDistance(near, host.value) <= 2 { hint = "did you mean '\(near)'? " + hint }
            throw KAError.refusal(context ?? "host '\(host)'", "unknown host (not in \(file))", hint: hint)
        }
        return e
    }

    /// The build hosts for an arch, in routing order.
    public func buildRoute(for arch: CPUArch) -> [HostName] { routing[arch] ?? [] }

    public static func load(_ ws: Workspace) throws -> HostRegistry {
        let display = ws.display(ws.registryFile)
        guard FS.exists(ws.registryFile) else {
            throw KAError.refusal(display, "missing fleet registry", hint: "create \(display) (see fleet/README.md)")
        }
        let bytes = try FS.read(try ws.confine(ws.registryFile, within: ws.fleetDir), display: display, limit: YAMLValue.maxFileBytes)
        return try parsed.value(for: bytes, file: display) { try parse(String(decoding: bytes, as: UTF8.self), file: display) }
    }

    /// The last registry parsed, by its exact bytes: `ka serve` plans every comment against the same hosts.yaml,
    /// and parsing it was a quarter of a plan's CPU (bench-replies). A changed byte parses again.
    static let parsed = LastParsed<HostRegistry>()

    public static func parse(_ text: String, file: String) throws -> HostRegistry {
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

public enum Duration {
    /// `30m`, `6h`, `2d` or plain minutes.
    public static func minutes(from v: YAMLValue) throws -> Int {
        let s = try v.string()
        guard let m = parseMinutes(s) else { throw v.error("bad duration '\(s)'", hint: "use e.g. 30m, 6h or 1d") }
        return m
    }

    /// `30s`, `30m`, `6h`, `2d` or plain minutes, as seconds; nil for anything else, including a count too
    /// large to hold in seconds (the text comes from hosts.yaml, ka.yaml and the command line).
    public static func parseSeconds(_ s: String) -> Int? {
        let units: [Character: Int] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        var digits = Substring(s), unit = 60
        if let last = s.last, let u = units[last] { digits = digits.dropLast(); unit = u }
        guard !digits.isEmpty, digits.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let n = Int(digits) else { return nil }
        let (seconds, overflow) = n.multipliedReportingOverflow(by: unit)
        return overflow ? nil : seconds
    }

    public static func parseMinutes(_ s: String) -> Int? { parseSeconds(s).map { $0 / 60 } }
}
