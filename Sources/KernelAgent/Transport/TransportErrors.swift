import Foundation

/// The errors every transport reports, so that a timeout, a cancel or an unreachable host reads the same whatever
/// carried the command. Each names the host and its address first.
package enum TransportError {
    /// `host fresnel (kbuild@10.213.77.14:22)`
    package static func context(_ host: HostName, _ address: String) -> String { "host \(host) (\(address))" }

    package static func timedOut(_ host: HostName, _ address: String, _ what: String, after timeout: Swift.Duration,
                                cleanup: String? = nil) -> KAError {
        var chain = [context(host, address), what, "did not finish within \(seconds(timeout)); killed"]
        if let cleanup { chain.append(cleanup) }
        return KAError(.failure, chain, hint: "the call's hard timeout ended it; if \(host) is slow rather than stuck, give the step a longer timeout")
    }

    /// Whether `e` is a transport's hard timeout (the chain `timedOut` builds).
    package static func isTimeout(_ e: KAError) -> Bool { e.chain.contains { $0.hasPrefix("did not finish within ") } }

    package static func cancelled(_ host: HostName, _ address: String, _ what: String, cleanup: String? = nil) -> KAError {
        var chain = [context(host, address), what, "cancelled; killed"]
        if let cleanup { chain.append(cleanup) }
        return KAError(.failure, chain)
    }

    package static func unreachable(_ host: HostName, _ address: String, _ detail: String, source: String? = nil) -> KAError {
        KAError(.failure, [context(host, address), "unreachable: \(detail)"],
                hint: "check that \(host) is up and that \(address) is its address (\(source ?? "fleet/hosts.yaml or KA_CONFIG hosts.\(host).ssh"))")
    }

    package static func hostKeyRefused(_ host: HostName, _ address: String, _ detail: String, knownHosts: String) -> KAError {
        KAError(.refusal, [context(host, address), "host key refused: \(detail)"],
                hint: "the agent trusts only the keys in \(knownHosts); if \(host) was reinstalled, check its new key out of band "
                    + "(on the host: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then replace its line in that file")
    }

    package static func loginRefused(_ host: HostName, _ address: String, _ detail: String, identity: String) -> KAError {
        KAError(.refusal, [context(host, address), "login refused: \(detail)"],
                hint: "the agent logs in with \(identity); its public key must be in the user's authorized_keys on \(host)")
    }

    package static func failed(_ host: HostName, _ address: String, _ what: String, _ detail: String, hint: String? = nil) -> KAError {
        KAError(.failure, [context(host, address), what, detail], hint: hint)
    }

    /// `2 s`, `1.5 s`, `0.25 s`
    package static func seconds(_ d: Swift.Duration) -> String {
        let (s, atto) = d.components
        if atto == 0 { return "\(s) s" }
        let value = Double(s) + Double(atto) / 1e18
        return "\((value * 1000).rounded() / 1000) s"
    }

    /// How a command is shown in an error: its argv, cut to a readable length.
    package static func shown(_ command: RemoteCommand) -> String {
        let text = command.shown
        let limit = 200
        return "`" + (text.count > limit ? String(text.prefix(limit)) + "…" : text) + "`"
    }
}
