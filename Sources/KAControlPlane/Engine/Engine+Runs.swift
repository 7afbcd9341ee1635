import ArgumentParser
import Foundation
import GRDB
import KernelAgent
import Logging
import NIOConcurrencyHelpers

/// The scheduler and the executor: recovery at start, queued runs started when their lane is free (up to
/// `max_parallel_runs`), each run re-checking its pins under the tree lock before it runs.
extension Engine {
    // MARK: recovery

    /// On start. A run that was running when the process died is marked failed and says so; queued ones stay
    /// queued. A command that was being handled (planning, answering) is failed with a reply: it may be what
    /// killed the process, so it is never handled again.
    package func recoverInterrupted() throws {
        try ledger.writeSync { db in
            let running = try RunStore.running(db)
            let resumed = try requeueResumableJobs(db, runningIDs: running)
            for id in running where !resumed.contains(id) {
                try RunStore.finish(db, id: id, state: .failed, detail: "interrupted by a restart", at: now())
                try ledger.enqueue(.editComment(targetRef: "status-\(id)", body: "❌ failed: kernel-agent restarted while this ran; it was not retried. Check the state (`/ka-status`) and invoke it again."),
                                   ref: "status-\(id)-interrupted", in: db, at: now())
            }
            for h in try RunStore.handling(db) {
                try RunStore.failHandling(db, h, at: now())
                try ledger.enqueue(.comment(issue: h.issue, body: "@\(h.requester) ❌ kernel-agent stopped while handling `\(h.raw)` and did not retry it; "
                                            + "nothing was done. Check the state (`/ka-status`) and post the command again if you still want it."),
                                   ref: "reply-\(h.key)-\(h.seq)", in: db, at: now())
            }
        }
    }

    // MARK: running

    typealias Queued = RunStore.Queued

    func queuedRuns() throws -> [Queued] {
        try ledger.readSync { db in try RunStore.queued(db) }
    }

    /// Lanes in use right now; a run waits while its lane is busy.
    struct LaneBook { var busy: [String: Int64] = [:]; var announcedWait = Set<Int64>() }

    /// Starts every queued run whose lane is free, up to the parallel limit. Returns the tasks started.
    @discardableResult
    package func startRunnable() throws -> [Task<Void, Never>] {
        var started: [Task<Void, Never>] = []
        for q in try queuedRuns() {
            let verb: any Verb
            do {
                guard let type = Verbs.named(q.verb) else { throw KAError.refusal("/ka-\(q.verb)", "this kernel-agent has no such verb any more") }
                verb = try Verbs.parse(type, q.args)
            } catch {
                // It parsed when it was planned; an upgrade since changed the verb. Fail it once, with a reply.
                let why = (error as? KAError)?.description ?? Verbs.named(q.verb).map { Verbs.usageReply($0, error: error) } ?? "\(error)"
                try ledger.writeSync { db in
                    try RunStore.finish(db, id: q.id, state: .failed, detail: why, onlyIf: .queued, at: now())
                    try ledger.enqueue(.editComment(targetRef: "status-\(q.id)", body: "❌ failed: `/ka-\(q.verb) \(q.args.joined(separator: " "))` no longer parses, so it was not run:\n\n\(why)"),
                                       ref: "status-\(q.id)-unparsable", in: db, at: now())
                }
                continue
            }
            // read-only verbs share no lane with anything
            let lane = verb.lane == .none ? "run-\(q.id)" : verb.lane.description
            enum Decision { case wait(holder: Int64, announce: Bool), full, go }
            let decision = lanes.withLockedValue { book -> Decision in
                if let holder = book.busy[lane] { return .wait(holder: holder, announce: book.announcedWait.insert(q.id).inserted) }
                if book.busy.count >= config.maxParallelRuns { return .full }
                book.busy[lane] = q.id
                return .go
            }
            switch decision {
            case .full: return started
            case let .wait(holder, announce):
                if announce {
                    try ledger.enqueue(.editComment(targetRef: "status-\(q.id)", body: "⏳ queued: `/ka-\(q.verb) \(q.args.joined(separator: " "))` waits behind run #\(holder) on \(lane)"),
                                       ref: "status-\(q.id)-wait")
                }
                continue
            case .go: break
            }
            let claimed: Bool
            do {
                claimed = try ledger.writeSync { db -> Bool in
                    guard try RunStore.start(db, id: q.id, at: now()) else { return false }
                    try ledger.enqueue(.editComment(targetRef: "status-\(q.id)", body: "🏃 running: `/ka-\(q.verb) \(q.args.joined(separator: " "))`"), ref: "status-\(q.id)-running", in: db, at: now())
                    return true
                }
            } catch {
                release(lane)
                throw error
            }
            guard claimed else { release(lane); continue }
            let parsed = UncheckedSendable(verb)   // parsed arguments only, handed to the one task that runs them
            started.append(Task.detached { [self] in
                await self.execute(q, verb: parsed.value)
                self.release(lane)
            })
        }
        return started
    }

    func release(_ lane: String) { _ = lanes.withLockedValue { $0.busy.removeValue(forKey: lane) } }

    /// What a consented run came to on the verbs' threads: finished (inline, refused, consent void), or a job to run.
    enum RunStart {
        case finished(RunState, String)
        case job(VerbContext, JobRecord, JobSpec)
    }

    /// The engine's adapter of the pipeline: the verbs' own threads for the plan, the pin check and an inline run
    /// (they block on files and locks), the status comment, and the job runtime for a job verb.
    func execute(_ q: Queued, verb: any Verb) async {
        nonisolated(unsafe) let verb = verb   // parsed arguments only; used by one task at a time
        let start: RunStart = await withTaskExecutorPreference(VerbThreads.shared) { [self] in
            do {
                faults.hit(.run, verb: q.verb)
                var ctx = try makeContext()
                ctx.actor = try ledger.readSync { try RunStore.requester($0, run: q.id) }
                // A run resumed after a restart goes on with its own job.
                let resuming = type(of: verb).runsAsJob ? try jobOf(run: q.id, in: ctx.jobs) : nil
                switch try await VerbPipeline.perform(verb, consented: q.pins, arguments: q.args, origin: .issue(q.issue, run: q.id), in: ctx, resuming: resuming) {
                case let .done(_, outcome): return .finished(.done, outcome.text)
                case let .consentVoid(changed):
                    return .finished(.failed, "consent void: pinned inputs changed since the plan:\n\n" + changed.map { "- `\($0)`" }.joined(separator: "\n")
                                     + "\n\nNothing was done; ask again for a new plan.")
                case let .job(job, spec): return .job(ctx, job, spec)
                }
            } catch let e as KAError {
                return .finished(.failed, e.description)
            } catch {
                return .finished(.failed, "\(error)")
            }
        }
        switch start {
        case let .finished(state, text):
            let icon = state == .done ? "✅ done" : "❌ failed"
            finishRun(q, state: state, body: "\(icon): `/ka-\(q.verb) \(q.args.joined(separator: " "))`\n\n" + Self.fold(text), detail: text)
        case let .job(ctx, job, spec):
            await runJob(q, ctx: ctx, job: job, spec: spec)
        }
    }

    /// Long output goes into <details> with its tail visible.
    static func fold(_ text: String) -> String {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.count <= 25 { return MarkdownText.block(text.trimmingCharacters(in: .newlines)) }
        let tail = lines.suffix(15).joined(separator: "\n")
        return "<details><summary>full output (\(lines.count) lines)</summary>\n\n\(MarkdownText.block(text))\n</details>\n\nlast lines:\n\(MarkdownText.block(tail))"
    }
}
