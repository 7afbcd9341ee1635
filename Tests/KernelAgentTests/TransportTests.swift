import Foundation
import Testing
import KATestSupport
@testable import KernelAgent

/// ProcessRunner, RemoteShell, RemotePath and the local and fake transports, on this machine only.
@Suite struct TransportTests {
    // MARK: quoting

    @Test func quoteWrapsEachElementInSingleQuotes() throws {
        #expect(try RemoteShell.quote(["echo", "a b", "", "it's"]) == Array("'echo' 'a b' '' 'it'\\''s'".utf8))
        #expect(throws: KAError.self) { try RemoteShell.quote([RemoteArgument([0x61, 0, 0x62])]) }
    }

    /// The fuzz test: random argv with spaces, quotes, `;`, `$()`, backticks, newlines, empty arguments and bytes
    /// that are not UTF-8, through the call wrapper and a real shell (dash as /bin/sh, and bash, the usual login
    /// shell), must come back byte for byte.
    @Test(arguments: ["/bin/sh", "/bin/bash"])
    func quotingRoundTripsThroughARealShell(shell: String) async throws {
        var rng = SeededRandom.fromEnvironment("quoting fuzz via \(shell)")
        for round in 0..<150 {
            let args = TransportTestSupport.randomArgv(&rng)
            let line = try RemoteShell.commandLine(TransportTestSupport.echoArgv(args), callID: RemoteShell.newCallID())
            let outcome = try await ProcessRunner.run([Array(shell.utf8), Array("-c".utf8), line], timeout: .seconds(20))
            #expect(outcome.status == 0, "round \(round): \(outcome.stderrText)")
            let got = TransportTestSupport.splitNUL(outcome.stdout)
            #expect(got == args.map(\.bytes), "round \(round): sent \(args.map(\.bytes)), got \(got)")
            if got != args.map(\.bytes) { break }
        }
    }

    @Test func callWrapperRunsInRootDirAndExportsTheCallID() async throws {
        let id = RemoteShell.newCallID()
        let line = try RemoteShell.commandLine(["sh", "-c", "pwd; echo \"$KA_CALL\""], callID: id)
        let outcome = try await ProcessRunner.run([Array("/bin/sh".utf8), Array("-c".utf8), line], timeout: .seconds(10))
        #expect(String(decoding: outcome.stdout, as: UTF8.self) == "/\n\(id)\n")
        #expect(throws: KAError.self) { try RemoteShell.commandLine(["true"], callID: "x; rm -rf /") }
        #expect(throws: KAError.self) { try RemoteShell.commandLine([], callID: id) }
    }

    // MARK: ProcessRunner

    @Test func runnerReportsExitStatusAndBothStreams() async throws {
        let lines = LineCollector()
        let outcome = try await ProcessRunner.run(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"], timeout: .seconds(10),
                                                  onLine: lines.handler)
        #expect(outcome.status == 3 && outcome.stop == nil)
        #expect(outcome.stdoutText == "out\n" && outcome.stderrText == "err\n")
        #expect(lines.texts(.stdout) == ["out"] && lines.texts(.stderr) == ["err"])
        let signalled = try await ProcessRunner.run(["/bin/sh", "-c", "kill -9 $$"], timeout: .seconds(10))
        #expect(signalled.termination == .signalled(9) && signalled.status == 137)
    }

    @Test func runnerPutsTheProgramInItsOwnProcessGroup() async throws {
        let outcome = try await ProcessRunner.run(["/bin/sh", "-c", "cut -d' ' -f5 /proc/$$/stat"], timeout: .seconds(10))
        #expect(outcome.stdoutText == "\(outcome.pid)\n")
        #expect(getpgrp() != outcome.pid)
    }

    @Test func programsAreLookedUpOnPathAndKeepTheirArgv0() async throws {
        #expect(ExecutableLookup.resolve("sh", path: "/nonexistent:/bin") == "/bin/sh")
        #expect(ExecutableLookup.resolve("ka-no-such-program", path: "/bin:/usr/bin") == nil)
        let r = try await ProcessRunner.run(["sh", "-c", "echo $0 $PATH"], environment: ["PATH": "/bin"], timeout: .seconds(5))
        #expect(r.stdoutText == "sh /bin\n")
    }

