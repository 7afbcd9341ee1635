import NIOConcurrencyHelpers

/// A value set once by one part of the process and awaited by others: `set` wakes every waiter at once, and a
/// wait that starts after it returns at once. It replaces sleeping in slices to notice a flag (as Wakeup does for
/// the control loop, which is poked many times; this one fires once).
package final class OneShot<Value: Sendable>: Sendable {
    private struct State {
        var value: Value?
        var waiters: [Int: CheckedContinuation<Value?, Never>] = [:]
        var timers: [Int: Task<Void, Never>] = [:]
        var nextID = 0
    }
    private let state = NIOLockedValueBox(State())

    package init() {}

    /// The value, if set.
    package var value: Value? { state.withLockedValue { $0.value } }

    /// Sets the value and wakes the waiters; only the first call counts.
    package func set(_ value: Value) {
        let (waiters, timers) = state.withLockedValue { s -> ([CheckedContinuation<Value?, Never>], [Task<Void, Never>]) in
            guard s.value == nil else { return ([], []) }
            s.value = value
            defer { s.waiters = [:]; s.timers = [:] }
            return (Array(s.waiters.values), Array(s.timers.values))
        }
        for t in timers { t.cancel() }
        for w in waiters { w.resume(returning: value) }
    }

    /// The value once set, or nil when `limit` passes first or the task is cancelled.
    package func value(waitingUpTo limit: Swift.Duration) async -> Value? {
        let id = state.withLockedValue { s in s.nextID += 1; return s.nextID }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (cont: CheckedContinuation<Value?, Never>) in
                let now: Value?? = state.withLockedValue { s in
                    if let v = s.value { return .some(v) }
                    s.waiters[id] = cont
                    return .none
                }
                if let now { cont.resume(returning: now); return }
                let timer = Task {
                    do { try await Task.sleep(for: limit) } catch { return }   // cancelled: the wait ended first
                    self.giveUp(id)
                }
                state.withLockedValue { s in if s.waiters[id] != nil { s.timers[id] = timer } else { timer.cancel() } }
                // cancelled before the waiter was registered: the cancel handler found nothing to end
                if Task.isCancelled { giveUp(id) }
            }
        } onCancel: {
            giveUp(id)
        }
    }

    /// Ends waiter `id`'s wait with the value as it is now (nil), if it still waits.
    private func giveUp(_ id: Int) {
        let (waiter, timer, value) = state.withLockedValue { s in
            (s.waiters.removeValue(forKey: id), s.timers.removeValue(forKey: id), s.value)
        }
        timer?.cancel()
        waiter?.resume(returning: value)
    }
}
