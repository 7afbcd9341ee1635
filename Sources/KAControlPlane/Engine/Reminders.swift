import Foundation
import KernelAgent

extension Engine {
    /// Keeps the reminder schedule in step with the bot's own [ka:installable] issues (opened → tracked,
    /// closed → stopped). Someone else's issue with that title is not one of them.
    package func trackReminder(_ issue: GiteaIssue) throws {
        guard issue.user.login == botLogin, issue.title.hasPrefix("[ka:installable]") else { return }
        let filed = GiteaTime.parse(issue.created_at) ?? now()
        try makeContext().state.upsertReminder(issue: issue.number, filedAt: filed, open: issue.state == "open")
    }

    /// Posts what is due, at most `config.reminderCap` per sweep; missed stages are skipped, not replayed.
    @discardableResult
    package func sweepReminders() throws -> Int {
        let state = try makeContext().state
        let due = try state.dueReminders(now: now(), limit: config.reminderCap)
        for r in due {
            let words = ["filed", "1 hour", "6 hours"]
            let age = r.stage < 3 ? words[r.stage] : "\(r.stage - 2 + 0) day(s) past the 6-hour mark"
            try ledger.enqueue(.comment(issue: r.issue, body: "⏰ reminder (\(age)): this kernel is ready to install. Run `ka install <host>` yourself when it suits you, or `/ka-snooze \(r.issue) --for 6h`."),
                               ref: "reminder-\(r.issue)-\(r.stage)", at: now())
            let next = ReminderRecord.nextStage(after: now(), filedAt: r.filedAt, current: r.stage)
            try state.advanceReminder(issue: r.issue, stage: next, nextDue: r.filedAt.addingTimeInterval(ReminderRecord.offset(next)))
        }
        return due.count
    }
}

extension Engine {
    /// Hands idle on-demand build hosts back to His when every job's lease on them has run out (WakeLeases). The His
    /// client is made only when a host is due, with no leave for destructive tools (the sweep is no planned step);
    /// a failed release is tried again at a later sweep.
    package func sweepWakeLeases() async throws {
        let ctx = try makeContext()
        let leases = WakeLeases(stateDir: ctx.workspace.stateDir, now: now)
        guard try !leases.dueHosts().isEmpty else { return }
        let his = try ctx.his ?? ctx.settings().hisClient()
        for note in try await leases.release(due: his) { logger.info("wake lease: \(note)") }
    }
}
