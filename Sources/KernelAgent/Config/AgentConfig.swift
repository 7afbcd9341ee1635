import Foundation

/// A host's ssh endpoint as one file states it; any field may be left to another file or the default.
package struct SSHEndpointSpec: Sendable, Equatable {
    package var address: String?
    package var port: Int?
    package var user: String?
    /// `file:line:column` of the `ssh:` mapping, for errors about the merged result.
    package var origin: String

    package init(address: String? = nil, port: Int? = nil, user: String? = nil, origin: String) {
        self.address = address; self.port = port; self.user = user; self.origin = origin
    }

    /// `ssh: {address, port, user}`; each value checked where it stands.
    package static func parse(_ value: YAMLValue) throws -> SSHEndpointSpec {
        let m = try value.mapping(allowed: ["address", "port", "user"])
        var spec = SSHEndpointSpec(origin: value.location.description)
        if let a = m["address"] {
            let text = try a.string()
            guard SSHEndpoint.isValidAddress(text) else {
                throw a.error("'\(text)' is not an IP address or host name", hint: "e.g. 10.213.77.14 or fresnel.lan, without user@ or :port")
            }
            spec.address = text
        }
        if let p = m["port"] {
            let port = try p.int()
            guard (1...65535).contains(port) else { throw p.error("expected a port number 1…65535, found \(port)") }
            spec.port = port
        }
        if let u = m["user"] {
            let text = try u.string()
            guard SSHEndpoint.isValidUser(text) else {
                throw u.error("'\(text)' is not a valid login name", hint: "lowercase letters, digits, '_' and '-', e.g. \(SSHEndpoint.defaultUser)")
            }
            spec.user = text
        }
        return spec
    }

    /// `other`'s fields win where it has them.
    package func overridden(by other: SSHEndpointSpec?) -> SSHEndpointSpec {
        guard let other else { return self }
        return SSHEndpointSpec(address: other.address ?? address, port: other.port ?? port, user: other.user ?? user,
                               origin: other.origin)
    }
}