    @Test func runnerFailsToStartAMissingProgram() async throws {
        await #expect(throws: KAError.self) { try await ProcessRunner.run(["/nonexistent/ka-no-such-program"], timeout: .seconds(5)) }
    }

    @Test func lineHandlerSeesEveryLineInOrder() async throws {
        let lines = LineCollector()
        let script = "i=0; while [ $i -lt 3000 ]; do echo \"line $i\"; echo \"err $i\" >&2; i=$((i+1)); done; printf 'last without newline'"
        let outcome = try await ProcessRunner.run(["/bin/sh", "-c", script], timeout: .seconds(30), onLine: lines.handler)
        #expect(outcome.status == 0)
        // Compared by count and first difference: a failure must not print 6000 lines.
        let out = lines.texts(.stdout), err = lines.texts(.stderr)
        let expectedOut = (0..<3000).map { "line \($0)" } + ["last without newline"], expectedErr = (0..<3000).map { "err \($0)" }
        #expect(out.count == expectedOut.count && err.count == expectedErr.count)
        #expect(zip(out, expectedOut).first { $0 != $1 } == nil, "stdout out of order")
        #expect(zip(err, expectedErr).first { $0 != $1 } == nil, "stderr out of order")
    }

    @Test func keptOutputIsTheBoundedTail() async throws {
        // 1 MiB on stdout; the result keeps the last 64 KiB, and every line still reached the handler.
        let lines = LineCollector()
        let outcome = try await ProcessRunner.run(["/bin/sh", "-c", "i=0; while [ $i -lt 16384 ]; do printf '%063d\\n' $i; i=$((i+1)); done"],
                                                  timeout: .seconds(60), onLine: lines.handler)
        #expect(outcome.status == 0)
        #expect(outcome.stdout.count == ProcessRunner.defaultTailBytes)
        let lastLines = String(decoding: outcome.stdout, as: UTF8.self).split(separator: "\n")
        #expect(lastLines.count == 1024 && lastLines.last == Substring(String(repeating: "0", count: 58) + "16383"))
        #expect(lines.all.count == 16384)
        // One endless line reaches the handler in pieces no longer than maxLineBytes.
        let long = LineCollector()
        let big = try await ProcessRunner.run(["/bin/sh", "-c", "head -c 200000 /dev/zero | tr '\\0' x"], timeout: .seconds(30), onLine: long.handler)
        #expect(big.status == 0)
        #expect(long.all.allSatisfy { $0.bytes.count <= ProcessRunner.maxLineBytes })
        #expect(long.all.reduce(0) { $0 + $1.bytes.count } == 200_000)
    }

    @Test func stdinReachesTheProgram() async throws {
        var rng = SeededRandom.fromEnvironment("runner stdin")
        let input = (0..<300_000).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let outcome = try await ProcessRunner.run(["/bin/sh", "-c", "cat | sha256sum"], stdin: .bytes(input), timeout: .seconds(30))
        let expected = try await ProcessRunner.run(["sha256sum"], stdin: .bytes(input), timeout: .seconds(30))
        #expect(outcome.status == 0 && outcome.stdoutText == expected.stdoutText)
        // A program that never reads its stdin is not an error.
        let ignoring = try await ProcessRunner.run(["true"], stdin: .bytes(input), timeout: .seconds(10))
        #expect(ignoring.status == 0 && ignoring.stop == nil)
    }

    /// A timeout ends the whole group: the grandchild (which ignores SIGTERM, so SIGKILL must follow) is gone too.
    @Test func timeoutKillsTheWholeProcessGroup() async throws {
        let lines = LineCollector()
        let script = "sh -c 'trap \"\" TERM; sleep 600 & echo $!; wait' & wait"
        let outcome = try await ProcessRunner.run(["/bin/sh", "-c", script], timeout: .milliseconds(800), grace: .milliseconds(300),
                                                  onLine: lines.handler)
        // the runner says the timeout ended it (not the 600 s sleep); no wall-clock bound, which a loaded machine breaks
        #expect(outcome.stop == .timedOut)
        let grandchild = try #require(lines.texts(.stdout).first.flatMap { pid_t($0) })
        #expect(await TransportTestSupport.eventually { TransportTestSupport.isGone(grandchild) }, "pid \(grandchild) still runs")
        #expect(!ProcessGroup.exists(outcome.pid))
    }

