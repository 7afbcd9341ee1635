import Foundation
import GRDB
import KernelAgent
import Logging
import NIOConcurrencyHelpers

/// Runs of job verbs (preflight now; build, install later): the consented run becomes a job whose steps run
/// through the job runtime, with the status comment edited from the journal. A shutdown interrupts the job
/// (its remote commands are killed) and leaves the run `running`; the next start resumes it.
extension Engine {
    /// Runs a consented run's job through the job runtime, editing the status comment from its journal. A shutdown
    /// interrupts it (its remote commands are killed) and leaves the run `running`; the next start resumes it.
    func runJob(_ q: Queued, ctx: VerbContext, job: JobRecord, spec: JobSpec) async {
        let command = "/ka-\(q.verb) \(q.args.joined(separator: " "))"
        let steps = spec.steps
        let observer = StatusCommentObserver(engine: self, run: q.id, command: command, now: now)
        // the verbs' threads, not the cooperative pool: steps and their observer block on SQLite, logs and flock
        let work = Task(executorPreference: VerbThreads.shared) { try await VerbPipeline.run(job, steps: steps, observer: observer, in: ctx) }
        jobTasks.withLockedValue { $0[q.id] = { work.cancel() } }
        defer { _ = jobTasks.withLockedValue { $0.removeValue(forKey: q.id) } }
        let ended: JobRecord
        do { ended = try await work.value } catch {
            let text = (error as? KAError)?.description ?? "\(error)"
            finishRun(q, state: .failed, body: "❌ failed: `\(command)` — job \(job.id)\n\n" + Self.fold(text), detail: text)
            return
        }
        let summary = spec.summary(ended, ctx)
        // The link stays outside the fold, where a person sees it.
        var logLine = ""
        if ended.state.isFinished, let link = await publishLog(ended.id, ctx) { logLine = "\n\n📜 log: \(link)" }
        switch ended.state {
        case .interrupted:
            // Left `running`: the next start resumes the job where its steps allow.
            observer.flush(ended, note: "⏸ interrupted by a shutdown: kernel-agent resumes it when it starts again.")
        case .succeeded:
            finishRun(q, state: .done, body: "✅ done: `\(command)` — job \(ended.id)\n\n" + Self.fold(summary) + logLine, detail: summary)
        case .cancelled:
            finishRun(q, state: .failed, body: "🛑 cancelled: `\(command)` — job \(ended.id)\n\n" + Self.fold(summary) + logLine, detail: summary)
        default:
            finishRun(q, state: .failed, body: "❌ failed: `\(command)` — job \(ended.id)\n\n" + Self.fold(summary) + logLine, detail: summary)
        }
    }

    /// Publishes a finished job's log to the log host (KA_CONFIG `logs:`) for the status comment's link; a failure is
    /// logged and left to the next `ka prune`, which publishes what is missing.
    func publishLog(_ job: JobID, _ ctx: VerbContext) async -> String? {
        do {
            return try await JobLogPublisher.publish(job, workspace: ctx.workspace, transports: ctx.transports, pipeline: try ctx.settings().pipeline)
        } catch {
            logger.warning("job \(job): its log was not published (ka prune tries again): \(error)")
            return nil
        }
    }

    /// The job a run started before, if any (a run resumed after a restart).
    func jobOf(run: Int64, in store: any JobStore) throws -> JobRecord? {
        try store.jobs(states: nil, limit: 1000).first { if case let .issue(_, r) = $0.origin { return r == run }; return false }
    }

    func finishRun(_ q: Queued, state: RunState, body: String, detail: String) {
        do {
            try ledger.writeSync { db in
                try RunStore.finish(db, id: q.id, state: state, detail: detail, at: now())
                try ledger.enqueue(.editComment(targetRef: "status-\(q.id)", body: body), ref: "status-\(q.id)-final", in: db, at: now())
            }
        } catch {
            logger.error("run #\(q.id): cannot record its outcome: \(error)")
        }
    }

    /// Jobs by state and step durations (of the newest 1000 jobs), in Prometheus' text format, for /metrics.
    package func jobMetricsText() throws -> String {
        let jobs = try makeContext().jobs.jobs(states: nil, limit: 1000)
        func label(_ s: String) -> String {
            s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
        }
        var out = "# TYPE ka_jobs gauge\n"
        for state in JobState.allCases {
            out += "ka_jobs{state=\"\(state.rawValue)\"} \(jobs.filter { $0.state == state }.count)\n"
        }
        var sums: [String: (Double, Int)] = [:]
        for j in jobs {
            for s in j.steps {
                guard let secs = s.seconds else { continue }
                let key = "verb=\"\(label(j.verb))\",step=\"\(label(s.name))\""
                let old = sums[key] ?? (0, 0)
                sums[key] = (old.0 + secs, old.1 + 1)
            }
        }
        out += "# TYPE ka_job_step_seconds summary\n"
        for (k, v) in sums.sorted(by: { $0.key < $1.key }) {
            out += "ka_job_step_seconds_sum{\(k)} \(String(format: "%.3f", v.0))\nka_job_step_seconds_count{\(k)} \(v.1)\n"
        }
        return out
    }

