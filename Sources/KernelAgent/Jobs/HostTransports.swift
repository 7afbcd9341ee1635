import Foundation

/// The transports of a `ka` process: the fleet's OpenSSH transports (`FleetTransports`: fleet/hosts.yaml and
/// `KA_CONFIG`), loaded on first use, so a verb that reaches no host never reads the ssh config.
public enum HostTransports {
    public static func fromEnvironment(_ ws: Workspace,
                                       env: [String: String] = ProcessInfo.processInfo.environment) throws -> any TransportProvider {
        LazyTransports(workspace: ws, env: env)
    }
}

struct LazyTransports: TransportProvider {
    let workspace: Workspace
    let env: [String: String]
    private let fleet = Memo<FleetTransports>()

    init(workspace: Workspace, env: [String: String]) { self.workspace = workspace; self.env = env }

    func transport(for host: HostName) throws -> any HostTransport {
        try fleet.value { try FleetTransports.load(workspace, env: env) }.transport(for: host)
    }
}
