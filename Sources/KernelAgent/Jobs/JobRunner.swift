import Foundation
import NIOConcurrencyHelpers

/// Told of every change to a job's journal (the CLI prints a line per step; the bot edits its status comment).
package protocol JobObserver: Sendable {
    func jobChanged(_ job: JobRecord, log: JobLog)
}

/// Why a running job was stopped: a person's `ka jobs cancel` ends it; a shutdown (SIGTERM) leaves it
/// interrupted, to be resumed.
package enum StopReason: Sendable { case cancelRequested, shutdown }

/// Runs jobs of named steps: takes their lanes (across processes), journals every step in the job store,
/// logs every line, stops on cancel or shutdown, and resumes an interrupted job as each step allows.
package struct JobRunner: Sendable {
    package let store: any JobStore
    package let workspace: Workspace
    package let transports: any TransportProvider
    package let observer: (any JobObserver)?
    package let now: @Sendable () -> Date
    /// How often a running job looks for a `ka jobs cancel` from another process.
    package var cancelPollInterval: Swift.Duration = .milliseconds(500)
    /// The journal as last written, for the heartbeat of a long step (no store read per output line).
    let latest = LatestJob()

    package init(store: any JobStore, workspace: Workspace, transports: any TransportProvider,
                observer: (any JobObserver)? = nil, now: @escaping @Sendable () -> Date = { Date() }) {
        self.store = store; self.workspace = workspace; self.transports = transports; self.observer = observer; self.now = now
    }

    /// Records a new job for `steps` (state queued), ready for `run`.
    package func create(verb: String, arguments: [String], pins: [Plan.Pin], subject: String, origin: JobOrigin,
                       steps: [JobStep]) throws -> JobRecord {
        let lanes = Array(steps.reduce(into: Set<String>()) { $0.formUnion($1.lanes) }).sorted()
        for _ in 0..<8 {
            let id = JobID.make(subject: subject, at: now())
            // The random suffix may collide with a job of the same minute: then draw again.
            if try store.job(id) != nil { continue }
            let job = JobRecord(id: id, verb: verb, arguments: arguments, pins: pins, lanes: lanes, origin: origin,
                                steps: steps.map(\.name), at: now())
            try store.insert(job)
            return job
        }
        throw KAError.failure("job store", "cannot find a free job id for \(subject)")
    }

    /// Runs (or resumes) job `id` with `steps`, which must be the steps it was created with. Returns the job as
    /// it ended: succeeded, failed, cancelled, or interrupted (by a shutdown: the task was cancelled).
    @discardableResult
    package func run(_ id: JobID, steps: [JobStep], noWait: Bool = false) async throws -> JobRecord {
        var job = try store.require(id)
        guard job.steps.map(\.name) == steps.map(\.name) else {
            return try finish(id, .failed, "its steps changed since it was created (\(job.steps.map(\.name).joined(separator: ", ")) → "
                              + "\(steps.map(\.name).joined(separator: ", "))); nothing more was run")
        }
        guard !job.state.isFinished else { return job }
        let log = try JobLog(workspace, id)
        try log.append("ka", job.state == .queued ? "job \(id): \(job.command)" : "job \(id): resuming after \(job.state.rawValue)")

        // Lanes: all or none, across processes.
        let store = self.store, observer = self.observer
        let locks: LaneLocks
        do {
            locks = try await LaneLocks.acquire(workspace, lanes: job.lanes, holder: "job \(id) (\(job.command))", noWait: noWait) { waiting in
                // A note for people; if the store cannot take it, the wait goes on and the run records the outcome.
                if let updated = try? store.update(id, { $0.state = .waiting; $0.detail = waiting }) { observer?.jobChanged(updated, log: log) }
            }
        } catch let e as KAError where Task.isCancelled {
            _ = e
            return try finish(id, .interrupted, "stopped while waiting for its lanes")
        }
        defer { locks.release() }

        job = try update(id, log) { j in
            j.state = .running; j.detail = nil; j.owner = .current
            if j.startedAt == nil { j.startedAt = now() }
        }

        for (index, step) in steps.enumerated() {
            let record = job.steps[index]
            if record.state == .succeeded || record.state == .skipped { continue }
            var ctx = StepContext(job: id, step: step.name, workspace: workspace, log: log, transports: transports, now: now)
            if let observer {
                let latest = self.latest
                ctx.heartbeat = { if let j = latest.value { observer.jobChanged(j, log: log) } }
            }
            ctx.warn = { [store, observer, latest] text in
                do {
                    let r = try store.update(id) { $0.detail = text }
                    latest.value = r
                    observer?.jobChanged(r, log: log)
                } catch {
                    // the warning is in the log already; a store that cannot take it now loses only the highlight
                    do { try log.append("ka", "cannot record the warning in the journal: \(Self.text(error))") } catch {}
                }
            }
            ctx.progress = { [store, observer, latest] text in
                do {
                    let r = try store.update(id) { $0.steps[index].progress = text }
                    latest.value = r
                    observer?.jobChanged(r, log: log)
                } catch {
                    // the progress line is in the log already; only its highlight is lost
                    do { try log.append("ka", "cannot record the progress in the journal: \(Self.text(error))") } catch {}
                }
            }
            if record.state == .running {
                // It was interrupted mid-step: what now is the step's own call.
                switch step.resumption {
                case .rerun:
                    try log.append("ka", "step '\(step.name)' was interrupted; it is safe to run again")
                case let .check(done):
                    let happened: Bool
                    do { happened = try await done(ctx) } catch {
                        return try failStep(id, index, log, "was interrupted, and checking whether it happened failed: \(Self.text(error))")
                    }
                    if happened {
                        job = try update(id, log) { j in
                            j.steps[index].state = .succeeded; j.steps[index].finishedAt = now()
                            j.steps[index].outcome = "found done after the interruption; not run again"
                        }
                        try log.append("ka", "step '\(step.name)': found done after the interruption; not run again")
                        continue
                    }
                    try log.append("ka", "step '\(step.name)': not done yet; running it")
                case let .never(leaves):
                    return try failStep(id, index, log, "was interrupted mid-way and cannot be repeated or checked; \(leaves)")
                }
            }
            if Task.isCancelled { return try stopped(id, index, log, reason: .shutdown) }
            if try store.cancelRequested(id) { return try stopped(id, index, log, reason: .cancelRequested) }

            let offset = log.offset
            job = try update(id, log) { j in
                j.detail = nil   // a warning belongs to the step that raised it
                j.steps[index].state = .running; j.steps[index].startedAt = now(); j.steps[index].finishedAt = nil
                j.steps[index].outcome = nil; j.steps[index].logOffset = offset; j.steps[index].attempts += 1
            }
            try log.append("ka", "step \(index + 1)/\(steps.count): \(step.name)")
            switch await runWatched(step, ctx, id) {
            case let .succeeded(outcome):
                job = try update(id, log) { j in
                    j.steps[index].state = .succeeded; j.steps[index].finishedAt = now(); j.steps[index].outcome = outcome
                }
                try log.append("ka", "✓ \(step.name): \(outcome)")
            case let .failed(error):
                return try failStep(id, index, log, Self.text(error))
            case let .stopped(reason):
                return try stopped(id, index, log, reason: reason)
            }
        }
        return try finish(id, .succeeded, nil, log)
    }

    enum StepEnd { case succeeded(String), failed(Error), stopped(StopReason) }

    /// Runs the step in a child task while a watcher polls the store for `ka jobs cancel` (which another process
    /// writes: nothing wakes this one).
    private func runWatched(_ step: JobStep, _ ctx: StepContext, _ id: JobID) async -> StepEnd {
        let store = self.store, interval = cancelPollInterval
        return await withTaskGroup(of: StepEnd?.self) { group in
            group.addTask {
                do { return .succeeded(try await step.body(ctx)) } catch {
                    return Task.isCancelled ? .stopped(.shutdown) : .failed(error)
                }
            }
            group.addTask {
                while !Task.isCancelled {
                    do { try await Task.sleep(for: interval) } catch { return nil }
                    // A store that cannot be read now is read again at the next tick; the step goes on meanwhile.
                    if (try? store.cancelRequested(id)) == true { return .stopped(.cancelRequested) }
                }
                return nil
            }
            var end: StepEnd = .stopped(.shutdown)
            var stopping: StopReason?
            for await result in group {
                guard let result else { continue }
                if case let .stopped(reason) = result, reason == .cancelRequested {
                    stopping = .cancelRequested
                    group.cancelAll()   // the step's commands are killed, on both sides
                    continue
                }
                end = result
                group.cancelAll()
            }
            if let stopping { return .stopped(stopping) }
            return end
        }
    }

    private func update(_ id: JobID, _ log: JobLog, _ change: (inout JobRecord) -> Void) throws -> JobRecord {
        let r = try store.update(id, change)
        latest.value = r
        observer?.jobChanged(r, log: log)
        return r
    }

    private func failStep(_ id: JobID, _ index: Int, _ log: JobLog, _ why: String) throws -> JobRecord {
        let r = try update(id, log) { j in
            j.steps[index].state = .failed; j.steps[index].finishedAt = now(); j.steps[index].outcome = why
            j.state = .failed; j.finishedAt = now(); j.detail = "step '\(j.steps[index].name)' failed: \(why)"; j.owner = nil
        }
        try log.append("ka", "✗ \(r.steps[index].name): \(why)")
        return r
    }

    private func stopped(_ id: JobID, _ index: Int, _ log: JobLog, reason: StopReason) throws -> JobRecord {
        switch reason {
        case .cancelRequested:
            let r = try update(id, log) { j in
                if j.steps[index].state == .running {
                    j.steps[index].state = .failed; j.steps[index].finishedAt = now(); j.steps[index].outcome = "cancelled"
                }
                j.state = .cancelled; j.finishedAt = now(); j.detail = "cancelled during step '\(j.steps[index].name)'"; j.owner = nil
            }
            try log.append("ka", "cancelled during step '\(r.steps[index].name)'")
            return r
        case .shutdown:
            // The step stays `running` in the journal: on resume its Resumption decides.
            let r = try update(id, log) { j in
                j.state = .interrupted; j.detail = "interrupted during step '\(j.steps[index].name)' by a shutdown"; j.owner = nil
            }
            try log.append("ka", "interrupted during step '\(r.steps[index].name)'")
            return r
        }
    }

    private func finish(_ id: JobID, _ state: JobState, _ detail: String?, _ log: JobLog? = nil) throws -> JobRecord {
        let r = try store.update(id) { j in
            j.state = state; j.detail = detail; j.owner = nil
            if state.isFinished { j.finishedAt = now() }
        }
        if let log {
            try log.append("ka", "job \(state.rawValue)\(detail.map { ": \($0)" } ?? "")")
            observer?.jobChanged(r, log: log)
        }
        return r
    }

    static func text(_ error: Error) -> String {
        (error as? KAError)?.description ?? "\(error)"
    }

    /// Jobs whose runner is gone: interrupted by a shutdown, or `running`/`waiting` with a dead owner (kill -9).
    package func orphaned() throws -> [JobRecord] {
        try store.jobs(states: [.interrupted, .running, .waiting, .queued], limit: 1000).filter { j in
            guard let owner = j.owner else { return j.state != .queued }
            return !owner.isAlive
        }
    }
}

/// The job record as the runner last wrote it.
final class LatestJob: Sendable {
    private let stored = NIOLockedValueBox<JobRecord?>(nil)
    var value: JobRecord? {
        get { stored.withLockedValue { $0 } }
        set { stored.withLockedValue { $0 = newValue } }
    }
}
