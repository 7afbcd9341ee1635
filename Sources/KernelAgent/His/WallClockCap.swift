import Foundation

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
                let error = await onTimeout()
                if outcome.settle(.failure(error)) { work.cancel() }
            }
            outcome.onSettle { work.cancel(); timer.cancel() }
        }
    } onCancel: {
        outcome.settle(.failure(CancellationError()))
    }
}

/// The first result wins; later ones are dropped. Safe from any thread.
final class FirstOutcome<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<T, Error>?
    private var early: Result<T, Error>?
    private var settled = false
    private var cleanup: (@Sendable () -> Void)?
    private struct Winner { let continuation: CheckedContinuation<T, Error>?; let cleanup: (@Sendable () -> Void)? }

    func install(_ c: CheckedContinuation<T, Error>) {
        let pending: Result<T, Error>? = lock.withLock {
            if let early { return early }
            continuation = c
            return nil
        }
        if let pending { c.resume(with: pending) }
    }

    func onSettle(_ f: @escaping @Sendable () -> Void) {
        let runNow = lock.withLock { () -> Bool in
            if settled { return true }
            cleanup = f
            return false
        }
        if runNow { f() }
    }

    /// True when this result is the one that counts.
    @discardableResult
    func settle(_ result: Result<T, Error>) -> Bool {
        let winner: Winner? = lock.withLock {
            guard !settled else { return nil }
            settled = true
            defer { continuation = nil; cleanup = nil }
            if continuation == nil { early = result }
            return Winner(continuation: continuation, cleanup: cleanup)
        }
        guard let winner else { return false }
        winner.continuation?.resume(with: result)
        winner.cleanup?()
        return true
    }
}
