import Foundation

/// HostName → transport for the fleet: where each host is comes from `fleet/hosts.yaml` (`hosts.<name>.ssh`),
/// overridden field by field by `KA_CONFIG`'s `hosts.<name>.ssh`; the ssh files from `KA_CONFIG`'s `ssh:`
/// (default `<state_dir>/ssh/`); sockets and call logs under `<state_dir>/ssh/`.
package struct FleetTransports: TransportProvider {
    package let registry: HostRegistry
    package let config: AgentConfig
    package let settings: SSHSettings

    package init(registry: HostRegistry, config: AgentConfig, stateDir: URL) throws {
        for (name, host) in config.hosts where registry.hosts[name] == nil {
            throw KAError.refusal("\(host.origin): hosts.\(name)", "not a host of \(registry.file)",
                                  hint: "KA_CONFIG may only set hosts that \(registry.file) lists")
        }
        self.registry = registry
        self.config = config
        self.settings = config.sshSettings(stateDir: stateDir)
    }

    /// The fleet of a workspace, with `KA_CONFIG` from the environment.
    package static func load(_ workspace: Workspace,
                            env: [String: String] = ProcessInfo.processInfo.environment) throws -> FleetTransports {
        try FleetTransports(registry: try HostRegistry.load(workspace),
                            config: try AgentConfig.fromEnvironment(env, stateDir: workspace.stateDir),
                            stateDir: workspace.stateDir)
    }

    /// The host's endpoint: hosts.yaml's `ssh:`, then KA_CONFIG's, field by field; port 22 and user kbuild unless
    /// one of them says otherwise (root only when written out).
    package func endpoint(for host: HostName) throws -> SSHEndpoint {
        let entry = try registry.entry(host)
        let override = config.hosts[host]?.ssh
        guard let merged = entry.ssh.map({ $0.overridden(by: override) }) ?? override, let address = merged.address else {
            throw KAError.refusal("host \(host)", "no ssh address",
                                  hint: registry.derived ? "give it hosts.\(host).ssh: {address: …} in \(config.file ?? "KA_CONFIG")"
                                                   : "give it ssh: {address: …} in \(registry.file) or hosts.\(host).ssh in \(config.file ?? "KA_CONFIG")")
        }
        do {
            return try SSHEndpoint(address: address, port: merged.port ?? SSHEndpoint.defaultPort, user: merged.user ?? SSHEndpoint.defaultUser)
        } catch let e as KAError {
            throw e.within("\(merged.origin): hosts.\(host).ssh")
        }
    }

    package func openSSH(for host: HostName) throws -> OpenSSHTransport {
        try OpenSSHTransport(host: host, endpoint: try endpoint(for: host), settings: settings)
    }

    package func transport(for host: HostName) throws -> any HostTransport { try openSSH(for: host) }
}
