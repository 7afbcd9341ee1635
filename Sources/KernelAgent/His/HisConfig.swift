import Foundation

/// KA_CONFIG's `his:` section: where His's ops tools are served (lmcp, MCP 2025-06-18).
///
/// ```yaml
/// his:
///   url: http://hertz:8090/mcp        # Streamable HTTP (JSON responses), or:
///   command: [lmcp, --stdio]          # stdio: argv of a process kernel-agent starts (exactly one of url/command)
///   token_env: KA_HIS_TOKEN           # url only: the environment variable holding the Bearer token
///   call_timeout: 20                  # seconds (or 20s, 1m): the hard wall-clock cap of one call, connect included
///   host_argument: host               # the argument naming the host (the lmcp hub fans tools out by `host`)
/// ```
package struct HisConfig: Sendable, Equatable {
    package enum Transport: Sendable, Equatable {
        case http(url: URL, tokenEnv: String?)
        case stdio(command: [String])
    }

    package var transport: Transport
    package var callTimeout: Int
    package var hostArgument: String
    /// `file:line:column` of the `his:` mapping.
    package var origin: String

    package static let defaultCallTimeout = 20
    package static let defaultHostArgument = "host"
    static let keys: Set<String> = ["url", "command", "token_env", "call_timeout", "host_argument"]

    package init(transport: Transport, callTimeout: Int = defaultCallTimeout, hostArgument: String = defaultHostArgument,
                origin: String) {
        self.transport = transport; self.callTimeout = callTimeout; self.hostArgument = hostArgument; self.origin = origin
    }

    /// The `his:` section of the config file at `path`, or nil when it has none.
    package static func load(_ path: String, via: String = "config") throws -> HisConfig? {
        let text = try AgentConfig.readText(path, via: via)
        let top = try YAMLValue.parse(text, file: path).mapping(allowed: AgentConfig.topLevelKeys)
        return try top["his"].map(parse)
    }

    package static func parse(_ value: YAMLValue) throws -> HisConfig {
        let m = try value.mapping(allowed: keys)
        let transport: Transport
        switch (m["url"], m["command"]) {
        case let (url?, nil):
            let text = try url.string()
            guard let parsed = URL(string: text), ["http", "https"].contains(parsed.scheme?.lowercased() ?? ""),
                  let host = parsed.host, !host.isEmpty else {
                throw url.error("'\(text)' is not an http(s) URL", hint: "e.g. http://hertz:8090/mcp")
            }
            var tokenEnv: String?
            if let t = m["token_env"] {
                let name = try t.string()
                guard isEnvironmentName(name) else {
                    throw t.error("'\(name)' is not an environment variable name", hint: "e.g. KA_HIS_TOKEN (letters, digits, '_')")
                }
                tokenEnv = name
            }
            transport = .http(url: parsed, tokenEnv: tokenEnv)
        case let (nil, command?):
            let argv = try command.stringList()
            guard let first = argv.first, !first.isEmpty, argv.allSatisfy({ !$0.contains("\0") }) else {
                throw command.error("expected an argv such as [lmcp, --stdio]")
            }
            if let t = m["token_env"] {
                throw t.error("token_env goes with url (a stdio command is not sent a token)", hint: "remove token_env, or use url")
            }
            transport = .stdio(command: argv)
        case (.some, .some):
            throw value.error("both url and command are set", hint: "his: takes exactly one of url (Streamable HTTP) or command (stdio)")
        case (nil, nil):
            throw value.error("neither url nor command is set", hint: "e.g. url: http://hertz:8090/mcp, or command: [lmcp, --stdio]")
        }
        var config = HisConfig(transport: transport, origin: value.location.description)
        if let v = m["call_timeout"] {
            let text = try v.string()
            let n = text.utf8.allSatisfy(NameBytes.isDigit) ? Int(text) : Duration.parseSeconds(text)
            guard let n, (1...600).contains(n) else {
                throw v.error("expected seconds in 1…600, found '\(text)'", hint: "e.g. 20 or 20s or 1m")
            }
            config.callTimeout = n
        }
        if let v = m["host_argument"] {
            let name = try v.string()
            guard !name.isEmpty, name.utf8.count <= 64,
                  name.utf8.allSatisfy({ NameBytes.isDigit($0) || NameBytes.isLower($0) || NameBytes.isUpper($0) || $0 == 0x5f || $0 == 0x2d }) else {
                throw v.error("'\(name)' is not a tool argument name", hint: "e.g. host")
            }
            config.hostArgument = name
        }
        return config
    }

    static func isEnvironmentName(_ s: String) -> Bool {
        guard let first = s.utf8.first, !NameBytes.isDigit(first), s.utf8.count <= 128 else { return false }
        return s.utf8.allSatisfy { NameBytes.isDigit($0) || NameBytes.isLower($0) || NameBytes.isUpper($0) || $0 == 0x5f }
    }

    /// "His (http://hertz:8090/mcp)" or "His (stdio: lmcp --stdio)": how every note and error names His.
    package var endpoint: String {
        switch transport {
        case let .http(url, _): return "His (\(url.absoluteString))"
        case let .stdio(command): return "His (stdio: \(command.joined(separator: " ")))"
        }
    }
}
