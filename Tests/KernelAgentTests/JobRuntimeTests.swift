import Foundation
import GRDB
import NIOConcurrencyHelpers
import Testing
@testable import KernelAgent

/// A transport for unit tests of the runtime: each argv answers from a closure; it records every call.
final class ScriptedTransport: HostTransport, Sendable {
    let host: HostName
    var address: String { "test@\(host):22" }
    private let recorded = NIOLockedValueBox<[String]>([])
    let answer: @Sendable (RemoteCommand, (@Sendable (OutputLine) -> Void)?) async throws -> CommandResult

    init(_ host: String, answer: @escaping @Sendable (RemoteCommand, (@Sendable (OutputLine) -> Void)?) async throws -> CommandResult) throws {
        self.host = try HostName(host); self.answer = answer
    }

    var calls: [String] { recorded.withLockedValue { $0 } }

    func run(_ command: RemoteCommand, onLine: (@Sendable (OutputLine) -> Void)?) async throws -> CommandResult {
        recorded.withLockedValue { $0.append(command.shown) }
        return try await answer(command, onLine)
    }
    func copy(_ local: URL, toRemote path: String, timeout: Swift.Duration) async throws {}
    func copy(fromRemote path: String, to local: URL, timeout: Swift.Duration) async throws {}
}

/// Counts things across tasks, and lets a test wait for a count.
final class Counter: Sendable {
    private let counts = NIOLockedValueBox((n: 0, peak: 0))
    @discardableResult func up() -> Int { counts.withLockedValue { c in c.n += 1; c.peak = max(c.peak, c.n); return c.n } }
    func down() { counts.withLockedValue { $0.n -= 1 } }
    var value: Int { counts.withLockedValue { $0.n } }
    var highest: Int { counts.withLockedValue { $0.peak } }
}

func waitUntil(_ what: String, timeout: Double = 60, _ cond: () throws -> Bool) async throws {
    let deadline = Date().addingTimeInterval(timeout)
    while try !cond() {
        guard Date() < deadline else { Issue.record("timed out waiting for \(what)"); return }
        try await Task.sleep(nanoseconds: 10_000_000)
    }
}

@Suite struct JobRuntimeTests {
    struct Bed {
        let ws: Workspace
        let store: SQLiteJobStore
        init() throws {
            let root = FileManager.default.temporaryDirectory.appendingPathComponent("ka-jobs-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
            ws = Workspace(root: root, stateDir: root.appendingPathComponent(".ka"))
            store = try SQLiteStateStore.open(ws).jobs
        }
        func runner(_ transports: [any HostTransport] = []) throws -> JobRunner {
            var r = JobRunner(store: store, workspace: ws,
                              transports: StaticTransports(Dictionary(uniqueKeysWithValues: transports.map { ($0.host, $0) })))
            r.cancelPollInterval = .milliseconds(20)
            return r
        }
    }

    static let fresnel: HostName = { do { return try HostName("fresnel") } catch { fatalError("\(error)") } }()

    static func echo(_ name: String, _ text: String, lane: String = "host:fresnel", resumption: Resumption = .rerun) -> JobStep {
        JobStep(name, lanes: [lane], resumption: resumption) { ctx in
            let r = try await ctx.run(RemoteCommand(["echo", RemoteArgument(text)]), on: fresnel)
            return r.stdoutText.trimmingCharacters(in: .newlines)
        }
    }

    static func echoing() throws -> ScriptedTransport {
        try ScriptedTransport("fresnel") { cmd, onLine in
            let text = cmd.argv.dropFirst().map(\.description).joined(separator: " ")
            onLine?(OutputLine(.stdout, Array(text.utf8)))
            return CommandResult(status: 0, stdout: Array((text + "\n").utf8), stderr: [])
        }
    }

