import Foundation

/// The transports of a `ka` process: the fleet's OpenSSH transports (`FleetTransports`: fleet/hosts.yaml and
/// `KA_CONFIG`), loaded on first use, so a verb that reaches no host never reads the ssh config.
package enum HostTransports {
    package static func fromEnvironment(_ ws: Workspace,
                                       env: [String: String] = ProcessInfo.processInfo.environment) throws -> any TransportProvider {
        lazy(ws, settings: SettingsSource { try Settings.load(env: env, stateDir: ws.stateDir) })
    }

    /// The fleet's transports, made on first use from `settings` (shared with the context that holds them).
    package static func lazy(_ ws: Workspace, settings: SettingsSource) -> any TransportProvider {
        LazyTransports(workspace: ws, settings: settings)
    }
}

struct LazyTransports: TransportProvider {
    let workspace: Workspace
    let settings: SettingsSource
    private let fleet = Memo<FleetTransports>()

    init(workspace: Workspace, settings: SettingsSource) { self.workspace = workspace; self.settings = settings }

    func transport(for host: HostName) throws -> any HostTransport {
        try fleet.value {
            let s = try settings.get()
            return try FleetTransports(registry: try HostRegistry.load(workspace, settings: { s }), config: s.agent, stateDir: workspace.stateDir)
        }.transport(for: host)
    }
}
