import NIOConcurrencyHelpers

/// A wake-up call for one waiting loop: `poke()` wakes the waiter at once, or, when none waits, the next `wait`
/// returns at once. It replaces sleeping in 20 ms slices to notice a flag.
final class Wakeup: Sendable {
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Bool, Never>?
        var timer: Task<Void, Never>?
        var generation = 0
    }
    private let state = NIOLockedValueBox(State())

    func poke() { end(nil, poked: true, orKeep: true) }

    /// True when poked (before or during the wait); false when `timeout` passed first, or the task was cancelled.
    func wait(upTo timeout: Duration) async -> Bool {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (cont: CheckedContinuation<Bool, Never>) in
                let generation = state.withLockedValue { s -> Int? in
                    if s.pending { s.pending = false; return nil }
                    s.generation += 1
                    s.waiter = cont
                    return s.generation
                }
                guard let generation else { cont.resume(returning: true); return }
                let timer = Task {
                    do { try await Task.sleep(for: timeout) } catch { return }   // cancelled: the wait ended first
                    self.end(generation, poked: false)
                }
                state.withLockedValue { s in if s.generation == generation && s.waiter != nil { s.timer = timer } else { timer.cancel() } }
                // cancelled before the waiter was registered: the cancel handler found nothing to end
                if Task.isCancelled { end(generation, poked: false) }
            }
        } onCancel: {
            end(nil, poked: false)
        }
    }

    /// Ends the wait of `generation` (nil: whichever is waiting). `orKeep`: with nobody waiting, keep it for the next.
    private func end(_ generation: Int?, poked: Bool, orKeep: Bool = false) {
        let (waiter, timer) = state.withLockedValue { s -> (CheckedContinuation<Bool, Never>?, Task<Void, Never>?) in
            guard let w = s.waiter, generation == nil || generation == s.generation else {
                if orKeep { s.pending = true }
                return (nil, nil)
            }
            s.waiter = nil
            defer { s.timer = nil }
            return (w, s.timer)
        }
        timer?.cancel()
        waiter?.resume(returning: poked)
    }
}