    @Test func jobIDsAreValidPathComponentsThatSortByTime() throws {
        let t0 = Date(timeIntervalSince1970: 1_796_000_000)
        let a = JobID.make(subject: "fresnel", at: t0, random: 0xa3f9)
        let b = JobID.make(subject: "fresnel", at: t0.addingTimeInterval(3600), random: 0x0001)
        #expect(a.value == "fresnel-20261130-0053-a3f9", "\(a)")
        #expect(JobID.make(subject: "fresnel", at: t0, random: 1).value == "fresnel-20261130-0053-0001")
        #expect(a < b)
        #expect(try JobID(a.value) == a)
        for bad in ["", "../x-20261130-1412-a3f9", "fresnel-20261130-1412-A3F9", "fresnel-2026113-1412-a3f9", "fresnel/x-20261130-1412-a3f9",
                    "fresnel-20261130-1412-a3f9\n", "-20261130-1412-a3f9", "fresnel-20261130-1412"] {
            #expect(throws: KAError.self, "\(bad)") { try JobID(bad) }
        }
    }

    @Test func aJobRunsItsStepsAndJournalsEachWithItsOutputInTheLog() async throws {
        let bed = try Bed()
        let t = try Self.echoing()
        let steps = [Self.echo("one", "first"), Self.echo("two", "second; $(rm -rf /)"), Self.echo("three", "third")]
        let runner = try bed.runner([t])
        let job = try runner.create(verb: "preflight", arguments: ["fresnel"], pins: [], subject: "fresnel", origin: .cli(user: "t"), steps: steps)
        #expect(job.state == .queued && job.lanes == ["host:fresnel"])
        let ended = try await runner.run(job.id, steps: steps)
        #expect(ended.state == .succeeded)
        #expect(ended.steps.map(\.state) == [.succeeded, .succeeded, .succeeded])
        #expect(ended.steps.map(\.outcome) == ["first", "second; $(rm -rf /)", "third"])
        #expect(ended.steps.allSatisfy { $0.attempts == 1 && $0.startedAt != nil && $0.finishedAt != nil && $0.logOffset != nil })
        // what the store holds is what the runner returned
        #expect(try bed.store.require(job.id) == ended)
        let log = try String(contentsOf: JobLog.url(bed.ws, job.id), encoding: .utf8)
        for line in ["fresnel stdout| first", "fresnel stdout| second; $(rm -rf /)", "fresnel stdout| third", "step 2/3: two", "job succeeded"] {
            #expect(log.contains(line), "log lacks '\(line)':\n\(log)")
        }
        // each step's offset points at its own lines
        let bytes = try Data(contentsOf: JobLog.url(bed.ws, job.id))
        let second = try #require(ended.steps[1].logOffset)
        #expect(String(decoding: bytes.dropFirst(Int(second)), as: UTF8.self).split(separator: "\n").first?.hasSuffix("step 2/3: two") == true)
        #expect(t.calls == ["echo first", "echo second; $(rm -rf /)", "echo third"])
    }

    @Test func aFailedStepFailsTheJobAndTheRestNeverRun() async throws {
        let bed = try Bed()
        let t = try ScriptedTransport("fresnel") { cmd, _ in
            CommandResult(status: cmd.argv.first == "false" ? 1 : 0, stdout: [], stderr: Array("no such thing\n".utf8))
        }
        let bad = JobStep("check", lanes: ["host:fresnel"], resumption: .rerun) { ctx in
            let r = try await ctx.run(RemoteCommand(["false"]), on: Self.fresnel)
            if !r.succeeded { throw KAError.failure("host fresnel", "`false` exited \(r.status)") }
            return "ok"
        }
        let steps = [Self.echo("one", "a"), bad, Self.echo("three", "c")]
        let runner = try bed.runner([t])
        let job = try runner.create(verb: "preflight", arguments: [], pins: [], subject: "fresnel", origin: .cli(user: "t"), steps: steps)
        let ended = try await runner.run(job.id, steps: steps)
        #expect(ended.state == .failed)
        #expect(ended.steps.map(\.state) == [.succeeded, .failed, .pending])
        #expect(ended.detail?.contains("step 'check' failed") == true && ended.detail?.contains("exited 1") == true, "\(ended.detail ?? "")")
        #expect(t.calls == ["echo a", "false"])
    }

