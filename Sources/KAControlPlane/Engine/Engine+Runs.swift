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
    public func recoverInterrupted() throws {
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
    public func startRunnable() throws -> [Task<Void, Never>] {
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

    func execute(_ q: Queued, verb: any Verb) async {
        if let jobVerb = verb as? any JobVerb {
            await executeJob(q, verb: jobVerb)
            return
        }
        nonisolated(unsafe) let verb = verb   // parsed arguments only; used by one task at a time
        // On the verbs' own threads: a verb blocks on files and locks.
        let outcome: (state: RunState, text: String) = await withTaskExecutorPreference(VerbThreads.shared) { [self] in
            do {
                faults.hit(.run, verb: q.verb)
                var ctx = try makeContext()
                ctx.actor = try ledger.readSync { try RunStore.requester($0, run: q.id) }
                // One hold of the tree lock for the pin check and the run: nothing can move in between.
                return try await verb.withTreeAccess(in: ctx) { () async throws -> (state: RunState, text: String) in
                    do {
                        try ctx.policy().admit(try verb.policySubject(in: ctx))
                        let fresh = try await verb.plan(in: ctx)
                        let original = Plan(verb: q.verb, arguments: q.args, steps: [], pins: q.pins)
                        let changed = original.changedPins(comparedTo: fresh)
                        if !changed.isEmpty {
                            return (.failed, "consent void: pinned inputs changed since the plan:\n\n" + changed.map { "- `\($0)`" }.joined(separator: "\n") + "\n\nNothing was done; ask again for a new plan.")
                        }
                        return (.done, try await verb.run(fresh, in: ctx).text)
                    } catch {
                        try await ctx.fileRequestedBlocks(of: error)
                        throw error
                    }
                }
            } catch let e as KAError {
                return (.failed, e.description)
            } catch {
                return (.failed, "\(error)")
            }
        }
        let icon = outcome.state == .done ? "✅ done" : "❌ failed"
        let body = "\(icon): `/ka-\(q.verb) \(q.args.joined(separator: " "))`\n\n" + Self.fold(outcome.text)
        do {
            try ledger.writeSync { db in
                try RunStore.finish(db, id: q.id, state: outcome.state, detail: outcome.text, at: now())
                try ledger.enqueue(.editComment(targetRef: "status-\(q.id)", body: body), ref: "status-\(q.id)-final", in: db, at: now())
            }
        } catch {
            // stays 'running': the next start fails it with a reply
            logger.error("run #\(q.id): cannot record its outcome: \(error)")
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
