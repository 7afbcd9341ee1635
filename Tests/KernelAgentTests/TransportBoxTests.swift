import Foundation
import Testing
import KATestSupport
@testable import KernelAgent

/// The fleet-in-a-box for the tests that need real sshd: `eval "$(scripts/fleet-box up)"` exports KA_BOX_DIR and
/// KA_CONFIG. Without a box up, every box test FAILS (it is never skipped); leave the suite out deliberately with
/// `swift test --skip TransportBoxTests`.
struct Box {
    let dir: URL
    let configPath: String

    /// The box's ka.yaml names these; its `lab` target only the kernel lab's config does (fleet-box ka-yaml --lab).
    static let hosts = ["boltzmann", "fermi", "hertz", "fresnel", "ohm", "kbuild-x86"]
    /// In ka.yaml too, but asleep until woken (scripts/fleet-box wake, or His's wake-host).
    static let onDemand = ["ampere"]
    static let fleetBox = TestEnv.projectRoot.appendingPathComponent("scripts/fleet-box").path

    /// Checked once per test run: the variables are set and `scripts/fleet-box status` says every sshd answers.
    private static let status: Result<Box, KAError> = {
        let env = ProcessInfo.processInfo.environment
        guard let dir = env["KA_BOX_DIR"], let config = env["KA_CONFIG"], !dir.isEmpty, !config.isEmpty else {
            return .failure(KAError.failure("FLEET BOX NOT UP: KA_BOX_DIR and KA_CONFIG are not set",
                                            hint: "run the suite through scripts/test, or eval \"$(scripts/fleet-box up)\" first (root); skip it with --skip TransportBoxTests"))
        }
        do {
            let r = try TestCommand.runBlocking([fleetBox, "status"], environment: env)   // once per run, in a static initializer
            guard r.status == 0 else {
                return .failure(KAError.failure("FLEET BOX NOT UP: scripts/fleet-box status exited \(r.status)", r.stderrText))
            }
        } catch let e as KAError { return .failure(e) } catch { return .failure(KAError.failure("\(error)")) }
        return .success(Box(dir: URL(fileURLWithPath: dir), configPath: config))
    }()

    static func require() throws -> Box {
        switch status {
        case let .success(box): return box
        case let .failure(e):
            Issue.record("\(e)")
            throw e
        }
    }

    /// The fleet as `ka` sees it with KA_CONFIG, with its sockets and logs under a state dir of the test's own.
    func fleet(stateDir: URL) throws -> FleetTransports {
        let config = try AgentConfig.load(configPath, stateDir: stateDir)
        return try FleetTransports(registry: try HostRegistry.load(Workspace(root: TestEnv.projectRoot)), config: config, stateDir: stateDir)
    }

    /// A transport for `host`; a short ControlPersist, so masters a failed test leaves do not linger.
    func transport(_ host: String, stateDir: URL, adjust: (inout SSHSettings) -> Void = { _ in }) throws -> OpenSSHTransport {
        let fleet = try fleet(stateDir: stateDir)
        var settings = fleet.settings
        settings.controlPersist = 15
        adjust(&settings)
        let name = try HostName(host)
        return try OpenSSHTransport(host: name, endpoint: try fleet.endpoint(for: name), settings: settings)
    }

    /// `scripts/fleet-box exec <host> argv…`: root inside the host's namespaces (its own ps view).
    func exec(_ host: String, _ argv: [String]) async throws -> ProcessRunner.Outcome {
        try await ProcessRunner.run([Box.fleetBox, "exec", host] + argv, environment: ProcessInfo.processInfo.environment, timeout: .seconds(30))
    }

    /// Whether a process whose command line contains `marker` runs on `host`.
    func runs(_ host: String, _ marker: String) async throws -> Bool {
        let ps = try await exec(host, ["ps", "-eo", "pid=,args="])
        return String(decoding: ps.stdout, as: UTF8.self).split(separator: "\n").contains { $0.contains(marker) }
    }
}