    /// The same lane: one after the other, across two runners as across two processes (separate flocks).
    /// Different lanes: at the same time.
    @Test func jobsOnOneLaneRunOneAtATimeAndOnDifferentLanesTogether() async throws {
        let bed = try Bed()
        let inside = Counter()
        let release = FaultGateLike()
        func held(_ lane: String) -> JobStep {
            JobStep("hold \(lane)", lanes: [lane], resumption: .rerun) { _ in
                inside.up()
                defer { inside.down() }
                try await release.wait()
                return "held"
            }
        }
        let runner = try bed.runner()
        // different lanes: both get inside
        let a = try runner.create(verb: "t", arguments: [], pins: [], subject: "fresnel", origin: .cli(user: "t"), steps: [held("host:fresnel")])
        let b = try runner.create(verb: "t", arguments: [], pins: [], subject: "ohm", origin: .cli(user: "t"), steps: [held("host:ohm")])
        let ta = Task { try await runner.run(a.id, steps: [held("host:fresnel")]) }
        let tb = Task { try await runner.run(b.id, steps: [held("host:ohm")]) }
        try await waitUntil("both jobs inside their steps") { inside.value == 2 }
        release.open()
        #expect(try await ta.value.state == .succeeded)
        #expect(try await tb.value.state == .succeeded)

        // one lane: the second waits, says behind whom, and runs after
        let inside2 = Counter()
        let gate = FaultGateLike()
        let step = JobStep("hold", lanes: ["host:boltzmann"], resumption: .rerun) { _ in
            inside2.up(); defer { inside2.down() }
            try await gate.wait()
            return "held"
        }
        let c = try runner.create(verb: "t", arguments: [], pins: [], subject: "boltzmann", origin: .cli(user: "t"), steps: [step])
        let d = try runner.create(verb: "t", arguments: [], pins: [], subject: "boltzmann", origin: .cli(user: "t"), steps: [step])
        let tc = Task { try await runner.run(c.id, steps: [step]) }
        try await waitUntil("the first job inside") { inside2.value == 1 }
        let td = Task { try await runner.run(d.id, steps: [step]) }
        try await waitUntil("the second job waiting") { try bed.store.require(d.id).state == .waiting }
        let waiting = try bed.store.require(d.id)
        #expect(waiting.detail?.contains("waiting for host:boltzmann, held by pid \(getpid()): job \(c.id)") == true, "\(waiting.detail ?? "")")
        #expect(inside2.value == 1)
        gate.open()
        #expect(try await tc.value.state == .succeeded)
        #expect(try await td.value.state == .succeeded)
        #expect(inside2.highest == 1, "never both inside the one lane")
        let (first, second) = (try bed.store.require(c.id), try bed.store.require(d.id))
        #expect(try #require(second.steps[0].startedAt) >= #require(first.steps[0].finishedAt))
    }

    /// `ka jobs cancel` from anywhere sets a flag in the store; the runner sees it, cancels the step's task (its
    /// commands are killed) and records the job cancelled.
    @Test func cancelFromTheStoreStopsTheRunningStep() async throws {
        let bed = try Bed()
        let started = Counter(), sawCancel = Counter()
        let step = JobStep("sleep 600", lanes: ["host:fresnel"], resumption: .rerun) { _ in
            started.up()
            do { try await Task.sleep(nanoseconds: 600_000_000_000) } catch { sawCancel.up(); throw error }
            return "slept"
        }
        let runner = try bed.runner()
        let job = try runner.create(verb: "t", arguments: [], pins: [], subject: "fresnel", origin: .cli(user: "t"), steps: [step, Self.echo("after", "x")])
        let run = Task { try await runner.run(job.id, steps: [step, Self.echo("after", "x")]) }
        try await waitUntil("the step to start") { started.value == 1 }
        try bed.store.update(job.id) { $0.cancelRequested = true }
        let ended = try await run.value
        #expect(ended.state == .cancelled)
        #expect(ended.steps.map(\.state) == [.failed, .pending])
        #expect(sawCancel.value == 1, "the step's task was cancelled")
    }

