import Foundation

/// A bounded producer/consumer that keeps index order: `produce(i)` runs on worker threads for every `i` in
/// `0..<count`, and the calling thread hands each result to `consume` in index order. At most `window` results
/// exist ahead of the consumer, so memory is bounded by the window whatever the count, and the consumer's
/// work (appending, hashing and writing in order) overlaps the workers' (reading, parsing, hashing each item).
enum OrderedPipeline {
    static var defaultWorkers: Int { max(1, ProcessInfo.processInfo.activeProcessorCount) }

    /// If `consume` throws, the workers stop taking new indices, the ones under way finish, and the error is
    /// rethrown once every worker has returned (nothing keeps running behind the caller's back).
    static func run<T: Sendable>(count: Int, window: Int = 64, workers: Int = defaultWorkers,
                                 produce: @escaping @Sendable (Int) -> T,
                                 consume: (Int, T) throws -> Void) throws {
        guard count > 0 else { return }
        if count <= 4 {   // a thread costs more than a few patches (ka status scans small series)
            for i in 0..<count { try consume(i, produce(i)) }
            return
        }
        let state = State<T>(window: max(1, min(window, count)))
        let group = DispatchGroup()
        for _ in 0..<max(1, min(workers, count)) {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                while let i = state.take(count: count) { state.deliver(i, produce(i)) }
            }
        }
        defer { group.wait() }
        do {
            for i in 0..<count { try consume(i, state.result(i)) }
        } catch {
            state.stop()
            throw error
        }
    }

    // Unchecked: its vars are touched only with `cond` locked. Not a NIOLockedValueBox: the threads block on the
    // condition variable (it has none).
    private final class State<T: Sendable>: @unchecked Sendable {
        private let cond = NSCondition()
        let window: Int
        /// Results waiting for the consumer, at `index % window`.
        private var slots: [T?]
        /// The next index a worker takes, and how many results the consumer took.
        private var next = 0, consumed = 0
        private var stopped = false

        init(window: Int) {
            self.window = window
            slots = Array(repeating: nil, count: window)
        }

        /// The next index to produce, once it is within the window; nil when all are taken or the run stopped.
        func take(count: Int) -> Int? {
            cond.lock(); defer { cond.unlock() }
            while !stopped && next < count && next >= consumed + window { cond.wait() }
            guard !stopped, next < count else { return nil }
            next += 1
            return next - 1
        }

        func deliver(_ i: Int, _ value: T) {
            cond.lock(); defer { cond.unlock() }
            slots[i % window] = value
            cond.broadcast()
        }

        func result(_ i: Int) -> T {
            cond.lock(); defer { cond.unlock() }
            while true {
                if let v = slots[i % window] {
                    slots[i % window] = nil
                    consumed = i + 1
                    cond.broadcast()
                    return v
                }
                cond.wait()
            }
        }

        func stop() {
            cond.lock(); defer { cond.unlock() }
            stopped = true
            cond.broadcast()
        }
    }
}