/// The agent's config file, named by `KA_CONFIG` (YAML): the same file `ka serve --config` reads. This type reads
/// the `ssh:` and `hosts:` sections; the control plane's keys and the sections later verbs read (`baseline:`,
/// `signing:`, and `his:`, which HisConfig reads) are left to them.
///
/// ```yaml
/// ssh:
///   dir: /var/lib/kernel-agent/ssh          # default <state_dir>/ssh
///   identity_file: …/id_ed25519             # default <dir>/id_ed25519
///   known_hosts: …/known_hosts              # default <dir>/known_hosts
///   config_file: …/ssh_config               # optional (ssh -F); default: none (-F /dev/null)
///   connect_timeout: 10                     # seconds (or 10s, 1m); also server_alive_interval,
///   server_alive_count_max: 3               # control_persist
/// hosts:
///   fresnel:
///     ssh: {address: 10.213.77.14, port: 22, user: kbuild}   # overrides fleet/hosts.yaml per field
///     privilege_command: [sudo, -n]
///     stock_kernel: linux-eos-arm
/// ```
package struct AgentConfig: Sendable {
    package struct SSH: Sendable, Equatable {
        package var dir: String
        package var identityFile: String
        package var knownHosts: String
        package var configFile: String?
        package var connectTimeout: Int?
        package var serverAliveInterval: Int?
        package var serverAliveCountMax: Int?
        package var controlPersist: Int?
    }

    package struct Host: Sendable {
        package var ssh: SSHEndpointSpec?
        /// How a command gets root on the host, e.g. `[sudo, -n]`.
        package var privilegeCommand: [String]?
        /// The distribution's own kernel package, which an install leaves alone.
        package var stockKernel: String?
        /// For a checkout without fleet/hosts.yaml: what no manifest says (the derived registry's defaults otherwise).
        package var arch: CPUArch?
        package var distro: Distro?
        /// `cross_compile: {aarch64: aarch64-linux-gnu-}`: the toolchain prefix this build host uses for a target
        /// of another arch (default: the arch's `<arch>-linux-gnu-`).
        package var crossCompile: [CPUArch: String] = [:]
        package var origin: String
    }

    /// The file it came from (nil: no KA_CONFIG, all defaults).
    package let file: String?
    package var ssh: SSH
    package var hosts: [HostName: Host]

    /// The sections this type reads.
    package static let ownSections: Set<String> = ["ssh", "hosts"]
    /// Top-level keys other readers of the same file own: later verbs' sections and `ka serve`'s keys
    /// (KAControlPlane's `ControlPlaneConfig.keys`; a test keeps the two lists equal).
    package static let otherSections: Set<String> = ["baseline", "signing", "build", "his", "install", "logs"]
    package static let controlPlaneKeys: Set<String> = [
        "gitea_url", "repo", "bot_login", "listen", "poll_interval", "state_dir", "root", "consent_ttl",
        "max_parallel_runs", "reminder_cap", "allow", "max_commands_per_comment", "reply_rate_limit", "plan_timeout", "outbox_parallel",
        "webhook_url",
    ]
    package static var topLevelKeys: Set<String> { ownSections.union(otherSections).union(controlPlaneKeys) }

    static let sshKeys: Set<String> = ["dir", "identity_file", "known_hosts", "config_file", "connect_timeout",
                                       "server_alive_interval", "server_alive_count_max", "control_persist"]
    static let hostKeys: Set<String> = ["ssh", "privilege_command", "stock_kernel", "arch", "distro", "cross_compile"]

    /// No file: every default, under the state dir.
    package static func defaults(stateDir: URL) -> AgentConfig {
        AgentConfig(file: nil, ssh: defaultSSH(dir: stateDir.appendingPathComponent("ssh").path), hosts: [:])
    }

    static func defaultSSH(dir: String) -> SSH {
        SSH(dir: dir, identityFile: dir + "/id_ed25519", knownHosts: dir + "/known_hosts", configFile: nil)
    }

    /// The file `KA_CONFIG` names, or the defaults when it is unset.
    package static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment,
                                       stateDir: URL) throws -> AgentConfig {
        guard let path = env["KA_CONFIG"], !path.isEmpty else { return defaults(stateDir: stateDir) }
        return try load(path, stateDir: stateDir, via: "KA_CONFIG")
    }

    package static func load(_ path: String, stateDir: URL, via: String = "config") throws -> AgentConfig {
        try parse(try readText(path, via: via), file: path, stateDir: stateDir)
    }

    /// The config file's text: a regular file, within the YAML size budget, UTF-8. Every reader of the file
    /// (this one, `PipelineConfig`, `HisConfig`) goes through it, so all refuse the same way.
    static func readText(_ path: String, via: String) throws -> String {
        let data: Data
        switch FS.readRegular(path, limit: YAMLValue.maxFileBytes) {
        case let .success(d): data = d
        case let .failure(problem):
            throw KAError.refusal("\(via) \(path)", problem.message, hint: problem.hint ?? "point \(via) at the agent's YAML config file")
        }
        guard let text = String(data: data, encoding: .utf8) else { throw KAError.refusal("\(path):1:1", "not UTF-8 text") }
        return text
    }

    /// `home`: the $HOME no ssh path may lie under (the environment's, unless a test says otherwise).
    package static func parse(_ text: String, file: String, stateDir: URL,
                             home: String? = ProcessInfo.processInfo.environment["HOME"]) throws -> AgentConfig {
        let doc = try YAMLValue.parse(text, file: file)
        let top = try doc.mapping(allowed: topLevelKeys)
        var config = AgentConfig(file: file, ssh: defaults(stateDir: stateDir).ssh, hosts: [:])
        if let s = top["ssh"] { config.ssh = try parseSSH(s, stateDir: stateDir, home: home) }
        if let h = top["hosts"] { config.hosts = try parseHosts(h) }
        return config
    }

    static func parseSSH(_ value: YAMLValue, stateDir: URL, home: String?) throws -> SSH {
        let m = try value.mapping(allowed: sshKeys)
        func path(_ key: String) throws -> String? {
            guard let v = m[key] else { return nil }
            let text = try v.string()
            do {
                try SSHSettings.checkPath(text, key)
                // never $HOME (~/.ssh above all): the agent has its own key, known_hosts and config, in its state dir
                try Policy.refuseHome(URL(fileURLWithPath: text), shown: "ssh.\(key) '\(text)'", root: stateDir, home: home)
            } catch let e as KAError { throw v.error(e.message, hint: e.hint) }
            return text
        }
        func seconds(_ key: String, _ range: ClosedRange<Int>) throws -> Int? {
            guard let v = m[key] else { return nil }
            let text = try v.string()
            let n = text.utf8.allSatisfy(NameBytes.isDigit) ? Int(text) : Duration.parseSeconds(text)
            guard let n, range.contains(n) else {
                throw v.error("expected seconds in \(range.lowerBound)…\(range.upperBound), found '\(text)'", hint: "e.g. 10 or 10s or 1m")
            }
            return n
        }
        var ssh = defaultSSH(dir: try path("dir") ?? stateDir.appendingPathComponent("ssh").path)
        if let p = try path("identity_file") { ssh.identityFile = p }
        if let p = try path("known_hosts") { ssh.knownHosts = p }
        ssh.configFile = try path("config_file")
        ssh.connectTimeout = try seconds("connect_timeout", 1...3600)
        ssh.serverAliveInterval = try seconds("server_alive_interval", 1...3600)
        if let v = m["server_alive_count_max"] {
            let n = try v.int()
            guard (1...100).contains(n) else { throw v.error("expected a count 1…100, found \(n)") }
            ssh.serverAliveCountMax = n
        }
        ssh.controlPersist = try seconds("control_persist", 1...86400)
        return ssh
    }

    static func parseHosts(_ value: YAMLValue) throws -> [HostName: Host] {
        guard case let .mapping(hm) = value.node else { throw value.error("expected a mapping of host name → settings") }
        var hosts: [HostName: Host] = [:]
        for (k, v) in hm {
            let keyValue = YAMLValue(node: k, file: value.file, keyPath: "hosts")
            let raw = try keyValue.string()
            let name: HostName
            do { name = try HostName(raw) } catch let e as KAError { throw keyValue.error(e.message, hint: e.hint) }
            let entryValue = YAMLValue(node: v, file: value.file, keyPath: "hosts.\(raw)")
            let m = try entryValue.mapping(allowed: hostKeys)
            var host = Host(origin: keyValue.location.description)
            if let s = m["ssh"] { host.ssh = try SSHEndpointSpec.parse(s) }
            if let p = m["privilege_command"] {
                let argv = try p.stringList()
                guard !argv.isEmpty, argv.allSatisfy({ !$0.isEmpty }) else { throw p.error("expected an argv such as [sudo, -n]") }
                host.privilegeCommand = argv
            }
            if let s = m["stock_kernel"] { host.stockKernel = try s.string() }
            if let a = m["arch"] {
                guard let arch = CPUArch(rawValue: try a.string()) else {
                    throw a.error("unknown arch", hint: "one of \(CPUArch.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                host.arch = arch
            }
            if let d = m["distro"] {
                guard let distro = Distro(rawValue: try d.string()) else {
                    throw d.error("unknown distro", hint: "one of \(Distro.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                host.distro = distro
            }
            if let c = m["cross_compile"] {
                let cm = try c.mapping(allowed: Set(CPUArch.allCases.map(\.rawValue)))
                for arch in CPUArch.allCases {
                    guard let v = cm[arch.rawValue] else { continue }
                    let prefix = try v.string()
                    // it becomes CROSS_COMPILE, a word of every compiler command
                    guard !prefix.isEmpty, prefix.utf8.count <= 64, prefix.hasSuffix("-"),
                          prefix.unicodeScalars.allSatisfy({ $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "-_.".unicodeScalars.contains($0)) }) else {
                        throw v.error("'\(prefix)' is not a toolchain prefix", hint: "e.g. \(arch.defaultCrossPrefix) (letters, digits, '-', '_', '.', ending in '-')")
                    }
                    host.crossCompile[arch] = prefix
                }
            }
            hosts[name] = host
        }
        return hosts
    }

    /// The ssh settings for the transports: the files from this config, the sockets and logs under the state dir.
    package func sshSettings(stateDir: URL) -> SSHSettings {
        let sshState = stateDir.appendingPathComponent("ssh")
        var s = SSHSettings(configFile: ssh.configFile, identityFile: ssh.identityFile, knownHosts: ssh.knownHosts,
                            controlDir: sshState.appendingPathComponent("cm").path, logDir: sshState.appendingPathComponent("log").path)
        if let v = ssh.connectTimeout { s.connectTimeout = v }
        if let v = ssh.serverAliveInterval { s.serverAliveInterval = v }
        if let v = ssh.serverAliveCountMax { s.serverAliveCountMax = v }
        if let v = ssh.controlPersist { s.controlPersist = v }
        return s
    }
}

extension AgentConfig.Host {
    init(origin: String) { self.init(ssh: nil, privilegeCommand: nil, stockKernel: nil, arch: nil, distro: nil, origin: origin) }
}