    /// A shutdown leaves the job interrupted with its step `running`; on resume each step's Resumption decides:
    /// rerun runs again, check skips what happened, never fails without running twice.
    @Test func resumeAfterAnInterruptionFollowsEachStepsDeclaration() async throws {
        for kind in ["rerun", "check-done", "check-not-done", "never"] {
            let bed = try Bed()
            let runs = Counter()
            let gate = FaultGateLike()
            let resumption: Resumption
            switch kind {
            case "rerun": resumption = .rerun
            case "check-done": resumption = .check { _ in true }
            case "check-not-done": resumption = .check { _ in false }
            default: resumption = .never(leaves: "the host may be rebooting")
            }
            let step = JobStep("the step", lanes: ["host:fresnel"], resumption: resumption) { _ in
                let n = runs.up()
                if n == 1 { try await gate.wait() }   // the first run hangs until the shutdown
                return "ran (\(n))"
            }
            let steps = [Self.echo("before", "b"), step, Self.echo("after", "a")]
            let t = try Self.echoing()
            let runner = try bed.runner([t])
            let job = try runner.create(verb: "t", arguments: [], pins: [], subject: "fresnel", origin: .issue(7, run: 1), steps: steps)
            let first = Task { try await runner.run(job.id, steps: steps) }
            try await waitUntil("\(kind): the step to start") { runs.value == 1 }
            first.cancel()   // what SIGTERM does
            let interrupted = try await first.value
            #expect(interrupted.state == .interrupted, "\(kind)")
            #expect(interrupted.steps.map(\.state) == [.succeeded, .running, .pending], "\(kind)")
            #expect(try runner.orphaned().map(\.id) == [job.id], "\(kind): a restart finds it")

            let resumed = try await runner.run(job.id, steps: steps)
            switch kind {
            case "rerun", "check-not-done":
                #expect(resumed.state == .succeeded && runs.value == 2, "\(kind): ran again")
                #expect(resumed.steps[1].attempts == 2 && resumed.steps[1].outcome == "ran (2)", "\(kind)")
            case "check-done":
                #expect(resumed.state == .succeeded && runs.value == 1, "\(kind): not run again")
                #expect(resumed.steps[1].outcome?.contains("found done") == true, "\(kind)")
            default:
                #expect(resumed.state == .failed && runs.value == 1, "never: never run twice")
                #expect(resumed.detail?.contains("'the step'") == true && resumed.detail?.contains("the host may be rebooting") == true, "\(resumed.detail ?? "")")
                #expect(resumed.steps[2].state == .pending)
            }
            #expect(t.calls.filter { $0 == "echo b" }.count == 1, "\(kind): a finished step is never run again")
        }
    }

    /// kill -9 leaves a job `running` with a dead owner: a restart sees it as orphaned, a live owner's job not.
    @Test func aJobWhoseOwnerDiedIsOrphanedAndALiveOnesIsNot() async throws {
        let bed = try Bed()
        let runner = try bed.runner()
        let dead = Process()
        dead.executableURL = URL(fileURLWithPath: "/bin/true")
        try dead.run()
        dead.waitUntilExit()
        let ghost = ProcessIdentity(pid: dead.processIdentifier, startTicks: 1)
        let a = try runner.create(verb: "t", arguments: [], pins: [], subject: "fresnel", origin: .issue(1, run: 1), steps: [Self.echo("x", "x")])
        let b = try runner.create(verb: "t", arguments: [], pins: [], subject: "ohm", origin: .issue(1, run: 2), steps: [Self.echo("x", "x")])
        try bed.store.update(a.id) { $0.state = .running; $0.owner = ghost; $0.steps[0].state = .running }
        try bed.store.update(b.id) { $0.state = .running; $0.owner = .current; $0.steps[0].state = .running }
        #expect(ProcessIdentity.current.isAlive && !ghost.isAlive)
        #expect(try runner.orphaned().map(\.id) == [a.id])
    }