/// Runs `body` with a fresh state dir and closes the masters it opened, whatever happens.
func withBoxState(_ label: String, _ body: (URL) async throws -> [OpenSSHTransport]) async throws {
    let state = try TransportTestSupport.tempDir(label)
    defer { try? FileManager.default.removeItem(at: state) }
    let opened = try await body(state)
    for t in opened { try await t.closeMaster() }
}

@Suite(.serialized, .holdsBoxHosts("fresnel")) struct TransportBoxTests {
    @Test func everyHostAnswersAsItself() async throws {
        let box = try Box.require()
        try await withBoxState("bt-names") { state in
            var opened: [OpenSSHTransport] = []
            for host in Box.hosts {
                let t = try box.transport(host, stateDir: state)
                opened.append(t)
                #expect(try await t.run(RemoteCommand(["true"])).status == 0)
                let r = try await t.run(RemoteCommand(["uname", "-n"]))
                #expect(r.status == 0 && r.stdoutText == "\(host)\n", "\(host): \(r.stdoutText) \(r.stderrText)")
                #expect(t.address.hasPrefix("kbuild@10.") && t.address.hasSuffix(":22"))
            }
            return opened
        }
    }

    @Test func theBoxConfigReadsCleanly() throws {
        let box = try Box.require()
        let config = try AgentConfig.load(box.configPath, stateDir: URL(fileURLWithPath: "/tmp/ka-unused"))
        #expect(Set(config.hosts.keys.map(\.value)) == Set(Box.hosts + Box.onDemand))
        #expect(config.ssh.identityFile.hasPrefix(box.dir.path))
        #expect(config.hosts[try HostName("fresnel")]?.privilegeCommand == ["sudo", "-n"])
    }

    /// The quoting fuzz over real ssh: the remote login shell (bash) parses what RemoteShell built.
    @Test func quotingRoundTripsOverSSH() async throws {
        let box = try Box.require()
        try await withBoxState("bt-fuzz") { state in
            let t = try box.transport("fresnel", stateDir: state)
            var rng = SeededRandom.fromEnvironment("quoting fuzz over ssh")
            for round in 0..<60 {
                let args = TransportTestSupport.randomArgv(&rng)
                let r = try await t.run(RemoteCommand(TransportTestSupport.echoArgv(args)))
                let got = TransportTestSupport.splitNUL(r.stdout)
                #expect(r.status == 0 && got == args.map(\.bytes), "round \(round): sent \(args.map(\.bytes)), got \(got); \(r.stderrText)")
                if got != args.map(\.bytes) { break }
            }
            // stdin arrives byte for byte too.
            let input = (0..<60_000).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let cat = try await t.run(RemoteCommand(["cat"], stdin: input))
            #expect(cat.status == 0 && cat.stdout == input)
            // A remote exit 255 is the command's status, not an ssh failure.
            #expect(try await t.run(RemoteCommand(["sh", "-c", "echo oops >&2; exit 255"])).status == 255)
            return [t]
        }
    }

    /// SIGTERM-proof remote processes of a cancelled call are gone, as ps inside the host shows.
    @Test func aCancelledCallLeavesNoProcessOnTheHost() async throws {
        let box = try Box.require()
        try await withBoxState("bt-cancel") { state in
            let t = try box.transport("fresnel", stateDir: state) { $0.grace = .seconds(1) }
            let lines = LineCollector()
            let task = Task { try await t.run(RemoteCommand(["sh", "-c", "trap '' TERM; sleep 601 & echo $!; wait"], timeout: .seconds(600)), onLine: lines.handler) }
            #expect(await TransportTestSupport.eventually(.seconds(20)) { !lines.texts(.stdout).isEmpty })
            #expect(try await box.runs("fresnel", "sleep 601"), "the remote sleep never started")
            task.cancel()
            do { _ = try await task.value; Issue.record("a cancelled call returned") } catch let e as KAError {
                #expect(e.message == "host fresnel (\(t.address)) → `sh -c trap '' TERM; sleep 601 & echo $!; wait` → cancelled; killed", "\(e)")
            }
            #expect(try await TransportTestSupport.eventually(.seconds(15)) { try await !box.runs("fresnel", "sleep 601") },
                    "sleep 601 still runs on fresnel")
            return [t]
        }
    }

    @Test func aTimeoutNamesTheHostAndKillsTheRemoteCommand() async throws {
        let box = try Box.require()
        try await withBoxState("bt-timeout") { state in
            let t = try box.transport("fresnel", stateDir: state) { $0.grace = .seconds(1) }
            do {
                _ = try await t.run(RemoteCommand(["sleep", "602"], timeout: .seconds(2)))
                Issue.record("sleep 602 returned")
            } catch let e as KAError {
                #expect(e.message == "host fresnel (\(t.address)) → `sleep 602` → did not finish within 2 s; killed", "\(e)")
            }
            #expect(try await TransportTestSupport.eventually(.seconds(15)) { try await !box.runs("fresnel", "sleep 602") },
                    "sleep 602 still runs on fresnel")
            return [t]
        }
    }

    /// An address in the box's own /24 that no host has: the traffic stays on the box's bridge.
    @Test func anUnreachableAddressIsNamedInTheError() async throws {
        let box = try Box.require()
        try await withBoxState("bt-unreach") { state in
            let fleet = try box.fleet(stateDir: state)
            let taken = try Box.hosts.map { try fleet.endpoint(for: HostName($0)).address }
            let net = try #require(taken.first.map { $0.split(separator: ".").dropLast().joined(separator: ".") })
            let unused = try #require((200...250).map { "\(net).\($0)" }.first { !taken.contains($0) })
            var settings = fleet.settings
            settings.connectTimeout = 5
            let t = try OpenSSHTransport(host: try HostName("ohm"), endpoint: try SSHEndpoint(address: unused), settings: settings)
            do {
                _ = try await t.run(RemoteCommand(["true"], timeout: .seconds(30)))
                Issue.record("reached \(unused)")
            } catch let e as KAError {
                #expect(e.kind == .failure && e.message.hasPrefix("host ohm (kbuild@\(unused):22) → unreachable: "), "\(e)")
                #expect(e.message.contains(unused))
            }
            return []
        }
    }

    @Test func aChangedOrUnknownHostKeyIsRefused() async throws {
        let box = try Box.require()
        try await withBoxState("bt-hostkey") { state in
            let keygen = try await ProcessRunner.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "impostor", "-f", state.path + "/impostor"],
                                                     timeout: .seconds(30))
            #expect(keygen.status == 0, "ssh-keygen: \(keygen.stderrText)")
            let pub = try String(contentsOfFile: state.path + "/impostor.pub", encoding: .utf8).split(separator: " ")
            let address = try box.fleet(stateDir: state).endpoint(for: HostName("fresnel")).address
            let wrong = state.path + "/known_hosts_wrong", empty = state.path + "/known_hosts_empty"
            try Data("\(address) \(pub[0]) \(pub[1])\n".utf8).write(to: URL(fileURLWithPath: wrong))
            try Data().write(to: URL(fileURLWithPath: empty))
            // Each with its own state dir, so no master of a trusted connection is reused.
            for (file, why) in [(wrong, "its key is not the one in \(wrong) (it changed)"), (empty, "no known key for it in \(empty)")] {
                let own = state.appendingPathComponent("state-" + URL(fileURLWithPath: file).lastPathComponent)
                let t = try box.transport("fresnel", stateDir: own) { $0.knownHosts = file }
                do {
                    _ = try await t.run(RemoteCommand(["true"]))
                    Issue.record("connected with \(file)")
                } catch let e as KAError {
                    #expect(e.kind == .refusal && e.message == "host fresnel (\(t.address)) → host key refused: \(why)", "\(e)")
                    #expect(e.hint?.contains(file) == true)
                }
            }
            return []
        }
    }

    @Test func aKeyTheHostDoesNotKnowIsALoginRefusal() async throws {
        let box = try Box.require()
        try await withBoxState("bt-login") { state in
            let keygen = try await ProcessRunner.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", state.path + "/stranger"], timeout: .seconds(30))
            #expect(keygen.status == 0)
            // Without the box's ssh_config: its IdentityFile would add the box's key (ssh accumulates IdentityFile).
            let t = try box.transport("ohm", stateDir: state) { $0.identityFile = state.path + "/stranger"; $0.configFile = nil }
            do { _ = try await t.run(RemoteCommand(["true"])); Issue.record("logged in with a stranger's key") } catch let e as KAError {
                #expect(e.kind == .refusal && e.message.hasPrefix("host ohm (\(t.address)) → login refused: "), "\(e)")
            }
            return []
        }
    }

    @Test func copiesToAndFromAHostAreByteExact() async throws {
        let box = try Box.require()
        try await withBoxState("bt-copy") { state in
            let t = try box.transport("fresnel", stateDir: state)
            var rng = SeededRandom.fromEnvironment("copy over ssh")
            let bytes = Data((0..<300_000).map { _ in UInt8.random(in: 0...255, using: &rng) })
            let local = state.appendingPathComponent("out.bin"), back = state.appendingPathComponent("back.bin")
            try bytes.write(to: local)
            let dir = "/srv/kernel-agent/ka-transport-test"
            let name = "copy-\(RemoteShell.newCallID()).bin"
            #expect(try await t.run(RemoteCommand(["mkdir", "-p", RemoteArgument(dir)])).status == 0)
            try await t.copy(local, toRemote: "\(dir)/\(name)", timeout: .seconds(60))
            let onHost = box.dir.appendingPathComponent("hosts/fresnel/fs/srv/kernel-agent/ka-transport-test/\(name)")
            #expect(try Data(contentsOf: onHost) == bytes, "the bytes on fresnel differ")
            try await t.copy(fromRemote: "\(dir)/\(name)", to: back, timeout: .seconds(60))
            #expect(try Data(contentsOf: back) == bytes, "the bytes copied back differ")
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: onHost.deletingLastPathComponent().path).filter { $0.contains(".ka-tmp-") }
            #expect(leftovers.isEmpty, "temp files left on the host: \(leftovers)")
            // A missing remote file is an error naming it; no half file appears locally.
            do {
                try await t.copy(fromRemote: "\(dir)/missing-\(name)", to: state.appendingPathComponent("missing"), timeout: .seconds(30))
                Issue.record("copied a missing file")
            } catch let e as KAError {
                #expect(e.message.contains("No such file or directory"), "\(e)")
            }
            #expect(!FileManager.default.fileExists(atPath: state.appendingPathComponent("missing").path))
            for bad in ["/home/kbuild/\(name)", "\(dir)/../../../home/kbuild/x", "ka-transport-test/x"] {
                await #expect(throws: KAError.self) { try await t.copy(local, toRemote: bad, timeout: .seconds(10)) }
            }
            #expect(try await t.run(RemoteCommand(["rm", "-f", "--", RemoteArgument("\(dir)/\(name)")])).status == 0)
            return [t]
        }
    }

    /// 20 calls, one TCP connection: every session reports the same client port, the master's pid does not change,
    /// and sshd logged one login for that port.
    @Test func twentyCallsShareOneMasterConnection() async throws {
        let box = try Box.require()
        try await withBoxState("bt-master") { state in
            let t = try box.transport("fermi", stateDir: state)
            let first = try await t.run(RemoteCommand(["sh", "-c", "echo $SSH_CLIENT"]))
            let fields = first.stdoutText.split(separator: " ")
            let port = try #require(fields.count == 3 ? String(fields[1]) : nil, "SSH_CLIENT: \(first.stdoutText)")
            let master = try #require(try await t.masterPID())
            for _ in 0..<20 {
                let r = try await t.run(RemoteCommand(["sh", "-c", "echo $SSH_CLIENT"]))
                #expect(r.stdoutText.split(separator: " ").dropFirst().first.map(String.init) == port, "a call used another connection: \(r.stdoutText)")
            }
            #expect(try await t.masterPID() == master)
            let log = try String(contentsOf: box.dir.appendingPathComponent("hosts/fermi/upper/var/log/sshd.log"), encoding: .utf8)
            let logins = log.split(separator: "\n").filter { $0.contains("Accepted publickey") && $0.contains(" port \(port) ") }
            #expect(logins.count == 1, "logins from port \(port): \(logins)")
            try await t.closeMaster()
            #expect(try await t.masterPID() == nil)
            return []
        }
    }
}
