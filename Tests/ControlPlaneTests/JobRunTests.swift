import Foundation
import GRDB
import NIOConcurrencyHelpers
import Testing
@testable import KAControlPlane
@testable import KernelAgent

/// A host for the bot's job runs: answers preflight's commands; a step can be held until the test lets it go.
final class PreflightHost: HostTransport, Sendable {
    let host: HostName
    var address: String { "kbuild@192.0.2.10:22" }   // never dialled: this transport answers in-process
    private let calls = NIOLockedValueBox<[String]>([])
    private let released = OneShot<Void>()
    init(_ name: String, holdDF: Bool) throws { host = try HostName(name); if !holdDF { released.set(()) } }

    var recorded: [String] { calls.withLockedValue { $0 } }
    func release() { released.set(()) }

    func run(_ command: RemoteCommand, onLine: (@Sendable (OutputLine) -> Void)?) async throws -> CommandResult {
        let argv = command.argv.map(\.description)
        calls.withLockedValue { $0.append(argv.prefix(2).joined(separator: " ")) }
        func out(_ s: String) -> CommandResult {
            for l in s.split(separator: "\n") { onLine?(OutputLine(.stdout, Array(l.utf8))) }
            return CommandResult(status: 0, stdout: Array(s.utf8), stderr: [])
        }
        switch argv.first {
        case "uname": return out("\(host)\n")
        case "df":
            // cancellable, as a killed ssh is
            while await released.value(waitingUpTo: .seconds(60)) == nil { try Task.checkCancellation() }
            return out("Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/x 100000000 1000 99000000 1% /srv\n")
        case "sh": return out(argv.dropFirst(4).map { "ok \($0)" }.joined(separator: "\n") + "\n")
        default: return CommandResult(status: 127, stdout: [], stderr: Array("not found\n".utf8))
        }
    }
    func copy(_ local: URL, toRemote path: String, timeout: Swift.Duration) async throws {}
    func copy(fromRemote path: String, to local: URL, timeout: Swift.Duration) async throws {}
}

@Suite(.serialized) struct JobRunTests {
    func approvePreflight(_ h: Harness) async throws -> Int {
        let g = h.gitea
        let issue = g.createIssue(by: "markus", title: "preflight")
        g.comment(by: "markus", on: issue, body: "/ka-preflight fresnel")
        #expect(await h.settle { g.botComments(on: issue).count == 1 })
        let plan = try #require(g.botComments(on: issue).first).body
        #expect(plan.contains("reachable") && plan.contains("free disk under /srv/kernel-agent") && plan.contains("tools for target"), "\(plan)")
        let nonce = try #require(Harness.nonce(in: plan))
        let yes = g.comment(by: "markus", on: issue, body: "/ka-yes \(nonce)")
        await Harness.waitFor("the approval to be stored") { h.stored(comment: yes) }
        try await h.engine.processPending()
        return issue
    }

    @Test func aConsentedPreflightRunsAsAJobAndTheStatusCommentShowsItsSteps() async throws {
        let h = try Harness()
        let host = try PreflightHost("fresnel", holdDF: false)
        try await h.start(transports: StaticTransports([host.host: host]))
        let issue = try await approvePreflight(h)
        #expect(await h.settle { h.gitea.botComments(on: issue).contains { $0.body.contains("✅ done") } })
        let final = try #require(h.gitea.botComments(on: issue).first { $0.body.contains("✅ done") }).body
        #expect(final.contains("✓ reachable: answers at kbuild@192.0.2.10:22 as fresnel"), "\(final)")
        #expect(final.contains("✓ tools for target: pacman") && final.contains("preflight fresnel: ok"), "\(final)")
        let jobs = try SQLiteStateStore.open(Workspace(root: h.root, stateDir: h.root.appendingPathComponent(".ka"))).jobs.jobs()
        let runID = try h.ledger.readSync { try Int64.fetchOne($0, sql: "SELECT id FROM runs WHERE nonce IS NOT NULL") }
        #expect(jobs.count == 1 && jobs[0].state == .succeeded && jobs[0].origin == .issue(issue, run: runID ?? -1), "\(jobs)")
        #expect(host.recorded == ["uname -n", "df -Pk", "sh -c"])
        // the status comment is edited at most once per step, plus "running" and the final reply
        let edits = try h.ledger.readSync { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM outbox WHERE kind = 'editComment' AND ref LIKE ?", arguments: ["status-\(runID ?? -1)-%"]) } ?? 0
        #expect(edits >= 2 && edits <= jobs[0].steps.count + 2, "\(edits) edits for \(jobs[0].steps.count) steps")
        let metrics = try h.engine.jobMetricsText()
        #expect(metrics.contains("ka_jobs{state=\"succeeded\"} 1\n") && metrics.contains("ka_jobs{state=\"running\"} 0\n"), "\(metrics)")
        #expect(metrics.contains("ka_job_step_seconds_count{verb=\"preflight\",step=\"reachable\"} 1\n"), "\(metrics)")
    }

    /// SIGTERM mid-step: the job is interrupted (its step's command cancelled), the run stays running; the next
    /// start queues it again and the job resumes: the finished step is not run again, the interrupted one
    /// (declared safe to rerun) is.
    @Test func aShutdownInterruptsTheJobAndTheNextStartResumesIt() async throws {
        let h = try Harness()
        let host = try PreflightHost("fresnel", holdDF: true)
        try await h.start(transports: StaticTransports([host.host: host]))
        let issue = try await approvePreflight(h)
        let started = try h.engine.startRunnable()
        #expect(started.count == 1)
        await Harness.waitFor("the df step to be running") { host.recorded.contains("df -Pk") }
        h.engine.interruptJobs()
        for t in started { await t.value }
        let state = try h.ledger.readSync { try String.fetchOne($0, sql: "SELECT state FROM runs WHERE nonce IS NOT NULL") }
        #expect(state == "running", "an interrupted job's run waits for the restart")
        let store = try SQLiteStateStore.open(Workspace(root: h.root, stateDir: h.root.appendingPathComponent(".ka"))).jobs
        let interrupted = try #require(try store.jobs().first)
        #expect(interrupted.state == .interrupted && interrupted.steps.map(\.state) == [.succeeded, .running, .pending], "\(interrupted)")

        host.release()
        try h.engine.recoverInterrupted()   // what the next start does
        #expect(try h.ledger.readSync { try String.fetchOne($0, sql: "SELECT state FROM runs WHERE nonce IS NOT NULL") } == "queued")
        #expect(await h.settle { h.gitea.botComments(on: issue).contains { $0.body.contains("✅ done") } })
        let resumed = try #require(try store.jobs().first)
        #expect(resumed.id == interrupted.id && resumed.state == .succeeded)
        #expect(resumed.steps.map(\.attempts) == [1, 2, 1])
        #expect(host.recorded == ["uname -n", "df -Pk", "df -Pk", "sh -c"], "reachable ran once; df again")
    }

    @Test func aQueuedRunThatNoLongerParsesIsFailedWithAReply() async throws {
        let h = try Harness()
        try await h.start()
        let issue = try await approvePreflight(h)
        try h.ledger.writeSync { try $0.execute(sql: "UPDATE runs SET args = ? WHERE state = 'queued'", arguments: ["[\"--no-such-flag\"]"]) }
        #expect(try h.engine.startRunnable().isEmpty)
        #expect(try h.ledger.readSync { try String.fetchOne($0, sql: "SELECT state FROM runs WHERE nonce IS NOT NULL") } == "failed")
        #expect(await h.settle { h.gitea.botComments(on: issue).contains { $0.body.contains("no longer parses, so it was not run") } })
    }
}