    @Test func theSQLiteStoreListsNewestFirstByStateAndRefusesUnknownIDs() throws {
        let bed = try Bed()
        let runner = try bed.runner()
        var ids: [JobID] = []
        for _ in 0..<5 {
            ids.append(try runner.create(verb: "t", arguments: ["a b"], pins: [Plan.Pin("lock", "b2:1")], subject: "fresnel", origin: .cli(user: "t"), steps: [Self.echo("x", "x")]).id)
        }
        try bed.store.update(ids[1]) { $0.state = .failed }
        #expect(try bed.store.jobs(limit: 3).count == 3)
        #expect(try bed.store.jobs(states: [.failed], limit: 10).map(\.id) == [ids[1]])
        #expect(try bed.store.jobs(states: [.queued], limit: 10).count == 4)
        let one = try bed.store.require(ids[0])
        #expect(one.arguments == ["a b"] && one.pins == [Plan.Pin("lock", "b2:1")])
        let unknown = try JobID("fresnel-20200101-0000-0000")
        #expect(throws: KAError.self) { try bed.store.require(unknown) }
        #expect(throws: KAError.self) { try bed.store.update(unknown) { $0.state = .failed } }
    }

    /// The journal's steps are rows of their own: every change reads back, a write by another process (another
    /// store on the same file, as `ka jobs cancel` is) is seen by the next update instead of being overwritten,
    /// and a long journal reads back whole.
    @Test func stepRowsReadBackAndAnotherProcesssWriteIsNotLost() throws {
        let bed = try Bed()
        let other = try SQLiteStateStore.open(bed.ws).jobs   // its own cache of what it wrote, like another process
        let runner = try bed.runner()
        let steps = (0..<150).map { Self.echo("step \($0)", "x") }
        let id = try runner.create(verb: "t", arguments: [], pins: [], subject: "fresnel", origin: .cli(user: "t"), steps: steps).id
        for i in 0..<150 {
            try bed.store.update(id) { $0.steps[i].state = .running; $0.steps[i].attempts += 1 }
            try bed.store.update(id) { $0.steps[i].state = .succeeded; $0.steps[i].outcome = "ok \(i)" }
            if i == 70 { try other.update(id) { $0.cancelRequested = true } }
        }
        let mine = try bed.store.update(id) { $0.state = .succeeded }
        #expect(mine.cancelRequested, "the other store's write was lost")
        let read = try other.require(id)
        #expect(read == mine)
        #expect(read.steps.count == 150 && read.steps.allSatisfy { $0.state == .succeeded && $0.attempts == 1 })
        #expect(read.steps[149].outcome == "ok 149")
        // and the other store, which wrote at step 70, reads the newer journal before it changes it
        let theirs = try other.update(id) { $0.detail = "seen by both" }
        #expect(theirs.steps[149].outcome == "ok 149" && theirs.state == .succeeded)
    }

    /// A state database whose jobs were written before the steps had rows (one JSON record per job) migrates: the
    /// steps move to their rows and every job reads back as it was.
    @Test func aJournalWrittenBeforeStepRowsMigrates() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ka-jobs-v2-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("state.sqlite")
        var job = JobRecord(id: try JobID("fresnel-20261130-1412-a3f9"), verb: "probe", arguments: ["fresnel"], pins: [],
                            lanes: ["host:fresnel"], origin: .cli(user: "t"), steps: ["a", "b", "c"], at: Date(timeIntervalSince1970: 1_796_000_000))
        job.steps[0].state = .succeeded; job.steps[1].outcome = "half"; job.state = .interrupted
        do {
            let pool = try DatabasePool(path: path.path)
            try SQLiteStateStore.migrator.migrate(pool, upTo: "v2-jobs")
            let enc = JSONEncoder(); enc.outputFormatting = .sortedKeys
            try pool.write { db in
                try db.execute(sql: "INSERT INTO jobs (id, verb, state, createdAt, record) VALUES (?, ?, ?, ?, ?)",
                               arguments: [job.id.value, job.verb, job.state.rawValue, job.createdAt, try enc.encode(job)])
            }
        }
        let store = try SQLiteStateStore(path: path).jobs
        #expect(try store.require(job.id) == job)
        let next = try store.update(job.id) { $0.steps[2].state = .succeeded }
        #expect(next.steps.map(\.state) == [.succeeded, .pending, .succeeded] && next.steps[1].outcome == "half")
    }
}

/// An async gate a step waits on until the test opens it; cancelling the waiting task ends the wait.
final class FaultGateLike: Sendable {
    private let opened = OneShot<Void>()
    func open() { opened.set(()) }
    func wait() async throws {
        while await opened.value(waitingUpTo: .seconds(60)) == nil { try Task.checkCancellation() }
    }
}
