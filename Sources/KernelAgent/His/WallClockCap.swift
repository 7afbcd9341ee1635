import Foundation
import NIOConcurrencyHelpers

/// Runs `body` with a hard wall-clock cap: when `cap` passes first, `body`'s task is cancelled and `onTimeout`'s
/// error is thrown at once, without waiting for `body` to notice. A dial timeout does not bound a half-dead peer
/// that accepts and stalls (lmcp's incidents); this does.
func withWallClockCap<T: Sendable>(_ cap: Swift.Duration, onTimeout: @escaping @Sendable () async -> Error,
                                   _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let outcome = FirstOutcome<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, Error>) in
            outcome.install(continuation)
            let work = Task {
                do { outcome.settle(.success(try await body())) } catch { outcome.settle(.failure(error)) }
            }
            let timer = Task {
                do { try await Task.sleep(for: cap) } catch { return }   // cancelled: body finished first
                // Claimed before onTimeout runs: its reset of the session makes the body fail too, and that failure
                // must not answer in the cap's place.
                guard outcome.reserve() else { return }
                let error = await onTimeout()
                outcome.settle(.failure(error), reserved: true)
                work.cancel()
            }
            outcome.onSettle { work.cancel(); timer.cancel() }
        }
    } onCancel: {
        outcome.settle(.failure(CancellationError()))
    }
}

/// The first result wins; later ones are dropped. Safe from any thread.
final class FirstOutcome<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, Error>?
        var early: Result<T, Error>?
        var settled = false
        /// The cap passed: only its own result may settle now.
        var reserved = false
        var cleanup: (@Sendable () -> Void)?
    }
    private let state = NIOLockedValueBox(State())
    private struct Winner { let continuation: CheckedContinuation<T, Error>?; let cleanup: (@Sendable () -> Void)? }

    func install(_ c: CheckedContinuation<T, Error>) {
        let pending: Result<T, Error>? = state.withLockedValue { s in
            if let early = s.early { return early }
            s.continuation = c
            return nil
        }
        if let pending { c.resume(with: pending) }
    }

    func onSettle(_ f: @escaping @Sendable () -> Void) {
        let runNow = state.withLockedValue { s -> Bool in
            if s.settled { return true }
            s.cleanup = f
            return false
        }
        if runNow { f() }
    }

    /// Claims the outcome for a result still being made; false when one is already in.
    func reserve() -> Bool {
        state.withLockedValue { s in
            guard !s.settled, !s.reserved else { return false }
            s.reserved = true
            return true
        }
    }

    /// True when this result is the one that counts. `reserved`: the result of the one who reserved the outcome.
    @discardableResult
    func settle(_ result: Result<T, Error>, reserved: Bool = false) -> Bool {
        let winner: Winner? = state.withLockedValue { s in
            guard !s.settled, reserved || !s.reserved else { return nil }
            s.settled = true
            defer { s.continuation = nil; s.cleanup = nil }
            if s.continuation == nil { s.early = result }
            return Winner(continuation: s.continuation, cleanup: s.cleanup)
        }
        guard let winner else { return false }
        winner.continuation?.resume(with: result)
        winner.cleanup?()
        return true
    }
}
