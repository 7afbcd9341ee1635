import Foundation
import NIOConcurrencyHelpers

/// Measures, from a thread of its own, how long a new task waits for a thread of Swift's cooperative pool (2 threads
/// on a 2-core machine). A test whose in-process client timed out prints its report: a long wait means some other
/// test held the pool's threads with blocking work; a short one means the peer itself was slow.
public final class PoolLatencyProbe: Sendable {
    private struct State { var samples: [(at: Date, seconds: Double)] = []; var stopped = false; var stackDump: String? }
    private let state = NIOLockedValueBox(State())

    public init(every interval: TimeInterval = 0.25) {
        Thread { [self] in
            while !state.withLockedValue({ $0.stopped }) {
                let ran = DispatchSemaphore(value: 0)
                let t0 = Date()
                Task.detached { ran.signal() }
                if ran.wait(timeout: .now() + 8) == .timedOut {
                    dumpStacksOnce()   // what holds the pool, while it holds it
                    _ = ran.wait(timeout: .now() + 60)
                }
                let waited = Date().timeIntervalSince(t0)
                state.withLockedValue { s in s.samples.append((t0, waited)); if s.samples.count > 4000 { s.samples.removeFirst(1000) } }
                Thread.sleep(forTimeInterval: interval)
            }
        }.start()
    }

    public func stop() { state.withLockedValue { $0.stopped = true } }

    /// Where the stacks of the first long stall went (gdb, attached to this process for a moment).
    public var stackDump: String? { state.withLockedValue { $0.stackDump } }

    private func dumpStacksOnce() {
        guard state.withLockedValue({ $0.stackDump == nil }), FileManager.default.isExecutableFile(atPath: "/usr/bin/gdb") else { return }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("ka-pool-stall-\(getpid())-\(UUID().uuidString.prefix(8)).txt").path
        state.withLockedValue { $0.stackDump = file }
        do {
            _ = try TestCommand.runBlocking(["/usr/bin/gdb", "-p", "\(getpid())", "-batch", "-ex", "set pagination off",
                                             "-ex", "set logging file \(file)", "-ex", "set logging overwrite on", "-ex", "set logging redirect on",
                                             "-ex", "set logging enabled on", "-ex", "thread apply all bt 25"])
        } catch {
            state.withLockedValue { $0.stackDump = "gdb failed: \(error)" }
        }
    }

    /// The longest wait, and every wait over `threshold` seconds, with when it began.
    public func report(threshold: Double = 1) -> String {
        let all = state.withLockedValue { $0.samples }
        let worst = all.map(\.seconds).max() ?? 0
        let slow = all.filter { $0.seconds > threshold }.map { String(format: "%@ %.2f s", ISO8601DateFormatter().string(from: $0.at), $0.seconds) }
        return String(format: "cooperative pool: %d samples, longest wait %.2f s", all.count, worst)
            + (slow.isEmpty ? "" : "; waits over \(threshold) s: " + slow.suffix(20).joined(separator: ", "))
            + (stackDump.map { "; the stacks of the first stall over 8 s: \($0)" } ?? "")
    }

    deinit { stop() }
}
