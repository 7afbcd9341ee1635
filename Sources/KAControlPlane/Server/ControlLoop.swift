import Foundation
import Logging
import ServiceLifecycle

/// The one loop that moves work: poll (every interval), handle stored events, start runnable verbs,
/// send reminders, drain the outbox. A webhook wakes it early. On SIGTERM it stops taking new work and
/// waits for the verbs in flight and a last outbox drain.
public final class ControlLoop: Service, @unchecked Sendable {
    let engine: Engine
    let poller: Poller
    let outbox: OutboxSender
    let interval: Double
    let logger: Logger
    let metrics: Metrics
    private let pokeLock = NSLock()
    private var poked = false
    private var inFlight: [Task<Void, Never>] = []

    public init(engine: Engine, poller: Poller, outbox: OutboxSender, interval: Double, metrics: Metrics, logger: Logger) {
        self.engine = engine; self.poller = poller; self.outbox = outbox; self.interval = interval; self.metrics = metrics; self.logger = logger
    }

    public func poke() { pokeLock.lock(); poked = true; pokeLock.unlock() }

    private func takePoke() -> Bool { pokeLock.lock(); defer { poked = false; pokeLock.unlock() }; return poked }

    /// One full turn; tests drive this directly.
    public func turn(poll: Bool) async {
        if poll {
            do { try await poller.pollOnce(); metrics.inc("polls_total") } catch {
                metrics.inc("poll_errors_total")
                logger.warning("poll failed: \(error)")
            }
        }
        await engine.processPending()
        inFlight.removeAll { $0.isCancelled }
        inFlight += engine.startRunnable()
        _ = try? engine.sweepReminders()
        metrics.inc("outbox_sent_total", by: await outbox.drain())
    }

    public func waitForRuns() async {
        for t in inFlight { await t.value }
        inFlight.removeAll()
    }

    public func run() async throws {
        try engine.recoverInterrupted()
        var lastPoll = Date.distantPast
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let pollDue = Date().timeIntervalSince(lastPoll) >= interval
            if pollDue { lastPoll = Date() }
            await turn(poll: pollDue)
            // sleep until woken, the next poll, or 1 s (outbox retries, finished runs)
            let wait = max(0.05, min(1.0, interval - Date().timeIntervalSince(lastPoll)))
            let until = Date().addingTimeInterval(wait)
            while Date() < until && !takePoke() && !Task.isShuttingDownGracefully {
                try? await Task.sleep(nanoseconds: 20_000_000)
            }
        }
        logger.info("draining: waiting for \(inFlight.count) run(s) in flight")
        await waitForRuns()
        await engine.processPending()
        _ = await outbox.drain()
    }
}
