import Foundation
import NIOConcurrencyHelpers
import Testing
import KATestSupport
@testable import KernelAgent

/// His's ops over MCP against the stand-in (scripts/his-standin: the official Python SDK, an independent
/// implementation), over stdio and over Streamable HTTP with a Bearer token; the cap, the refusals, the sleep
/// memory, and `ka wake-data` through the CLI. A missing Python `mcp` fails these tests (scripts/setup installs it).
@Suite(.serialized, .holdsBoxHosts("his-standin")) struct HisTests {
    // MARK: the stand-in

    static let standin = TestEnv.projectRoot.appendingPathComponent("scripts/his-standin")

    /// A dir with the stand-in's hosts file and call log.
    final class Bed: @unchecked Sendable {
        let dir: URL
        var hostsFile: URL { dir.appendingPathComponent("hosts.json") }
        var callLog: URL { dir.appendingPathComponent("calls.log") }
        private var servers: [Process] = []
        /// His's client runs on the cooperative pool: a starved pool looks like a His that does not answer.
        let pool = PoolLatencyProbe()

        init(hosts: [String: (power: String, wakeDelay: Double)] = ["ampere": ("asleep", 0.3), "data": ("asleep", 0.3)]) async throws {
            dir = FileManager.default.temporaryDirectory.appendingPathComponent("ka-his-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let doc = ["hosts": hosts.mapValues { ["power": $0.power, "wake_delay": $0.wakeDelay] as [String: Any] }]
            try JSONSerialization.data(withJSONObject: doc).write(to: hostsFile)
            try await Self.requireMCP()
        }

        deinit {
            pool.stop()
            let report = pool.report()
            if !report.contains("longest wait 0.") && !report.contains("longest wait 1.") {
                FileHandle.standardError.write(Data("HisTests.Bed: \(report)\n".utf8))
            }
            for p in servers where p.isRunning { kill(p.processIdentifier, SIGKILL) }
            try? FileManager.default.removeItem(at: dir)
        }

        /// The stand-in's `--check`: a missing `mcp` is a recorded failure, never a skip.
        static func requireMCP() async throws {
            let argv = [HisTests.standin.path, "--check"]
            let r = try await offPool { try TestCommand.runBlocking(argv) }
            guard r.status == 0 else {
                Issue.record("MISSING: the python package mcp for scripts/his-standin (run scripts/setup): \(r.stderrText)")
                throw KAError.failure("his-standin --check", "exit \(r.status)")
            }
        }

        /// argv of a stdio stand-in on this bed.
        func stdioCommand(_ extra: [String] = []) -> [String] {
            [HisTests.standin.path, "--stdio", "--hosts-file", hostsFile.path, "--call-log", callLog.path] + extra
        }

        /// Starts an HTTP stand-in on a free loopback port with `token`; returns its URL once it listens.
        func startHTTP(token: String, _ extra: [String] = []) async throws -> URL {
            let portFile = dir.appendingPathComponent("port-\(servers.count)")
            let p = Process()
            p.executableURL = HisTests.standin
            p.arguments = ["--http", "127.0.0.1:0", "--port-file", portFile.path, "--token-env", "HIS_STANDIN_TOKEN",
                           "--hosts-file", hostsFile.path, "--call-log", callLog.path] + extra
            var env = ProcessInfo.processInfo.environment
            env["HIS_STANDIN_TOKEN"] = token
            p.environment = env
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle(forWritingAtPath: "/dev/null")
            try p.run()
            servers.append(p)
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline {
                if let text = try? String(contentsOf: portFile, encoding: .utf8), let port = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                    return try #require(URL(string: "http://127.0.0.1:\(port)/mcp"))
                }
                guard p.isRunning else { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            Issue.record("the HTTP stand-in did not listen within 30 s (running: \(p.isRunning))")
            throw KAError.failure("his-standin --http", "not listening")
        }

        /// The calls the stand-in logged, as (tool, host).
        func calls() throws -> [(tool: String, host: String)] {
            guard FileManager.default.fileExists(atPath: callLog.path) else { return [] }
            return try String(contentsOf: callLog, encoding: .utf8).split(separator: "\n").map { line in
                let o = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                return (try #require(o["tool"] as? String), try #require(o["host"] as? String))
            }
        }
        func count(_ tool: String) throws -> Int { try calls().filter { $0.tool == tool }.count }
    }

    static func config(_ transport: HisConfig.Transport, timeout: Int = 20) -> HisConfig {
        HisConfig(transport: transport, callTimeout: timeout, origin: "test")
    }

    static let ampere = try! HostName("ampere")
    static let data = try! HostName("data")

    /// Polls host-status until `want` or the deadline.
    static func waitFor(_ want: HostPower, _ host: HostName, on his: any HisOps, within seconds: Double = 15) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        var last: HostPower = .unknown
        while Date() < deadline {
            last = try await his.hostStatus(host)
            if last == want { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("\(host) still \(last) after \(seconds) s, expected \(want)")
    }

    static func kaError(_ body: () async throws -> Void) async -> KAError? {
        do { try await body(); return nil } catch let e as KAError { return e } catch {
            Issue.record("expected a KAError, got \(type(of: error)): \(error)")
            return nil
        }
    }

    // MARK: stdio

    @Test func stdioHostStatusAndWake() async throws {
        let bed = try await Bed()
        let his = try MCPHisOps(config: Self.config(.stdio(command: bed.stdioCommand())))
        #expect(his.endpoint.hasPrefix("His (stdio: \(Self.standin.path) --stdio"))
        #expect(try await his.hostStatus(Self.ampere) == .asleep)
        #expect(await his.negotiatedProtocolVersion() == "2025-06-18")
        let answer = try await his.wakeHost(Self.ampere)
        #expect(answer.hasPrefix("waking ampere"), "\(answer)")
        try await Self.waitFor(.up, Self.ampere, on: his)
        #expect(try await his.wakeHost(Self.ampere) == "ampere is up")
        #expect(try bed.count("wake-host") == 2)
        #expect(try bed.calls().allSatisfy { $0.host == "ampere" })
        await his.close()
    }

    @Test func anUnknownHostIsHisErrorNamingTheHost() async throws {
        let bed = try await Bed()
        let his = try MCPHisOps(config: Self.config(.stdio(command: bed.stdioCommand())))
        let e = await Self.kaError { _ = try await his.hostStatus(try HostName("nope")) }
        #expect(e?.message.contains("host-status nope → His answered with an error: Error executing tool host-status: unknown host 'nope'") == true, "\(String(describing: e))")
        await his.close()
    }

    // MARK: HTTP with a bearer token, through KA_CONFIG

    @Test func httpThroughKAConfigWithABearerToken() async throws {
        let bed = try await Bed()
        let url = try await bed.startHTTP(token: "s3cret-token")
        let yaml = bed.dir.appendingPathComponent("ka.yaml")
        try Data("his:\n  url: \(url.absoluteString)\n  token_env: KA_TEST_HIS_TOKEN\n  call_timeout: 10\n".utf8).write(to: yaml)
        let ws = Workspace(root: bed.dir)
        let his = try #require(try HisClients.fromEnvironment(ws, env: ["KA_CONFIG": yaml.path, "KA_TEST_HIS_TOKEN": "s3cret-token"]))
        #expect(his.endpoint == "His (\(url.absoluteString))")
        #expect(try await his.hostStatus(Self.data) == .asleep)
        #expect(try await his.wakeHost(Self.data).hasPrefix("waking data"))
        try await Self.waitFor(.up, Self.data, on: his)
        #expect(await (his as? MCPHisOps)?.negotiatedProtocolVersion() == "2025-06-18")
        #expect(try bed.count("wake-host") == 1)
        // no his: section → nil; a token variable that is not set → a refusal naming it
        try Data("ssh: {}\n".utf8).write(to: yaml)
        #expect(try HisClients.fromEnvironment(ws, env: ["KA_CONFIG": yaml.path]) == nil)
        #expect(try HisClients.fromEnvironment(ws, env: [:]) == nil)
        try Data("his:\n  url: \(url.absoluteString)\n  token_env: KA_TEST_HIS_TOKEN\n".utf8).write(to: yaml)
        let unset = await Self.kaError { _ = try HisClients.fromEnvironment(ws, env: ["KA_CONFIG": yaml.path]) }
        #expect(unset?.message.contains("the environment variable KA_TEST_HIS_TOKEN is not set or empty") == true, "\(String(describing: unset))")
    }

    @Test func aWrongTokenIsAClearErrorAndNoToolRuns() async throws {
        let bed = try await Bed()
        let url = try await bed.startHTTP(token: "right-token")
        let his = try MCPHisOps(config: Self.config(.http(url: url, tokenEnv: "T")), env: ["T": "wrong-token"])
        let e = await Self.kaError { _ = try await his.wakeHost(Self.ampere) }
        let text = e?.description ?? ""
        #expect(text.hasPrefix("His (\(url.absoluteString)) → wake-host ampere → His refused our bearer token (Authentication required)"), "\(text)")
        #expect(text.contains("fix: check the token in T"), "\(text)")
        #expect(try bed.calls().isEmpty)
    }

    // MARK: the hard wall-clock cap

    @Test func aHangingToolOverHTTPIsCutAtTheCap() async throws {
        let bed = try await Bed()
        let url = try await bed.startHTTP(token: "t", ["--hang", "host-status"])
        let his = try MCPHisOps(config: Self.config(.http(url: url, tokenEnv: "T"), timeout: 2), env: ["T": "t"])
        _ = try await his.wakeHost(Self.ampere)   // the session is open: the cap alone ends the next call
        let t0 = Date()
        let e = await Self.kaError { _ = try await his.hostStatus(Self.ampere) }
        let elapsed = Date().timeIntervalSince(t0)
        #expect(elapsed >= 1.9 && elapsed < 5, "the cap of 2 s fired after \(elapsed) s")
        #expect(e?.message == "His (\(url.absoluteString)) → host-status ampere → no answer within the 2 s cap (his.call_timeout); the call was cancelled", "\(String(describing: e))")
        #expect(try bed.count("host-status") == 1, "the hung call reached His once")
        // the client opens a new session for the next call
        #expect(try await his.wakeHost(Self.ampere).contains("ampere"))
    }

    @Test func aHangingToolOverStdioIsCutAtTheCapAndItsProcessKilled() async throws {
        let bed = try await Bed()
        let pidFile = bed.dir.appendingPathComponent("standin.pid")
        let his = try MCPHisOps(config: Self.config(.stdio(command: bed.stdioCommand(["--hang", "wake-host", "--pid-file", pidFile.path])), timeout: 6))
        // started and answering first (a Python start under a loaded suite takes seconds; the cap counts it)
        #expect(try await his.hostStatus(Self.ampere) == .asleep)
        let t0 = Date()
        let e = await Self.kaError { _ = try await his.wakeHost(Self.ampere) }
        let elapsed = Date().timeIntervalSince(t0)
        #expect(elapsed >= 5.5 && elapsed < 11, "the cap of 6 s fired after \(elapsed) s")
        #expect(e?.message.contains("wake-host ampere → no answer within the 6 s cap (his.call_timeout); the call was cancelled (its process had used ") == true, "\(String(describing: e))")
        // a hung peer wrote nothing: told apart from a client that did not read what His wrote
        #expect(e?.message.hasSuffix("s of CPU, it had written nothing unread)") == true, "\(String(describing: e))")
        #expect(try bed.count("wake-host") == 1)
        let pid = try #require(Int32(try String(contentsOf: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        let deadline = Date().addingTimeInterval(5)
        while kill(pid, 0) == 0 && !Self.isZombie(pid) && Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(kill(pid, 0) != 0 || Self.isZombie(pid), "the hung stand-in (pid \(pid)) was not killed")
        #expect(try await his.hostStatus(Self.ampere) == .asleep, "a new process serves the next call")
        await his.close()
    }

    static func isZombie(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return true }
        return stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
    }

    @Test func anUnreachableURLFailsQuickly() async throws {
        let port = try Self.closedPort()
        let url = try #require(URL(string: "http://127.0.0.1:\(port)/mcp"))
        let his = try MCPHisOps(config: Self.config(.http(url: url, tokenEnv: nil), timeout: 20))
        let t0 = Date()
        let e = await Self.kaError { _ = try await his.hostStatus(Self.ampere) }
        #expect(Date().timeIntervalSince(t0) < 3)
        #expect(e?.message.hasPrefix("His (http://127.0.0.1:\(port)/mcp) → host-status ampere → His is unreachable: ") == true, "\(String(describing: e))")
    }

    @Test func aStdioPeerThatDiesIsAClearErrorQuickly() async throws {
        let his = try MCPHisOps(config: Self.config(.stdio(command: ["/bin/sh", "-c", "echo his is broken >&2; exit 7"]), timeout: 20))
        let t0 = Date()
        let e = await Self.kaError { _ = try await his.hostStatus(Self.ampere) }
        #expect(Date().timeIntervalSince(t0) < 5)
        #expect(e?.message.contains("His is unreachable: its process (/bin/sh -c echo his is broken >&2; exit 7) exited with status 7: his is broken") == true, "\(String(describing: e))")
    }

    /// A loopback port nothing listens on.
    static func closedPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        #expect(bound)
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    // MARK: annotations

    @Test func aDestructiveToolNeedsLeaveAndIsNeverSentWithout() async throws {
        let bed = try await Bed()
        let plain = try MCPHisOps(config: Self.config(.stdio(command: bed.stdioCommand())))
        let e = await Self.kaError { _ = try await plain.prepareBuildHost(Self.ampere) }
        #expect(e?.kind == .refusal)
        #expect(e?.message.contains("prepare-build-host ampere → His marks 'prepare-build-host' destructive, and this step was not given leave to call it") == true, "\(String(describing: e))")
        #expect(try await plain.wakeHost(Self.ampere).hasPrefix("waking"), "wake-host says destructiveHint false: no leave needed")
        #expect(try bed.count("prepare-build-host") == 0, "the refused call never reached His")
        #expect(try bed.count("wake-host") == 1)
        await plain.close()

        let allowed = try MCPHisOps(config: Self.config(.stdio(command: bed.stdioCommand())), allowDestructive: [.prepareBuildHost])
        #expect(try await allowed.prepareBuildHost(Self.ampere) == "ampere prepared as a build host")
        #expect(try bed.count("prepare-build-host") == 1)
        await allowed.close()
    }

    @Test func theMCPDefaultsMakeAnUnannotatedToolDestructive() {
        #expect(HisSession.isDestructive(readOnlyHint: nil, destructiveHint: nil))
        #expect(HisSession.isDestructive(readOnlyHint: false, destructiveHint: nil))
        #expect(!HisSession.isDestructive(readOnlyHint: true, destructiveHint: nil))
        #expect(!HisSession.isDestructive(readOnlyHint: true, destructiveHint: true))
        #expect(!HisSession.isDestructive(readOnlyHint: nil, destructiveHint: false))
        #expect(HisSession.isDestructive(readOnlyHint: false, destructiveHint: true))
    }

    @Test func aMissingToolIsAClearRefusal() async throws {
        let bed = try await Bed()
        let his = try MCPHisOps(config: Self.config(.stdio(command: bed.stdioCommand(["--omit", "wake-host"]))))
        let e = await Self.kaError { _ = try await his.wakeHost(Self.ampere) }
        #expect(e?.message.hasSuffix("has no tool 'wake-host' (it offers: host-status, prepare-build-host, release-host)") == true, "\(String(describing: e))")
        await his.close()
    }

    // MARK: config

    @Test func theHisSectionIsParsedStrictly() throws {
        func parse(_ yaml: String) throws -> HisConfig {
            let top = try YAMLValue.parse(yaml, file: "ka.yaml").mapping(allowed: AgentConfig.topLevelKeys)
            return try HisConfig.parse(try #require(top["his"]))
        }
        let http = try parse("his:\n  url: http://hertz:8090/mcp\n  token_env: KA_HIS_TOKEN\n")
        #expect(http.transport == .http(url: try #require(URL(string: "http://hertz:8090/mcp")), tokenEnv: "KA_HIS_TOKEN"))
        #expect(http.callTimeout == 20 && http.hostArgument == "host" && http.endpoint == "His (http://hertz:8090/mcp)")
        let stdio = try parse("his:\n  command: [lmcp, --stdio]\n  call_timeout: 1m\n  host_argument: target\n")
        #expect(stdio.transport == .stdio(command: ["lmcp", "--stdio"]) && stdio.callTimeout == 60 && stdio.hostArgument == "target")
        #expect(stdio.endpoint == "His (stdio: lmcp --stdio)")
        let cases: [(String, String)] = [
            ("his:\n  url: http://h/mcp\n  command: [x]\n", "ka.yaml:2:3: his: both url and command are set"),
            ("his:\n  call_timeout: 5\n", "ka.yaml:2:3: his: neither url nor command is set"),
            ("his:\n  url: ftp://h/x\n", "ka.yaml:2:8: his.url: 'ftp://h/x' is not an http(s) URL"),
            ("his:\n  url: http://h/mcp\n  call_timeout: 0\n", "ka.yaml:3:17: his.call_timeout: expected seconds in 1…600, found '0'"),
            ("his:\n  url: http://h/mcp\n  token: abc\n", "ka.yaml:3:3: unknown key 'his.token'"),
            ("his:\n  url: http://h/mcp\n  token_env: 'A B'\n", "ka.yaml:3:14: his.token_env: 'A B' is not an environment variable name"),
            ("his:\n  command: []\n", "ka.yaml:2:12: his.command: expected an argv such as [lmcp, --stdio]"),
            ("his:\n  command: [lmcp]\n  token_env: T\n", "ka.yaml:3:14: his.token_env: token_env goes with url"),
        ]
        for (yaml, want) in cases {
            do {
                _ = try parse(yaml)
                Issue.record("accepted: \(yaml)")
            } catch let e as KAError {
                #expect(e.message.hasPrefix(want), "\(yaml) → \(e.message)")
            }
        }
        // the agent's own reader accepts the section (it belongs to HisConfig)
        _ = try AgentConfig.parse("his:\n  url: http://h/mcp\n", file: "ka.yaml", stateDir: URL(fileURLWithPath: "/tmp/ka-state"))
    }

    // MARK: the sleep memory

    @Test func sleepMemoryBacksOffDoublingToFifteenMinutesAcrossInstances() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ka-his-sleep-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let clock = NIOLockedValueBox(Date(timeIntervalSince1970: 1_800_000_000))
        let now: @Sendable () -> Date = { clock.withLockedValue { $0 } }
        let host = Self.ampere
        #expect(try SleepMemory(stateDir: dir, now: now).asleepUntil(host) == nil)
        var seen: [TimeInterval] = []
        for _ in 0..<7 {
            // a new instance each time: what one `ka` process noted, the next one reads
            try SleepMemory(stateDir: dir, now: now).noteAsleep(host)
            let until = try #require(try SleepMemory(stateDir: dir, now: now).asleepUntil(host))
            seen.append(until.timeIntervalSince(now()))
        }
        #expect(seen == [60, 120, 240, 480, 900, 900, 900])
        #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("his/asleep-ampere.json").path))
        // past the date: probe again (nil), but the backoff is still remembered
        clock.withLockedValue { $0 = $0.addingTimeInterval(901) }
        let memory = SleepMemory(stateDir: dir, now: now)
        #expect(try memory.asleepUntil(host) == nil)
        #expect(try memory.backoff(host) == 900)
        // awake resets it
        try memory.noteAwake(host)
        try memory.noteAwake(host)   // twice is fine
        #expect(try memory.backoff(host) == nil)
        try memory.noteAsleep(host)
        #expect(try memory.asleepUntil(host)?.timeIntervalSince(now()) == 60)
        #expect(try memory.asleepUntil(Self.data) == nil, "per host")
        // a damaged record is an error naming the file, not a silent reset
        try Data("{".utf8).write(to: dir.appendingPathComponent("his/asleep-data.json"))
        #expect(throws: KAError.self) { try memory.asleepUntil(Self.data) }
    }

    // MARK: the fake fails like the real one

    @Test func theFakeFailsLikeTheRealClient() async throws {
        let fake = FakeHisOps(power: [Self.ampere: .asleep], wakeDelay: 0, callCap: 1)
        #expect(try await fake.hostStatus(Self.ampere) == .asleep)
        #expect(try await fake.wakeHost(Self.ampere).hasPrefix("waking ampere"))
        #expect(try await fake.hostStatus(Self.ampere) == .up)
        let refused = await Self.kaError { _ = try await fake.prepareBuildHost(Self.ampere) }
        #expect(refused == HisErrors.destructiveRefused(fake.endpoint, .prepareBuildHost, Self.ampere))
        #expect(fake.refusedDestructiveCalls == 1 && fake.callCount(.prepareBuildHost) == 0)
        fake.setFault(.hang, for: .hostStatus)
        let t0 = Date()
        let hung = await Self.kaError { _ = try await fake.hostStatus(Self.ampere) }
        #expect(Date().timeIntervalSince(t0) >= 0.9)
        #expect(hung == HisErrors.timedOut(fake.endpoint, .hostStatus, Self.ampere, cap: 1))
        fake.setFault(.unreachable, for: .wakeHost)
        let down = await Self.kaError { _ = try await fake.wakeHost(Self.ampere) }
        #expect(down?.message == "His (fake) → wake-host ampere → His is unreachable: connection refused")
        #expect(fake.calls.map(\.tool) == [.hostStatus, .wakeHost, .hostStatus, .hostStatus], "unreachable and refused calls never reached His")
    }

    // MARK: ka wake-data

    @Test func wakeDataThroughTheCLI() async throws {
        let bed = try await Bed()
        let s = try Sandbox(copyShipped: false)
        let yaml = s.url("ka.yaml")
        let argv = bed.stdioCommand().map { "'\($0)'" }.joined(separator: ", ")
        try s.write("ka.yaml", "his:\n  command: [\(argv)]\n  call_timeout: 20\n")
        let r = try await s.ka(["wake-data"], env: ["KA_CONFIG": yaml.path])
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(r.stdoutText.hasPrefix("His (stdio: \(Self.standin.path) --stdio"), "\(r.stdoutText)")
        #expect(r.stdoutText.hasSuffix(": waking data: up in about 0.3 s\n"), "\(r.stdoutText)")
        #expect(try bed.calls().map { "\($0.tool) \($0.host)" } == ["wake-host data"])

        // No his: section, or no KA_CONFIG: a refusal that says what to add.
        try s.write("ka.yaml", "ssh: {}\n")
        for env in [["KA_CONFIG": yaml.path], ["KA_CONFIG": ""]] {
            let none = try await s.ka(["wake-data"], env: env)
            #expect(none.status == 2)
            #expect(none.stderrText.contains("His is not configured: KA_CONFIG has no his: section"), "\(none.stderrText)")
            #expect(none.stderrText.contains("fix: add his: {url: http://<hub>:8090/mcp, token_env: <VAR>}"), "\(none.stderrText)")
        }
        #expect(try bed.calls().count == 1)
    }
}
