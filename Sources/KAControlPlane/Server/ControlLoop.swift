import Foundation
import Logging
import ServiceLifecycle
import NIOConcurrencyHelpers

/// The one loop that moves work: poll (every interval), hand stored events to the engine (which handles them
/// on their own tasks, so a slow plan never holds the loop), start runnable verbs, send reminders, drain the
/// outbox. A webhook or a settled event wakes it early. On SIGTERM it stops taking new work and waits for the
/// events and verbs in flight and a last outbox drain.
public final class ControlLoop: Service, Sendable {
    let engine: Engine
    let poller: Poller
    let outbox: OutboxSender
    let interval: Double
    let logger: Logger
    let metrics: Metrics
    private let poked = NIOLockedValueBox(false)
    private let runs = NIOLockedValueBox<[Task<Void, Never>]>([])

    public init(engine: Engine, poller: Poller, outbox: OutboxSender, interval: Double, metrics: Metrics, logger: Logger) {
        self.engine = engine; self.poller = poller; self.outbox = outbox; self.interval = interval; self.metrics = metrics; self.logger = logger
    }

    public func poke() { poked.withLockedValue { $0 = true } }

    private func takePoke() -> Bool { poked.withLockedValue { p in defer { p = false }; return p } }

    /// One full turn; tests drive this directly. Returns without waiting for the events it dispatched.
    public func turn(poll: Bool) async {
        if poll {
            do { try await poller.pollOnce(); metrics.inc("polls_total") } catch {
                metrics.inc("poll_errors_total")
                logger.warning("poll failed: \(error)")
            }
        }
        do { try engine.dispatchPending(onSettled: { [weak self] in self?.poke() }) } catch {
            logger.error("cannot read the stored events: \(error)")
        }
        do {
            let started = try engine.startRunnable()
            runs.withLockedValue { $0.removeAll { $0.isCancelled }; $0 += started }
        } catch {
            logger.error("cannot start queued runs: \(error)")
        }
        do { try engine.sweepReminders() } catch { logger.error("reminder sweep failed: \(error)") }
        let sent = await outbox.drain()
        metrics.inc("outbox_sent_total", by: sent)
        if sent > 0 { poke() }   // more may be due (a pass takes at most a page of the outbox): turn again at once
    }

    /// Waits for the events being handled and the verbs running.
    public func waitForRuns() async {
        await engine.waitForEvents()
        while true {
            let tasks = runs.withLockedValue { r in defer { r.removeAll() }; return r }
            if tasks.isEmpty { return }
            for t in tasks { await t.value }
        }
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
        logger.info("draining: waiting for the events and runs in flight")
        await waitForRuns()
        do { try await engine.processPending() } catch { logger.error("last event pass failed: \(error)") }
        _ = await outbox.drain()
    }
}
