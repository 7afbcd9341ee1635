import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import CKernelAgentShims
import MCP
import NIOConcurrencyHelpers
import SystemPackage

/// His's ops over MCP (modelcontextprotocol/swift-sdk), as lmcp serves them: Streamable HTTP with a Bearer token,
/// or stdio to a process this client starts.
///
/// - One MCP session per client, opened at the first call and kept; a failed or capped call ends it (the stdio
///   process is killed), and the next call opens a new one.
/// - The tools are listed once per client. A tool His does not offer is a refusal; a tool His's annotations mark
///   destructive (MCP: `destructiveHint` true, or absent while `readOnlyHint` is not true) is refused unless it is in
///   `allowDestructive`, before anything is sent.
/// - Every call, connect and listing included, has the hard wall-clock cap `his.call_timeout`.
/// - On Linux the SDK's HTTP transport has no SSE client (no EventSource), so it is used without the GET stream and
///   reads whole POST responses: His must answer with `application/json` (lmcp does; the stand-in runs the Python
///   SDK's `json_response` mode). An SSE-framed answer is not understood there.
package final class MCPHisOps: HisOps {
    /// The protocol version lmcp speaks; sent as `MCP-Protocol-Version` until the handshake settles it.
    package static let protocolVersion = "2025-06-18"

    package let config: HisConfig
    package let endpoint: String
    package let allowDestructive: Set<HisTool>
    private let session: HisSession

    /// `env` supplies the bearer token (`his.token_env`) and the stdio process's environment.
    package init(config: HisConfig, env: [String: String] = ProcessInfo.processInfo.environment,
                allowDestructive: Set<HisTool> = []) throws {
        self.config = config
        endpoint = config.endpoint
        self.allowDestructive = allowDestructive
        var token: String?
        if case let .http(_, tokenEnv?) = config.transport {
            guard let value = env[tokenEnv], !value.isEmpty else {
                throw KAError.refusal("\(config.origin): his.token_env", "the environment variable \(tokenEnv) is not set or empty",
                                      hint: "export \(tokenEnv)=<His's bearer token> before running ka")
            }
            token = value
        }
        session = HisSession(config: config, endpoint: endpoint, token: token, env: env)
    }

    package func hostStatus(_ host: HostName) async throws -> HostPower {
        try HisErrors.power(from: try await call(.hostStatus, host), endpoint, host)
    }

    package func wakeHost(_ host: HostName) async throws -> String { try await call(.wakeHost, host) }

    package func prepareBuildHost(_ host: HostName) async throws -> String { try await call(.prepareBuildHost, host) }

    package func releaseHost(_ host: HostName) async throws -> String { try await call(.releaseHost, host) }

    /// The names of the tools His offers (`ka doctor`), under the same wall-clock cap as a call.
    package func offeredTools() async throws -> [String] {
        let cap = config.callTimeout, endpoint = self.endpoint, session = self.session
        return try await withWallClockCap(.seconds(cap), onTimeout: {
            await session.reset(reason: "the \(cap) s cap passed")
            return KAError.failure(endpoint, "listing the tools did not finish within \(cap) s", hint: "check that His runs and answers")
        }) {
            try await session.toolNames()
        }
    }

    /// The protocol version the handshake settled on (nil before the first call).
    package func negotiatedProtocolVersion() async -> String? { await session.negotiatedVersion }

    /// Ends the session (and a stdio process). Later calls open a new one.
    package func close() async { await session.reset(reason: nil) }

    deinit {
        let session = self.session
        Task { await session.reset(reason: nil) }
    }

    func call(_ tool: HisTool, _ host: HostName) async throws -> String {
        let cap = config.callTimeout, endpoint = self.endpoint, session = self.session, allowed = allowDestructive
        return try await withWallClockCap(.seconds(cap), onTimeout: {
            let peer = await session.peerState()
            await session.reset(reason: "the \(cap) s cap passed")
            return HisErrors.timedOut(endpoint, tool, host, cap: cap, peer: peer)
        }) {
            try await session.call(tool, host, allowDestructive: allowed)
        }
    }
}