    @Test func cancellingTheTaskKillsTheWholeProcessGroup() async throws {
        let lines = LineCollector()
        let task = Task {
            try await ProcessRunner.run(["/bin/sh", "-c", "sh -c 'sleep 600 & echo $!; wait' & wait"], timeout: .seconds(600),
                                        grace: .milliseconds(300), onLine: lines.handler)
        }
        #expect(await TransportTestSupport.eventually { !lines.all.isEmpty })
        let grandchild = try #require(lines.texts(.stdout).first.flatMap { pid_t($0) })
        #expect(!TransportTestSupport.isGone(grandchild))
        task.cancel()
        let outcome = try await task.value
        #expect(outcome.stop == .cancelled)
        #expect(await TransportTestSupport.eventually { TransportTestSupport.isGone(grandchild) }, "pid \(grandchild) still runs")
    }

    // MARK: LocalTransport

    @Test func localTransportRunsAndReportsTimeoutsAndCancelsWithTheHost() async throws {
        let t = LocalTransport(host: try HostName("localbox"), grace: .milliseconds(200))
        let r = try await t.run(RemoteCommand(["sh", "-c", "pwd; cat; exit 4"], stdin: Array("in\n".utf8)))
        #expect(r.status == 4 && r.stdoutText == "/\nin\n")
        do {
            _ = try await t.run(RemoteCommand(["sleep", "600"], timeout: .milliseconds(300)))
            Issue.record("a 600 s sleep finished within 0.3 s")
        } catch let e as KAError {
            #expect(e.message == "host localbox (local) → `sleep 600` → did not finish within 0.3 s; killed")
        }
        let task = Task { try await t.run(RemoteCommand(["sleep", "600"])) }
        try await Task.sleep(for: .milliseconds(100))
        task.cancel()
        do { _ = try await task.value; Issue.record("a cancelled sleep returned") } catch let e as KAError {
            #expect(e.message == "host localbox (local) → `sleep 600` → cancelled; killed")
        }
    }

    @Test func localCopiesObeyTheRemotePathRules() async throws {
        let root = try TransportTestSupport.tempDir("local-root")
        defer { try? FileManager.default.removeItem(at: root) }
        let t = LocalTransport(host: try HostName("localbox"), root: root)
        let source = root.appendingPathComponent("source.bin")
        let bytes = Data((0..<5000).map { UInt8($0 % 251) })
        try bytes.write(to: source)
        try await t.copy(source, toRemote: "/srv/kernel-agent/in/x.bin", timeout: .seconds(5))
        #expect(try Data(contentsOf: root.appendingPathComponent("srv/kernel-agent/in/x.bin")) == bytes)
        let back = root.appendingPathComponent("back.bin")
        try await t.copy(fromRemote: "/srv/kernel-agent/in/x.bin", to: back, timeout: .seconds(5))
        #expect(try Data(contentsOf: back) == bytes)
        for bad in ["/home/kbuild/x", "/srv/kernel-agent/../etc/passwd", "srv/kernel-agent/x", "~/x", "/etc/passwd", "/root/x"] {
            await #expect(throws: KAError.self, "\(bad)") { try await t.copy(source, toRemote: bad, timeout: .seconds(5)) }
        }
    }

    // MARK: RemotePath

    @Test func remotePathsAreAbsoluteUnderTheAgentsRootsAndNeverAtHome() throws {
        for good in ["/srv/kernel-agent/source/job-1/linux.tar.xz", "/boot/extlinux/extlinux.conf", "/etc/kernel-agent/x",
                     "/var/cache/kernel-agent/a", "/srv/packages/arch/aarch64/x.pkg.tar.zst", "/sparfuxdata/kernel-agent-backups/fresnel/v/x.tgz",
                     "/boot"] {
            #expect(try RemotePath(good).value == good)
        }
        let cases: [(String, String)] = [
            ("/home/kbuild/x", "is under a home directory"), ("/root/.ssh/authorized_keys", "is under a home directory"),
            ("~/x", "names a home directory"), ("x/y", "is not absolute"), ("/srv/kernel-agent/../../etc/shadow", "has a '..' component"),
            ("/srv/kernel-agent//x", "has an empty or '.' component"), ("/srv/kernel-agent/./x", "has an empty or '.' component"),
            ("/srv/kernel-agentx/y", "is outside the agent's roots"), ("/etc/passwd", "is outside the agent's roots"),
            ("/srv/kernel-agent/a/..", "has a '..' component"),
        ]
        for (path, why) in cases {
            do { _ = try RemotePath(path, host: try HostName("fresnel")); Issue.record("accepted \(path)") } catch let e as KAError {
                #expect(e.kind == .refusal && e.message == "remote path 'fresnel:\(path)' → \(why)", "\(e.message)")
            }
        }
    }

