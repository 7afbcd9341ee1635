import Foundation

/// What His says of a host's power.
package enum HostPower: String, Sendable, Codable { case up, asleep, unknown }

/// The tools His serves for kernel-agent (the seed: "wake-host, host-status, prepare-build-host").
package enum HisTool: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case hostStatus = "host-status"
    case wakeHost = "wake-host"
    case prepareBuildHost = "prepare-build-host"
    /// Not one of the three the seed names: His may offer it; an idle on-demand host is handed back with it.
    case releaseHost = "release-host"
    package var description: String { rawValue }
}

/// His's ops for hosts the agent does not own (seed: "His provisions; agent consumes").
package protocol HisOps: Sendable {
    func hostStatus(_ host: HostName) async throws -> HostPower      // tool host-status
    func wakeHost(_ host: HostName) async throws -> String           // tool wake-host: His's one-line answer
    func prepareBuildHost(_ host: HostName) async throws -> String   // tool prepare-build-host
    func releaseHost(_ host: HostName) async throws -> String        // tool release-host (optional: a missing tool is a refusal)
    /// Shown in every note and error, e.g. "His (http://127.0.0.1:8091/mcp)".
    var endpoint: String { get }
}

package enum HisClients {
    /// His as KA_CONFIG's `his:` section describes it; nil when there is no such section.
    ///
    /// `allowDestructive` names the tools whose annotations mark them destructive that this client may call. Only
    /// a step that its plan lists passes one (the build's "prepare the build host" step passes
    /// `[.prepareBuildHost]`); a destructive tool not named here is refused before anything is sent to His.
    package static func fromEnvironment(_ ws: Workspace, env: [String: String] = ProcessInfo.processInfo.environment,
                                       allowDestructive: Set<HisTool> = []) throws -> (any HisOps)? {
        try Settings.load(env: env, stateDir: ws.stateDir).hisClient(allowDestructive: allowDestructive)
    }
}

/// The errors every His client throws, the real one and the fake alike, so that callers and tests see one wording.
package enum HisErrors {
    static func call(_ tool: HisTool, _ host: HostName) -> String { "\(tool) \(host)" }

    /// `peer`: what a stdio peer had done by then (its CPU time, its unread answer), which tells a slow His from a
    /// client that never read what His wrote.
    package static func timedOut(_ endpoint: String, _ tool: HisTool, _ host: HostName, cap: Int, peer: String? = nil) -> KAError {
        KAError.failure(endpoint, call(tool, host), "no answer within the \(cap) s cap (his.call_timeout); the call was cancelled"
                        + (peer.map { " (\($0))" } ?? ""),
                        hint: "check that His is alive; raise his.call_timeout in KA_CONFIG only if His is slow, not stuck")
    }

    package static func unreachable(_ endpoint: String, _ tool: HisTool, _ host: HostName, _ detail: String) -> KAError {
        KAError.failure(endpoint, call(tool, host), "His is unreachable: \(detail)",
                        hint: "check that His runs and that his.url / his.command in KA_CONFIG name it")
    }

    package static func destructiveRefused(_ endpoint: String, _ tool: HisTool, _ host: HostName) -> KAError {
        KAError.refusal(endpoint, call(tool, host),
                        "His marks '\(tool)' destructive, and this step was not given leave to call it",
                        hint: "only a step that the plan lists may call a destructive His tool (HisClients.fromEnvironment(allowDestructive:))")
    }

    package static func toolFailed(_ endpoint: String, _ tool: HisTool, _ host: HostName, _ text: String) -> KAError {
        KAError.failure(endpoint, call(tool, host), "His answered with an error: \(text.isEmpty ? "(no text)" : text)")
    }

    package static func missingTool(_ endpoint: String, _ tool: HisTool, offered: [String]) -> KAError {
        KAError.refusal(endpoint, "has no tool '\(tool)' (it offers: \(offered.isEmpty ? "none" : offered.sorted().joined(separator: ", ")))",
                        hint: "point his.url / his.command in KA_CONFIG at the lmcp that serves His's ops tools")
    }

    /// host-status's answer as a power state; anything else is an error quoting it.
    static func power(from text: String, _ endpoint: String, _ host: HostName) throws -> HostPower {
        let word = text.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == ":" || $0 == "," }).first.map { $0.lowercased() }
        guard let word, let power = HostPower(rawValue: word) else {
            throw KAError.failure(endpoint, call(.hostStatus, host), "His answered '\(text.prefix(200))', expected up, asleep or unknown")
        }
        return power
    }
}