/// The MCP session behind one `MCPHisOps`.
actor HisSession {
    private let config: HisConfig
    private let endpoint: String
    private let token: String?
    private let env: [String: String]

    private struct Live {
        let generation: Int
        let client: MCP.Client
        let child: HisChildProcess?
        var ready: Task<String, Error>
    }
    private var live: Live?
    private var generation = 0
    /// The tools His offered, listed once per client.
    private var tools: [String: Tool]?
    private(set) var negotiatedVersion: String?
    /// Why the last session ended, for the error of a call it cut short.
    private var endedBecause: [Int: String] = [:]

    init(config: HisConfig, endpoint: String, token: String?, env: [String: String]) {
        self.config = config; self.endpoint = endpoint; self.token = token; self.env = env
    }

    func call(_ tool: HisTool, _ host: HostName, allowDestructive: Set<HisTool>) async throws -> String {
        var generation: Int?
        var child: HisChildProcess?
        do {
            let session = try openIfNeeded()
            generation = session.generation
            child = session.child
            negotiatedVersion = try await session.ready.value
            let client = session.client
            let offered = try await toolList(client)
            guard let spec = offered[tool.rawValue] else { throw HisErrors.missingTool(endpoint, tool, offered: Array(offered.keys)) }
            if Self.isDestructive(spec.annotations) && !allowDestructive.contains(tool) {
                throw HisErrors.destructiveRefused(endpoint, tool, host)
            }
            let result = try await client.callTool(name: tool.rawValue, arguments: [config.hostArgument: .string(host.value)])
            let text = result.content.compactMap { content -> String? in
                if case let .text(text, _, _) = content { return text }
                return nil
            }.joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
            if result.isError == true { throw HisErrors.toolFailed(endpoint, tool, host, text) }
            return text
        } catch let error as KAError {
            throw error
        } catch {
            var why = generation.flatMap { endedBecause[$0] }
            // A stdio peer that died shows first as a broken pipe; its exit status and stderr say why.
            if why == nil, let child { why = await child.exitDescription(waitingUpTo: .seconds(1)) }
            reset(reason: nil, generation: generation)
            throw describe(error, tool, host, sessionEnded: why)
        }
    }

    func toolNames() async throws -> [String] {
        var generation: Int?
        do {
            let session = try openIfNeeded()
            generation = session.generation
            negotiatedVersion = try await session.ready.value
            return try await toolList(session.client).keys.sorted()
        } catch let error as KAError {
            throw error
        } catch {
            reset(reason: nil, generation: generation)
            throw KAError.failure(endpoint, "cannot list His's tools: \(error)", cause: error, hint: "check his.url / his.command in KA_CONFIG and that His runs")
        }
    }

    /// MCP: a tool is destructive unless it says it is read-only, or says destructiveHint false (both default to
    /// the cautious reading when absent).
    static func isDestructive(readOnlyHint: Bool?, destructiveHint: Bool?) -> Bool {
        if readOnlyHint == true { return false }
        return destructiveHint ?? true
    }
    static func isDestructive(_ a: Tool.Annotations) -> Bool { isDestructive(readOnlyHint: a.readOnlyHint, destructiveHint: a.destructiveHint) }

    private func toolList(_ client: MCP.Client) async throws -> [String: Tool] {
        if let tools { return tools }
        var all: [String: Tool] = [:]
        var cursor: String?
        repeat {
            let page = try await client.listTools(cursor: cursor)
            for t in page.tools { all[t.name] = t }
            cursor = page.nextCursor
        } while cursor != nil && all.count < 10_000
        tools = all
        return all
    }

    /// The live session, opened (transport, process, and the handshake started) when there is none.
    private func openIfNeeded() throws -> Live {
        if let live { return live }
        generation += 1
        let client = MCP.Client(name: "kernel-agent", version: KernelAgentVersion.string)
        let transport: any Transport
        var child: HisChildProcess?
        switch config.transport {
        case let .http(url, _):
            let session = URLSessionConfiguration.ephemeral
            // A backstop only: the wall-clock cap is what bounds a call.
            session.timeoutIntervalForRequest = TimeInterval(config.callTimeout + 5)
            let bearer = token.map { "Bearer \($0)" }
            transport = HTTPClientTransport(endpoint: url, configuration: session, streaming: false,
                                            protocolVersion: MCPHisOps.protocolVersion,
                                            requestModifier: { request in
                                                var r = request
                                                if let bearer { r.setValue(bearer, forHTTPHeaderField: "Authorization") }
                                                return r
                                            })
        case let .stdio(command):
            let process = try HisChildProcess(command, env: env, endpoint: endpoint)
            let gen = generation
            try process.start { [weak self] description in
                guard let self else { return }
                Task { await self.peerExited(description, generation: gen) }
            }
            child = process
            transport = StdioTransport(input: FileDescriptor(rawValue: process.output), output: FileDescriptor(rawValue: process.input))
        }
        let ready = Task { try await client.connect(transport: transport).protocolVersion }
        let opened = Live(generation: generation, client: client, child: child, ready: ready)
        live = opened
        return opened
    }

    /// What the stdio peer of the live session has done: nil for HTTP or when there is none.
    func peerState() -> String? { live?.child?.state() }

    private func peerExited(_ description: String, generation: Int) {
        endedBecause[generation] = description
        reset(reason: description, generation: generation)
    }

    /// Ends the live session (of `generation`, when given): the process is killed at once; the client's pending
    /// requests fail when it disconnects, in the background.
    func reset(reason: String?, generation: Int? = nil) {
        guard let current = live, generation == nil || generation == current.generation else { return }
        if let reason, endedBecause[current.generation] == nil { endedBecause[current.generation] = reason }
        live = nil
        current.ready.cancel()
        current.child?.terminate()
        let client = current.client
        Task.detached { await client.disconnect() }
    }

    private func describe(_ error: Error, _ tool: HisTool, _ host: HostName, sessionEnded why: String?) -> KAError {
        if let why { return HisErrors.unreachable(endpoint, tool, host, why) }
        if let e = error as? URLError { return HisErrors.unreachable(endpoint, tool, host, Self.describe(e)) }
        if let e = error as? MCPError {
            switch e {
            case let .internalError(detail?) where detail == "Authentication required" || detail == "Access forbidden":
                var hint = "give ka the token His expects"
                if case let .http(_, tokenEnv?) = config.transport { hint = "check the token in \(tokenEnv) (his.token_env in KA_CONFIG)" }
                return KAError.failure(endpoint, HisErrors.call(tool, host), "His refused our bearer token (\(detail))", hint: hint)
            case .connectionClosed, .transportError:
                return HisErrors.unreachable(endpoint, tool, host, e.localizedDescription)
            default:
                return KAError.failure(endpoint, HisErrors.call(tool, host), "MCP error: \(e.localizedDescription)")
            }
        }
        return HisErrors.unreachable(endpoint, tool, host, "\(error)")
    }

    static func describe(_ e: URLError) -> String {
        switch e.code {
        case .cannotConnectToHost: return "connection refused"
        case .cannotFindHost, .dnsLookupFailed: return "cannot resolve the host name"
        case .timedOut: return "timed out"
        case .networkConnectionLost: return "the connection was lost"
        default: return e.localizedDescription
        }
    }
}

