import Dispatch
import Foundation
import NIOConcurrencyHelpers

/// Where verbs' plans and runs execute: threads of their own, never the cooperative pool's few. A verb's async
/// code still blocks on files, `flock` and subprocesses, and on 2 cores the pool has 2 threads; a verb holding
/// one must not stall the control loop or another comment's `/ka-help` (found by PlanningTests).
final class VerbThreads: TaskExecutor, Sendable {
    static let shared = VerbThreads()
    private let queue = DispatchQueue(label: "ka.verbs", qos: .userInitiated, attributes: .concurrent)

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        queue.async { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}

/// At most `limit` holders at once; the rest wait in order (plans: `max_parallel_runs` at a time).
final class AsyncSlots: Sendable {
    private struct State { var free: Int; var waiting: [CheckedContinuation<Void, Never>] = [] }
    private let state: NIOLockedValueBox<State>

    init(_ limit: Int) { state = NIOLockedValueBox(State(free: max(1, limit))) }

    func acquire() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLockedValue { s -> Bool in
                if s.free > 0 { s.free -= 1; return true }
                s.waiting.append(c)
                return false
            }
            if now { c.resume() }
        }
    }

    func release() {
        let next = state.withLockedValue { s -> CheckedContinuation<Void, Never>? in
            if s.waiting.isEmpty { s.free += 1; return nil }
            return s.waiting.removeFirst()
        }
        next?.resume()
    }
}
