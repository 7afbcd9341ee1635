import Foundation
import Logging
import ServiceLifecycle
import NIOConcurrencyHelpers

/// The one loop that moves work: poll (every interval), hand stored events to the engine (which handles them
/// on their own tasks, so a slow plan never holds the loop), start runnable verbs, send reminders. Beside it the
/// outbox is drained, so replies go out while events are being handled rather than in between. A webhook or a
/// settled event wakes both early. On SIGTERM it stops taking new work and waits for the events and verbs in
/// flight and a last outbox drain.
package final class ControlLoop: Service, Sendable {
    let engine: Engine
    let poller: Poller
    let outbox: OutboxSender
    let interval: Double
    let logger: Logger
    let metrics: Metrics
    /// The `[ka:dashboard]` issue, updated beside the turns (it throttles itself to one edit per 30 s).
    let dashboard: DashboardIssue?
    /// Wakes the loop (a webhook, a settled event, a shutdown) and the outbox sender.
    private let wakeLoop = Wakeup()
    private let wakeOutbox = Wakeup()
    private let stopSending = NIOLockedValueBox(false)
    private let runs = NIOLockedValueBox<[Task<Void, Never>]>([])
    /// The wake-lease sweep in flight, if any: a slow or unreachable His never holds up the loop, and sweeps never overlap.
    private let leaseSweeping = NIOLockedValueBox(false)

    package init(engine: Engine, poller: Poller, outbox: OutboxSender, interval: Double, metrics: Metrics, logger: Logger,
                dashboard: DashboardIssue? = nil) {
        self.engine = engine; self.poller = poller; self.outbox = outbox; self.interval = interval; self.metrics = metrics; self.logger = logger
        self.dashboard = dashboard
    }

    package func poke() {
        dashboard?.markDirty()
        wakeLoop.poke()
        wakeOutbox.poke()
    }

    /// One full turn; tests drive this directly, with the outbox drained at its end (`ka serve` drains it beside
    /// the turns instead). Returns without waiting for the events it dispatched.
    package func turn(poll: Bool, drainOutbox: Bool = true) async {
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
        sweepLeasesInTheBackground()
        updateDashboardInTheBackground()
        if drainOutbox { metrics.inc("outbox_sent_total", by: await outbox.drain()) }
    }

    func sweepLeasesInTheBackground() {
        let start = leaseSweeping.withLockedValue { busy -> Bool in
            if busy { return false }
            busy = true
            return true
        }
        guard start else { return }
        Task { [self] in
            do { try await engine.sweepWakeLeases() } catch { logger.error("wake lease sweep failed: \(error)") }
            leaseSweeping.withLockedValue { $0 = false }
        }
    }

    /// A dashboard update never holds up the loop; one at a time (`tick` answers `.busy` to a second).
    func updateDashboardInTheBackground() {
        guard let dashboard else { return }
        Task { [logger, metrics] in
            switch await dashboard.tick() {
            case .edited, .created: metrics.inc("dashboard_edits_total")
            case let .failed(why): logger.warning("dashboard update failed: \(why)")
            default: break
            }
        }
    }

    /// Drains the outbox until told to stop: again at once after a pass that sent something (a pass takes at most
    /// a page of the outbox), else when poked or after 1 s (retries coming due).
    func sendLoop() async {
        while !stopSending.withLockedValue({ $0 }) {
            let sent = await outbox.drain()
            metrics.inc("outbox_sent_total", by: sent)
            if sent > 0 { continue }
            if Task.isCancelled { return }   // the process is going away
            if await wakeOutbox.wait(upTo: .seconds(1)) { await Self.coalesce() }
        }
    }

    /// After a wake-up, a short pause gathers the pokes that follow it into one turn: under a burst of webhooks one
    /// turn per delivery would spend the CPU on turns rather than on the commands (bench-replies).
    static func coalesce() async {
        do { try await Task.sleep(for: .milliseconds(15)) } catch { /* cancelled: the caller's loop sees it */ }
    }

    /// Waits for the events being handled and the verbs running.
    package func waitForRuns() async {
        await engine.waitForEvents()
        while true {
            let tasks = runs.withLockedValue { r in defer { r.removeAll() }; return r }
            if tasks.isEmpty { return }
            for t in tasks { await t.value }
        }
    }

    package func run() async throws {
        try engine.recoverInterrupted()
        async let sending: Void = sendLoop()
        var lastPoll = Date.distantPast
        let wake = wakeLoop
        await withGracefulShutdownHandler {
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                let pollDue = Date().timeIntervalSince(lastPoll) >= interval
                if pollDue { lastPoll = Date() }
                await turn(poll: pollDue, drainOutbox: false)
                // sleep until woken, the next poll, or 1 s (outbox retries, finished runs)
                let wait = max(0.05, min(1.0, interval - Date().timeIntervalSince(lastPoll)))
                if await wake.wait(upTo: .milliseconds(Int(wait * 1000))) { await Self.coalesce() }
            }
        } onGracefulShutdown: {
            wake.poke()
        }
        logger.info("draining: interrupting jobs, waiting for the events and runs in flight")
        engine.interruptJobs()
        await waitForRuns()
        do { try await engine.processPending() } catch { logger.error("last event pass failed: \(error)") }
        stopSending.withLockedValue { $0 = true }
        wakeOutbox.poke()
        await sending
        _ = await outbox.drain()
    }
}