/// The stdio peer: argv started with its stdin and stdout as pipes to the SDK's StdioTransport; stderr's last
/// bytes kept for errors. Killed (TERM, then KILL after 1 s) when the session ends.
final class HisChildProcess: Sendable {
    private let process = Process()
    private let stdinPipe = Pipe(), stdoutPipe = Pipe(), stderrPipe = Pipe()
    private let stderrTail = NIOLockedValueBox(Data())
    /// Signalled when stderr reaches its end: the peer's last words are all in `stderrTail`.
    private let stderrClosed = DispatchSemaphore(value: 0)
    /// How the process ended.
    private let exited = OneShot<String>()
    private let argv: [String]

    /// The fds the transport uses: it writes `input` (the child's stdin) and reads `output` (its stdout).
    var input: Int32 { stdinPipe.fileHandleForWriting.fileDescriptor }
    var output: Int32 { stdoutPipe.fileHandleForReading.fileDescriptor }

    private static let ignoreSIGPIPE: Void = { _ = signal(SIGPIPE, SIG_IGN) }()

    init(_ argv: [String], env: [String: String], endpoint: String) throws {
        guard let name = argv.first else { throw KAError.refusal(endpoint, "his.command is empty") }
        let path = name.contains("/") ? name : ExecutableLookup.resolve(name, path: env["PATH"])
        guard let path, access(path, X_OK) == 0 else {
            throw KAError.refusal(endpoint, "cannot run \(name): not found or not executable", hint: "fix his.command in KA_CONFIG")
        }
        self.argv = argv
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = Array(argv.dropFirst())
        process.environment = env
        process.standardInput = stdinPipe
        process.standardOutput = stdoutPipe
        process.standardError = stderrPipe
    }