    // MARK: FakeTransport

    @Test func fakeTransportPlaysItsScriptAndFailsLikeTheRealOne() async throws {
        let host = try HostName("fresnel")
        let fake = FakeTransport(host: host, address: "kbuild@10.0.0.1:22")
        fake.script(["uname", "-n"], .result(CommandResult(status: 0, stdout: Array("fresnel\n".utf8), stderr: []),
                                             lines: [OutputLine(.stdout, Array("fresnel".utf8))]))
        let unreachable = TransportError.unreachable(host, fake.address, "ssh: connect to host 10.0.0.1 port 22: No route to host")
        let dropped = TransportError.failed(host, fake.address, "`reboot`", "connection lost: closed by remote host")
        fake.script(["true"], .failBefore(unreachable), .result(CommandResult(status: 0, stdout: [], stderr: [])))
        fake.script(["reboot"], .failAfter(dropped))
        fake.script(["sleep", "600"], .hang)

        let lines = LineCollector()
        #expect(try await fake.run(RemoteCommand(["uname", "-n"]), onLine: lines.handler).stdoutText == "fresnel\n")
        #expect(lines.texts(.stdout) == ["fresnel"])
        await #expect(throws: unreachable) { try await fake.run(RemoteCommand(["true"])) }
        #expect(fake.performed == 1)
        #expect(try await fake.run(RemoteCommand(["true"])).succeeded)   // the next behaviour for the same argv
        await #expect(throws: dropped) { try await fake.run(RemoteCommand(["reboot"])) }
        #expect(fake.performed == 3, "the reboot happened before the connection dropped")
        await #expect(throws: TransportError.timedOut(host, fake.address, "`sleep 600`", after: .milliseconds(50))) {
            try await fake.run(RemoteCommand(["sleep", "600"], timeout: .milliseconds(50)))
        }
        let hanging = Task { try await fake.run(RemoteCommand(["sleep", "600"])) }
        hanging.cancel()
        await #expect(throws: TransportError.cancelled(host, fake.address, "`sleep 600`")) { try await hanging.value }
        await #expect(throws: KAError.self) { try await fake.run(RemoteCommand(["unscripted"])) }
        #expect(fake.calls.map { $0.argv.map(\.description) } == [["uname", "-n"], ["true"], ["true"], ["reboot"], ["sleep", "600"],
                                                                  ["sleep", "600"], ["unscripted"]])

        let dir = try TransportTestSupport.tempDir("fake-copy")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("a")
        try Data("abc".utf8).write(to: file)
        fake.scriptCopyTo(.failAfter(dropped))
        await #expect(throws: dropped) { try await fake.copy(file, toRemote: "/srv/kernel-agent/a", timeout: .seconds(1)) }
        #expect(fake.file("/srv/kernel-agent/a") == Array("abc".utf8), "failAfter: the bytes landed before the error")
        try await fake.copy(fromRemote: "/srv/kernel-agent/a", to: dir.appendingPathComponent("b"), timeout: .seconds(1))
        #expect(try Data(contentsOf: dir.appendingPathComponent("b")) == Data("abc".utf8))
        await #expect(throws: KAError.self) { try await fake.copy(file, toRemote: "/home/kbuild/a", timeout: .seconds(1)) }
    }

    // MARK: OpenSSHTransport without a network

    /// A stand-in `ssh` that records its argv and sleeps unless it is asked to run the kill script: a timed-out call
    /// must be followed by a second call that ends the first one's processes on the host, naming its call id.
    @Test func aTimedOutCallEndsItsRemoteProcessesInASecondSession() async throws {
        let dir = try TransportTestSupport.tempDir("fake-ssh")
        defer { try? FileManager.default.removeItem(at: dir) }
        let record = dir.appendingPathComponent("calls")
        let fakeSSH = dir.appendingPathComponent("ssh")
        try Data("""
        #!/bin/bash
        for a in "$@"; do last=$a; done
        printf '%s\\n---\\n' "$last" >>\(record.path)
        case "$last" in *ka-kill*) echo "ka-kill: 1 processes ended, 0 left"; exit 0;; esac
        exec sleep 600
        """.utf8).write(to: fakeSSH)
        chmod(fakeSSH.path, 0o755)
        var settings = SSHSettings(configFile: nil, identityFile: dir.path + "/id", knownHosts: dir.path + "/kh",
                                   controlDir: dir.path + "/cm", logDir: dir.path + "/log")
        settings.program = fakeSSH.path
        settings.grace = .milliseconds(200)
        let t = try OpenSSHTransport(host: try HostName("fresnel"), endpoint: try SSHEndpoint(address: "10.213.77.14"), settings: settings)
        do {
            _ = try await t.run(RemoteCommand(["sleep", "600"], timeout: .milliseconds(500)))
            Issue.record("returned")
        } catch let e as KAError {
            #expect(e.message == "host fresnel (kbuild@10.213.77.14:22) → `sleep 600` → did not finish within 0.5 s; killed", "\(e)")
        }
        let calls = try String(contentsOf: record, encoding: .utf8).components(separatedBy: "\n---\n").filter { !$0.isEmpty }
        #expect(calls.count == 2)
        let callID = try #require(calls.first?.firstMatch(of: /export KA_CALL=([0-9a-f]+);/)?.1)
        #expect(calls.last?.contains("'ka-kill' '\(callID)'") == true, "\(calls)")
    }

    @Test func sshArgumentsNameEveryFileAndNeverTheUsersOwn() throws {
        let settings = SSHSettings(configFile: nil, identityFile: "/state/ssh/id_ed25519", knownHosts: "/state/ssh/known_hosts",
                                   controlDir: "/state/ssh/cm", logDir: "/state/ssh/log")
        let t = try OpenSSHTransport(host: try HostName("ohm"), endpoint: try SSHEndpoint(address: "10.1.2.3", port: 2222), settings: settings)
        let argv = t.arguments(controlDir: "/state/ssh/cm", logFile: "/state/ssh/log/x.log")
        #expect(Array(argv.prefix(3)) == ["ssh", "-F", "/dev/null"])
        let options = Set(zip(argv, argv.dropFirst()).filter { $0.0 == "-o" }.map(\.1))
        for o in ["BatchMode=yes", "StrictHostKeyChecking=yes", "UserKnownHostsFile=/state/ssh/known_hosts", "GlobalKnownHostsFile=/dev/null",
                  "IdentityFile=/state/ssh/id_ed25519", "IdentitiesOnly=yes", "IdentityAgent=none", "ConnectTimeout=10",
                  "ServerAliveInterval=15", "ServerAliveCountMax=3", "ControlMaster=auto", "ControlPersist=60", "ControlPath=/state/ssh/cm/%C"] {
            #expect(options.contains(o), "\(o) missing")
        }
        #expect(argv.suffix(6) == ["-E", "/state/ssh/log/x.log", "-p", "2222", "-l", "kbuild"])
        #expect(!argv.joined(separator: " ").contains("~"))
        #expect(t.address == "kbuild@10.1.2.3:2222")
        var bad = settings
        bad.identityFile = "/state/my keys/id"
        #expect(throws: KAError.self) { try OpenSSHTransport(host: try HostName("ohm"), endpoint: try SSHEndpoint(address: "10.1.2.3"), settings: bad) }
        bad.identityFile = "/state/%d/id"
        #expect(throws: KAError.self) { try OpenSSHTransport(host: try HostName("ohm"), endpoint: try SSHEndpoint(address: "10.1.2.3"), settings: bad) }
        #expect(throws: KAError.self) { try SSHEndpoint(address: "-oProxyCommand=x") }
        #expect(throws: KAError.self) { try SSHEndpoint(address: "kbuild@10.1.2.3") }
        #expect(throws: KAError.self) { try SSHEndpoint(address: "10.1.2.3", user: "Root;") }
    }

    @Test func aLongStateDirGetsAShortPrivateSocketDir() throws {
        let long = "/tmp/" + String(repeating: "d", count: 80) + "/ssh/cm"
        let dir = try ControlSocketDir.resolve(long)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(dir.hasPrefix("/tmp/ka-cm-") && dir.utf8.count <= ControlSocketDir.maxDirBytes)
        #expect(try ControlSocketDir.resolve(long) == dir, "the same dir each time")
        var st = stat()
        #expect(lstat(dir, &st) == 0 && st.st_mode & 0o777 == 0o700)
        #expect(dir.utf8.count + 1 + 40 + 17 < 108)
    }

    @Test func sshFailuresAreClassifiedFromSshsOwnLog() throws {
        let t = try OpenSSHTransport(host: try HostName("ohm"), endpoint: try SSHEndpoint(address: "10.1.2.3"),
                                     settings: SSHSettings(configFile: nil, identityFile: "/s/id", knownHosts: "/s/kh", controlDir: "/s/cm", logDir: "/s/log"))
        func check(_ log: String, _ expected: String, _ kind: KAError.Kind) {
            let e = t.classify(log: log, detail: t.lastLine(Array(log.utf8)) ?? "", what: "`true`")
            #expect(e.message.contains(expected) && e.kind == kind, "\(e.message)")
            #expect(e.message.hasPrefix("host ohm (kbuild@10.1.2.3:22)"))
        }
        check("ssh: connect to host 10.1.2.3 port 22: No route to host", "unreachable: ssh: connect to host 10.1.2.3 port 22: No route to host", .failure)
        check("ssh: connect to host 10.1.2.3 port 22: Connection refused", "unreachable", .failure)
        check("@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n…\nHost key verification failed.", "host key refused: its key is not the one in /s/kh (it changed)", .refusal)
        check("No ED25519 host key is known for 10.1.2.3 and you have requested strict checking.\nHost key verification failed.", "host key refused: no known key", .refusal)
        check("kbuild@10.1.2.3: Permission denied (publickey).", "login refused", .refusal)
        check("Connection to 10.1.2.3 closed by remote host.", "connection lost", .failure)
        check("mux_client_request_session: session request failed: Session open refused by peer", "ssh failed: mux_client", .failure)
    }

    @Test func copyToAHomeOrWithDotDotIsRefusedBeforeAnyConnection() async throws {
        let dir = try TransportTestSupport.tempDir("copy-refusal")
        defer { try? FileManager.default.removeItem(at: dir) }
        let marker = dir.appendingPathComponent("ssh-ran")
        let fakeSSH = dir.appendingPathComponent("ssh")
        try Data("#!/bin/sh\ntouch \(marker.path)\nexit 0\n".utf8).write(to: fakeSSH)
        chmod(fakeSSH.path, 0o755)
        var settings = SSHSettings(configFile: nil, identityFile: dir.path + "/id", knownHosts: dir.path + "/kh",
                                   controlDir: dir.path + "/cm", logDir: dir.path + "/log")
        settings.program = fakeSSH.path
        let t = try OpenSSHTransport(host: try HostName("fresnel"), endpoint: try SSHEndpoint(address: "10.213.77.14"), settings: settings)
        let file = dir.appendingPathComponent("f")
        try Data("x".utf8).write(to: file)
        for bad in ["/home/kbuild/f", "/srv/kernel-agent/../../home/kbuild/f", "relative/f", "~kbuild/f"] {
            await #expect(throws: KAError.self) { try await t.copy(file, toRemote: bad, timeout: .seconds(5)) }
            await #expect(throws: KAError.self) { try await t.copy(fromRemote: bad, to: file, timeout: .seconds(5)) }
        }
        #expect(!FileManager.default.fileExists(atPath: marker.path), "ssh was started for a refused path")
    }
}

extension ProcessRunner.Outcome {
    var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    var stderrText: String { String(decoding: stderr, as: UTF8.self) }
}
