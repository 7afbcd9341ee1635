import Foundation
import GRDB
import Testing
import KATestSupport
@testable import KAControlPlane
@testable import KernelAgent

/// Jobs over real SSH to the fleet-in-a-box (`eval "$(scripts/fleet-box up)"`, which scripts/test does): the CLI
/// and the real `ka serve` binary, with kill -9, SIGTERM and lanes. Without the box every test here FAILS; it is
/// never skipped.
@Suite(.serialized, .holdsBoxHosts("fresnel")) struct JobBoxTests {
    static let fleetBox = Harness.projectRoot.appendingPathComponent("scripts/fleet-box").path

    static func boxEnvironment() throws -> [String: String] {
        let env = ProcessInfo.processInfo.environment
        guard let config = env["KA_CONFIG"], let dir = env["KA_BOX_DIR"], !config.isEmpty, !dir.isEmpty else {
            let e = KAError.failure("FLEET BOX NOT UP: KA_CONFIG and KA_BOX_DIR are not set",
                                    hint: "run the suite through scripts/test, or eval \"$(scripts/fleet-box up)\" first (root)")
            Issue.record("\(e)")
            throw e
        }
        return env
    }

    /// argv inside `host`'s namespaces (its own process view), as root.
    static func inHost(_ host: String, _ argv: [String]) async throws -> TestCommand.Result {
        try await Harness.runOffPool([fleetBox, "exec", host] + argv, cwd: Harness.projectRoot, environment: try boxEnvironment())
    }

    /// Processes in `host` whose command line matches `pattern` (pgrep -f), as pids.
    static func remote(_ host: String, matching pattern: String) async throws -> [String] {
        let r = try await inHost(host, ["pgrep", "-f", "--", pattern])
        return r.stdoutText.split(separator: "\n").map(String.init)
    }

    static func jobs(_ stateDir: URL) throws -> [JobRecord] {
        try SQLiteStateStore.open(Workspace(root: Harness.projectRoot, stateDir: stateDir)).jobs.jobs()
    }

    static func waitFor(_ what: String, timeout: Double = 60, _ cond: () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while try await !cond() {
            guard Date() < deadline else { Issue.record("timed out after \(timeout) s waiting for \(what)"); throw KAError.failure("timeout: \(what)") }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
    }

    /// Local ssh clients and masters a killed `ka serve` left (their argv names the state dir's sockets).
    static func reap(_ stateDir: URL) async {
        _ = try? await Harness.runOffPool(["pkill", "-KILL", "-f", "--", stateDir.path], cwd: Harness.projectRoot, environment: [:])   // best effort: the test's own leftovers
    }

    static func cliEnvironment(_ state: URL) throws -> [String: String] {
        var env = try boxEnvironment()
        env["KA_STATE_DIR"] = state.path
        env["KA_ROOT"] = Harness.projectRoot.path
        return env
    }

    // MARK: CLI

    @Test func preflightOverTheBoxPassesIsListedAndAnUnreachableHostNamesItsAddress() async throws {
        let env0 = try Self.boxEnvironment()
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("ka-jobbox-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: state) }
        let env = try Self.cliEnvironment(state)
        let ok = try await Harness.runOffPool([ChaosTests.kaBinary, "preflight", "fresnel"], cwd: Harness.projectRoot, environment: env)
        #expect(ok.status == 0, "\(ok.stdoutText)\n\(ok.stderrText)")
        #expect(ok.stdoutText.contains("✓ reachable: answers at kbuild@") && ok.stdoutText.contains("as fresnel"), "\(ok.stdoutText)")
        #expect(ok.stdoutText.contains("✓ tools for target: pacman") && ok.stdoutText.contains("preflight fresnel: ok"), "\(ok.stdoutText)")
        let listed = try await Harness.runOffPool([ChaosTests.kaBinary, "jobs", "--json"], cwd: Harness.projectRoot, environment: env)
        let jobs = try JSONDecoder().decode([[String: AnyDecodable]].self, from: Data(listed.stdoutText.utf8))
        #expect(jobs.count == 1 && jobs.first?["state"]?.text == "succeeded" && jobs.first?["verb"]?.text == "preflight", "\(listed.stdoutText)")
        // each remote line is in the job's log, with its host and stream
        let job = try #require(try Self.jobs(state).first)
        let log = try String(contentsOf: JobLog.url(Workspace(root: Harness.projectRoot, stateDir: state), job.id), encoding: .utf8)
        #expect(log.contains("fresnel stdout| fresnel\n") && log.contains("fresnel| $ uname -n") && log.contains("fresnel stdout| ok pacman"), "\(log)")

        // ohm moved to an address in the box's own /24 where nothing answers
        let config = try String(contentsOfFile: env0["KA_CONFIG"] ?? "", encoding: .utf8)
        let lines = config.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let ohm = lines.firstIndex(where: { $0.hasPrefix("  ohm:") }),
              let addrLine = lines[ohm...].firstIndex(where: { $0.contains("address:") }) else { Issue.record("no ohm in \(config)"); return }
        let old: String = lines[addrLine].split(separator: ":").last.map { String($0).trimmingCharacters(in: .whitespaces) } ?? ""
        let unused = old.split(separator: ".").dropLast().joined(separator: ".") + ".99"
        var moved = lines
        moved[addrLine] = lines[addrLine].replacingOccurrences(of: old, with: unused)
        let movedConfig = state.appendingPathComponent("moved.yaml")
        let movedText: String = moved.joined(separator: "\n")
        try movedText.write(to: movedConfig, atomically: true, encoding: String.Encoding.utf8)
        var env2 = env
        env2["KA_CONFIG"] = movedConfig.path
        let bad = try await Harness.runOffPool([ChaosTests.kaBinary, "preflight", "ohm"], cwd: Harness.projectRoot, environment: env2)
        #expect(bad.status == 1, "\(bad.stdoutText)\n\(bad.stderrText)")
        #expect((bad.stdoutText + bad.stderrText).contains(unused) && bad.stdoutText.contains("preflight ohm: FAILED"), "\(bad.stdoutText)\n\(bad.stderrText)")
    }

    /// Two jobs on one host from two processes: one after the other, the second saying behind whom it waits.
    /// Two hosts: at the same time.
    @Test func jobsOnOneHostRunInTurnAcrossProcessesAndOnTwoHostsTogether() async throws {
        _ = try Self.boxEnvironment()
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("ka-jobbox-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: state) }
        let env = try Self.cliEnvironment(state)
        func probe(_ host: String) async throws -> TestCommand.Result {
            try await Harness.runOffPool([ChaosTests.kaBinary, "probe", host, "--steps", "1", "--sleep", "2"], cwd: Harness.projectRoot, environment: env)
        }
        async let a = probe("boltzmann")
        async let b = probe("boltzmann")
        let (ra, rb) = try await (a, b)
        #expect(ra.status == 0 && rb.status == 0, "\(ra.stderrText)\n\(rb.stderrText)")
        // the holder note may not be written yet when the other looks: the wait is what counts
        #expect((ra.stderrText + rb.stderrText).contains("waiting for host:boltzmann, held by "), "\(ra.stderrText)\n\(rb.stderrText)")
        let same = try Self.jobs(state).sorted { ($0.startedAt ?? .distantPast) < ($1.startedAt ?? .distantPast) }
        #expect(same.count == 2)
        if same.count == 2 {
            let firstEnd = try #require(same[0].steps.last?.finishedAt)
            let secondStart = try #require(same[1].steps.first?.startedAt)
            #expect(secondStart >= firstEnd, "one host: one job at a time (\(same.map(\.id)))")
        }
        async let c = probe("fermi")
        async let d = probe("fresnel")
        let (rc, rd) = try await (c, d)
        #expect(rc.status == 0 && rd.status == 0, "\(rc.stderrText)\n\(rd.stderrText)")
        let two = try Self.jobs(state).filter { $0.lanes == ["host:fermi"] || $0.lanes == ["host:fresnel"] }
        #expect(two.count == 2)
        if two.count == 2 {
            let sleeps: [StepRecord] = two.compactMap { j in j.steps.first { $0.name.hasPrefix("sleep") } }
            var overlap = false
            if sleeps.count == 2, let s0 = sleeps[0].startedAt, let e0 = sleeps[0].finishedAt, let s1 = sleeps[1].startedAt, let e1 = sleeps[1].finishedAt {
                overlap = s0 < e1 && s1 < e0
            }
            #expect(overlap, "two hosts: their sleeps overlap (\(sleeps))")
        }
    }

    // MARK: ka serve

    func serve(_ h: Harness) async throws -> ChaosTests.Server {
        let g = h.gitea
        try await g.start()
        let port = ChaosTests.freePort()
        g.webhookURL = URL(string: "http://127.0.0.1:\(port)/webhook")
        let server = ChaosTests.Server(port: port, env: ChaosTests.serveEnvironment(h, port: port).merging(try Self.boxEnvironment()) { a, _ in a },
                                       log: h.root.appendingPathComponent("serve.log"))
        try await server.start()
        try await Task.sleep(nanoseconds: 1_100_000_000)   // the first cursor is "now"
        return server
    }

    func approve(_ h: Harness, _ command: String) async throws -> Int {
        let g = h.gitea
        let issue = g.createIssue(by: "markus", title: "box job")
        g.comment(by: "markus", on: issue, body: command)
        try await Self.waitFor("the plan") { g.botComments(on: issue).contains { Harness.nonce(in: $0.body) != nil } }
        let nonce = try #require(g.botComments(on: issue).compactMap { Harness.nonce(in: $0.body) }.first)
        g.comment(by: "markus", on: issue, body: "/ka-yes \(nonce)")
        return issue
    }

    /// kill -9 of `ka serve` mid-step, then a restart: the job resumes where its steps allow. A step that may
    /// rerun runs again; the counting step, which may not, never runs twice (one line in its counter file on the
    /// host); and a job killed inside the counting step fails on resume, naming it.
    @Test func killDashNineMidStepThenRestartResumesOrFailsAsTheStepDeclares() async throws {
        let h = try Harness()
        let state = h.root.appendingPathComponent(".ka")
        let server = try await serve(h)
        defer { server.killNow() }

        // 1. killed in the sleep step (rerun): resumes and succeeds
        let issue = try await approve(h, "/ka-probe ohm --steps 1 --sleep 20")
        try await Self.waitFor("the sleep step to run") { try Self.jobs(state).first?.steps.first { $0.name.hasPrefix("sleep") }?.state == .running }
        let job = try #require(try Self.jobs(state).first)
        try await Self.waitFor("the remote sleep") { try await !Self.remote("ohm", matching: "^sleep 20$").isEmpty }
        await server.kill9()
        await Self.reap(state)
        try await server.start()
        try await Self.waitFor("the resumed job to succeed", timeout: 90) { try Self.jobs(state).first { $0.id == job.id }?.state == .succeeded }
        let resumed = try #require(try Self.jobs(state).first { $0.id == job.id })
        #expect(resumed.steps.map(\.attempts) == [1, 2, 1], "count once, sleep twice, true once: \(resumed.steps)")
        let counted = try await Self.inHost("ohm", ["cat", "\(ProbeVerb.probeDir)/\(job.id).count"])
        #expect(counted.stdoutText == "counted\n", "the counting step ran once: \(counted.stdoutText)")
        try await Self.waitFor("the ✅ reply") { h.gitea.botComments(on: issue).contains { $0.body.contains("✅ done") } }

        // 2. killed inside the counting step (never): fails on resume, naming the step, and never counts again
        let issue2 = try await approve(h, "/ka-probe ohm --steps 1 --hold 600")
        try await Self.waitFor("the counting step to run") {
            try Self.jobs(state).first { $0.id != job.id }?.steps.first?.state == .running
        }
        let job2 = try #require(try Self.jobs(state).first { $0.id != job.id })
        try await Self.waitFor("the remote hold") { try await !Self.remote("ohm", matching: "^sleep 600$").isEmpty }
        await server.kill9()
        await Self.reap(state)
        _ = try await Self.inHost("ohm", ["pkill", "-f", "--", "^sleep 600$"])   // the hold the dead server left
        try await server.start()
        try await Self.waitFor("the job to fail on resume") { try Self.jobs(state).first { $0.id == job2.id }?.state == .failed }
        let failed = try #require(try Self.jobs(state).first { $0.id == job2.id })
        #expect(failed.detail?.contains("'count once, then hold 600 s'") == true && failed.detail?.contains("cannot be repeated or checked") == true, "\(failed.detail ?? "")")
        #expect(failed.steps.first?.attempts == 1)
        let counted2 = try await Self.inHost("ohm", ["cat", "\(ProbeVerb.probeDir)/\(job2.id).count"])
        #expect(counted2.stdoutText == "counted\n", "never counted twice: \(counted2.stdoutText)")
        try await Self.waitFor("the ❌ reply") { h.gitea.botComments(on: issue2).contains { $0.body.contains("❌ failed") && $0.body.contains("count once") } }
        await server.kill9()
        await Self.reap(state)
    }

    /// SIGTERM during a remote `sleep 600`: the remote process is gone (as the host's own ps sees it), the job is
    /// interrupted, and `ka serve` exits 0 within 10 s.
    @Test func sigtermDuringARemoteSleepKillsItOnTheHostAndServeExitsCleanly() async throws {
        let h = try Harness()
        let state = h.root.appendingPathComponent(".ka")
        let server = try await serve(h)
        _ = try await approve(h, "/ka-probe fresnel --steps 1 --sleep 600")
        try await Self.waitFor("the sleep step to run") { try Self.jobs(state).first?.steps.first { $0.name.hasPrefix("sleep") }?.state == .running }
        try await Self.waitFor("the remote sleep") { try await !Self.remote("fresnel", matching: "^sleep 600$").isEmpty }
        let p = try #require(server.process)
        kill(p.processIdentifier, SIGTERM)
        // the issue's bound: exits within 10 s
        let deadline = Date().addingTimeInterval(10)
        while p.isRunning && Date() < deadline { try await Task.sleep(nanoseconds: 20_000_000) }
        #expect(!p.isRunning, "ka serve still running 10 s after SIGTERM")
        if p.isRunning { await server.kill9() }
        #expect(p.terminationStatus == 0, "exit status \(p.terminationStatus)")
        try await Self.waitFor("the remote sleep to be gone", timeout: 10) { try await Self.remote("fresnel", matching: "^sleep 600$").isEmpty }
        let job = try #require(try Self.jobs(state).first)
        #expect(job.state == .interrupted && job.steps.first { $0.name.hasPrefix("sleep") }?.state == .running, "\(job)")
        await Self.reap(state)
    }
}

/// A JSON value read only for its text (the CLI's `--json` output).
struct AnyDecodable: Decodable {
    let text: String?
    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        text = try? c.decode(String.self)   // other JSON kinds have no text here, by design
    }
}
