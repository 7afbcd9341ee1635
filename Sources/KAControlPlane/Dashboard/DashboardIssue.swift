import Foundation
import KernelAgent
import NIOConcurrencyHelpers

/// Keeps the one `[ka:dashboard]` issue current. It is found by its hidden marker AND the bot as its author
/// (never by title), remembered in the ledger, created only when no issue has both, and edited in place:
/// - at most once per `minInterval` (30 s): a burst of changes is one edit, made when the interval is over;
/// - never when the rendered body equals what the issue holds;
/// - a person's edit runs nothing; the next update overwrites it and says so once, in one comment.
/// One update runs at a time: a restart, a duplicate webhook or a renamed issue never makes a second dashboard.
package final class DashboardIssue: Sendable {
    package enum Outcome: Equatable, Sendable { case busy, throttled, idle, unchanged, edited, created, failed(String) }

    let api: any GiteaAPI
    let ledger: Ledger
    let botLogin: String
    let minInterval: TimeInterval
    let now: @Sendable () -> Date
    let render: @Sendable () async throws -> String

    struct Memory: Codable, Equatable {
        var issue: Int?
        /// What the bot last wrote, so a different body in the issue is a person's edit.
        var written: String?
        var editedAt: Date?
    }
    struct Live {
        var memory: Memory?
        var dirty = true
        var personEdited = false
        var lastRender: Date?
        var busy = false
        var edits = 0
        /// Failed updates in a row, and when the next may run: a dashboard that cannot be found or made (no
        /// permission, a failing create) would otherwise page through the whole repo every cycle.
        var failures = 0
        var retryAt: Date?
    }

    /// The wait after `failures` failed updates in a row: the interval, doubled each time, at most an hour.
    static func backoff(after failures: Int, minInterval: TimeInterval) -> TimeInterval {
        min(3600, max(minInterval, 1) * pow(2, Double(min(failures, 12))))
    }
    private let live = NIOLockedValueBox(Live())
    static let cursor = "dashboard"

    package init(api: any GiteaAPI, ledger: Ledger, botLogin: String, minInterval: TimeInterval = 30,
                now: @escaping @Sendable () -> Date = { Date() }, render: @escaping @Sendable () async throws -> String) {
        self.api = api; self.ledger = ledger; self.botLogin = botLogin; self.minInterval = minInterval; self.now = now; self.render = render
    }

    /// Edits made by this process (tests, the benchmark).
    package var edits: Int { live.withLockedValue { $0.edits } }
    package var issueNumber: Int? { live.withLockedValue { $0.memory?.issue } }

    /// Something may have changed: the next `tick` that the interval allows renders again.
    package func markDirty() { live.withLockedValue { $0.dirty = true } }

    /// An issue the poller or a webhook saw move: if it is the dashboard and holds what the bot did not write,
    /// a person edited it.
    package func observe(_ issue: GiteaIssue) {
        live.withLockedValue { l in
            guard let m = l.memory, m.issue == issue.number, let written = m.written, (issue.body ?? "") != written else { return }
            l.personEdited = true
            l.dirty = true
        }
    }

    /// One step: renders when something may have changed (or every `minInterval` anyway, for changes made outside
    /// `ka serve`) and the interval since the last edit is over; writes only a different body.
    @discardableResult
    package func tick() async -> Outcome {
        let t = now()
        let start: Outcome? = live.withLockedValue { l in
            if l.busy { return .busy }
            if let r = l.retryAt, t < r { return .throttled }
            if let at = l.memory?.editedAt, t < at.addingTimeInterval(minInterval) { return .throttled }
            if !l.dirty, let last = l.lastRender, t < last.addingTimeInterval(minInterval) { return .idle }
            l.busy = true
            l.dirty = false
            l.lastRender = t
            return nil
        }
        if let start { return start }
        defer { live.withLockedValue { $0.busy = false } }
        do {
            let outcome = try await update(at: t)
            live.withLockedValue { $0.failures = 0; $0.retryAt = nil }
            return outcome
        } catch {
            live.withLockedValue { l in
                l.dirty = true
                l.failures += 1
                l.retryAt = t.addingTimeInterval(Self.backoff(after: l.failures, minInterval: minInterval))
            }
            return .failed("\(error)")
        }
    }

    func update(at t: Date) async throws -> Outcome {
        let body = try await render()
        var memory = try loadMemory()
        // compared first: an unchanged fleet costs no request to the dashboard issue
        if memory.issue != nil, memory.written == body, !live.withLockedValue({ $0.personEdited }) { return .unchanged }
        var issue: GiteaIssue?
        if let n = memory.issue { issue = try await ours(n) }
        if issue == nil { issue = try await find() }
        guard let current = issue else {
            let made = try await api.createIssue(title: DashboardRenderer.title, body: body, labelIDs: [])
            memory = Memory(issue: made.number, written: body, editedAt: t)
            try save(memory)
            live.withLockedValue { $0.edits += 1 }
            return .created
        }
        // a person's edit: seen by the poller, or found now (the issue does not hold what the bot last wrote)
        let personEdited = live.withLockedValue { $0.personEdited }
            || (memory.issue == current.number && memory.written != nil && (current.body ?? "") != memory.written)
        memory.issue = current.number
        if (current.body ?? "") == body && current.state == "open" && !personEdited {
            memory.written = body
            try save(memory)
            return .unchanged
        }
        _ = try await api.editIssue(current.number, title: nil, body: body, state: current.state == "open" ? nil : "open")
        memory.written = body
        memory.editedAt = t
        try save(memory)
        live.withLockedValue { $0.edits += 1; $0.personEdited = false }
        if personEdited {
            // once per dashboard: the outbox sends a ref once, however often people edit it
            try ledger.enqueue(.comment(issue: current.number, body: "This dashboard is written by kernel-agent: edits to it run nothing and are "
                                        + "overwritten at its next update, as they were just now. To act, post a command in a comment (e.g. `/ka-help`)."),
                               ref: "dashboard-overwrite-note-\(current.number)", at: t)
        }
        return .edited
    }

    /// The remembered issue, if it is still the bot's (a person may have removed the marker: it is still ours).
    func ours(_ n: Int) async throws -> GiteaIssue? {
        do {
            let i = try await api.getIssue(n)
            return i.user.login == botLogin && !i.isPull ? i : nil
        } catch let e as GiteaError where e.status == 404 {
            return nil
        }
    }

    /// By marker and author, open or closed; the oldest wins if a past bug made two.
    func find() async throws -> GiteaIssue? {
        try await api.listIssues(state: "all", since: nil)
            .filter { $0.user.login == botLogin && !$0.isPull && ($0.body ?? "").contains(DashboardRenderer.marker) }
            .min { $0.number < $1.number }
    }

    func loadMemory() throws -> Memory {
        if let m = live.withLockedValue({ $0.memory }) { return m }
        guard let raw = try ledger.cursor(Self.cursor) else { return Memory() }
        do { return try JSONDecoder().decode(Memory.self, from: Data(raw.utf8)) } catch {
            throw KAError.failure("ledger cursor '\(Self.cursor)'", "unreadable: \(error)", cause: error, hint: "delete the cursor row; the dashboard is found again by its marker")
        }
    }

    func save(_ m: Memory) throws {
        try ledger.setCursor(Self.cursor, String(decoding: try JSONEncoder().encode(m), as: UTF8.self))
        live.withLockedValue { $0.memory = m }
    }
}