    /// On SIGTERM: every job stops its step (killing its remote commands) and is left interrupted.
    package func interruptJobs() {
        let cancels = jobTasks.withLockedValue { Array($0.values) }
        if !cancels.isEmpty { logger.info("interrupting \(cancels.count) job(s) for the shutdown") }
        for cancel in cancels { cancel() }
    }

    /// On start, for runs left `running`: a job verb's run whose job can go on is queued again to resume it;
    /// one whose job already ended gets its outcome recorded. Returns the runs it requeued.
    func requeueResumableJobs(_ db: Database, runningIDs: [Int64]) throws -> Set<Int64> {
        guard !runningIDs.isEmpty else { return [] }
        let ctx = try makeContext()
        var requeued = Set<Int64>()
        for id in runningIDs {
            guard let verb = try RunStore.verb(db, run: id),
                  let type = Verbs.named(verb), type.runsAsJob,
                  let job = try jobOf(run: id, in: ctx.jobs), !job.state.isFinished, !(job.owner?.isAlive ?? false) else { continue }
            try RunStore.requeue(db, id: id, at: now())
            try ledger.enqueue(.editComment(targetRef: "status-\(id)", body: "⏳ resuming job \(job.id) after a restart\n\n" + Self.fold(JobsVerb.journal(job))),
                               ref: "status-\(id)-resume-\(Int(now().timeIntervalSince1970))", in: db, at: now())
            requeued.insert(id)
        }
        return requeued
    }
}

/// Edits a run's status comment from its job's journal: the step list with ✓ ⏳ ✗ and the log tail folded,
/// at most once per `interval` while it runs (the final reply is always written).
final class StatusCommentObserver: JobObserver, Sendable {
    let engine: Engine
    let run: Int64
    let command: String
    let now: @Sendable () -> Date
    let interval: TimeInterval
    private struct Edits { var lastEdit: Date?; var lastDetail: String?; var count = 0 }
    private let edits = NIOLockedValueBox(Edits())

    init(engine: Engine, run: Int64, command: String, now: @escaping @Sendable () -> Date, interval: TimeInterval = 10) {
        self.engine = engine; self.run = run; self.command = command; self.now = now; self.interval = interval
    }

    func body(_ job: JobRecord, log: JobLog?, note: String? = nil) -> String {
        var text = "🏃 running: `\(command)` — job \(job.id)\n\n"
        if let note { text = note + "\n\n" }
        if note == nil, job.state == .running, let warning = job.detail { text += "⚠️ \(warning)\n\n" }
        text += job.steps.enumerated().map { i, s in
            "\(s.state.mark) \(i + 1). \(s.name)\(s.outcome.map { ": \($0)" } ?? "")"
                + (s.state == .running ? s.progress.map { " — \($0)" } ?? "" : "")
        }.joined(separator: "\n")
        if let tail = log?.recentLines(15), !tail.isEmpty {
            text += "\n\n<details><summary>log tail</summary>\n\n```\n\(tail.joined(separator: "\n"))\n```\n</details>"
        }
        return text
    }

    func jobChanged(_ job: JobRecord, log: JobLog) {
        guard job.state == .running || job.state == .waiting else { return }   // the end is the final reply's
        let t = now()
        let due: Int? = edits.withLockedValue { e in
            // a new warning is shown at once; everything else at most once per interval
            let warned = job.detail != nil && job.detail != e.lastDetail
            e.lastDetail = job.detail
            if !warned, let last = e.lastEdit, t.timeIntervalSince(last) < interval { return nil }
            e.lastEdit = t
            e.count += 1
            return e.count
        }
        guard let n = due else { return }
        do {
            try engine.ledger.enqueue(.editComment(targetRef: "status-\(run)", body: body(job, log: log)), ref: "status-\(run)-progress-\(job.id)-\(n)", at: t)
        } catch {
            engine.logger.warning("run #\(run): cannot queue a progress edit: \(error)")
        }
    }

    func flush(_ job: JobRecord, note: String) {
        do {
            try engine.ledger.enqueue(.editComment(targetRef: "status-\(run)", body: body(job, log: nil, note: note)),
                                      ref: "status-\(run)-\(job.state.rawValue)-\(Int(now().timeIntervalSince1970))", at: now())
        } catch {
            engine.logger.warning("run #\(run): cannot queue the interrupted note: \(error)")
        }
    }
}
