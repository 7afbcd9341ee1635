import Foundation

/// The transports of a `ka` process: made on first use (a verb that reaches no host never reads the ssh config).
public enum HostTransports {
    public static func fromEnvironment(_ ws: Workspace) throws -> any TransportProvider { LazyTransports(workspace: ws) }
}

struct LazyTransports: TransportProvider {
    let workspace: Workspace
    func transport(for host: HostName) throws -> any HostTransport {
        throw KAError.refusal("host \(host)", "no transport is configured for it",
                              hint: "give it ssh: {address, port, user} in fleet/hosts.yaml or in the KA_CONFIG file")
    }
}