    /// Starts the process; `onExit` is told how it ended, once.
    func start(onExit: @escaping @Sendable (String) -> Void) throws {
        _ = Self.ignoreSIGPIPE   // a write to a peer that died fails with EPIPE instead of ending ka
        stderrPipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self else { return }
            if data.isEmpty { handle.readabilityHandler = nil; self.stderrClosed.signal(); return }
            self.stderrTail.withLockedValue { tail in
                tail.append(data)
                if tail.count > 2048 { tail = tail.suffix(2048) }
            }
        }
        process.terminationHandler = { [weak self] p in
            guard let self else { return }
            let how = p.terminationReason == .uncaughtSignal ? "was killed by signal \(p.terminationStatus)" : "exited with status \(p.terminationStatus)"
            // The exit may be seen before stderr's reader has taken the peer's last words: wait for its end (briefly),
            // on a Dispatch thread: the cooperative pool's two threads carry the calls and their caps.
            DispatchQueue.global().async {
                _ = self.stderrClosed.wait(timeout: .now() + 0.5)   // timed out: say what came so far
                let tail = self.stderrTail.withLockedValue { String(decoding: $0, as: UTF8.self) }
                    .trimmingCharacters(in: .whitespacesAndNewlines)
                let description = "its process (\(self.argv.joined(separator: " "))) \(how)\(tail.isEmpty ? "" : ": \(tail.suffix(600))")"
                self.exited.set(description)
                onExit(description)
            }
        }
        do {
            try process.run()
        } catch {
            throw KAError.failure("His (stdio: \(argv.joined(separator: " ")))", "cannot start: \(error.localizedDescription)", cause: error)
        }
    }

    /// Its CPU time so far and the bytes of its output this client has not read yet.
    func state() -> String {
        let pid = process.processIdentifier
        var cpu = "CPU time unknown"
        // a diagnostic inside an error message: a process already gone just leaves its CPU time unknown
        if let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
           let close = stat.lastIndex(of: ")") {
            // fields after "(comm)": state is 3rd overall, utime 14th, stime 15th
            let rest = stat[stat.index(after: close)...].split(separator: " ")
            if rest.count > 12, let u = Double(rest[11]), let s = Double(rest[12]) {
                let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
                cpu = String(format: "its process had used %.2f s of CPU", (u + s) / max(hz, 1))
            }
        }
        let unread = ka_pending_bytes(output)
        return cpu + ", " + (unread > 0 ? "\(unread) bytes of its output were waiting unread" : "it had written nothing unread")
    }

    /// How the process ended, once it has (waiting up to `limit` for it); nil while it runs.
    func exitDescription(waitingUpTo limit: Swift.Duration) async -> String? {
        await exited.value(waitingUpTo: limit)
    }

    func terminate() {
        guard process.isRunning else { return }
        let pid = process.processIdentifier
        process.terminate()
        DispatchQueue.global().asyncAfter(deadline: .now() + 1) { [process] in
            if process.isRunning { kill(pid, SIGKILL) }
        }
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}
