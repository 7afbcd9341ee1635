import ArgumentParser
import Foundation
import GRDB
import KernelAgent
import Logging
import NIOConcurrencyHelpers

/// Turns events (new comments, new issues) into runs of the same verbs the CLI runs. Conversation asks for
/// consent first: the reply lists the plan and its pins, with a nonce; only `/ka-yes <nonce>` from an
/// allowed user before expiry runs it, and only if the pins still hold.
///
/// Each event is handled on its own task, and planning runs on its own threads with a timeout: a slow plan
/// holds up neither the control loop nor another comment's `/ka-help`. Every command is claimed in the ledger
/// before it is handled, so one that was being handled when the process died is failed with a reply on the
/// next start, never handled again blindly (a command that crashes the process must not crash-loop it).
package final class Engine: Sendable {
    package let config: ControlPlaneConfig
    package let ledger: Ledger
    let api: GiteaAPI
    let makeContext: @Sendable () throws -> VerbContext
    let now: @Sendable () -> Date
    package let botLogin: String
    let authorizer: Authorizer
    let faults: ServeFaults
    let logger: Logger
    /// Plans at once, at most (`max_parallel_runs`).
    let planSlots: AsyncSlots
    let eventTasks = NIOLockedValueBox<[String: Task<Void, Never>]>([:])
    let planning = NIOLockedValueBox(0)
    let lanes = NIOLockedValueBox(LaneBook())
    /// Told of every issue the poller or a webhook saw change (the dashboard watches its own issue).
    let issueWatcher = NIOLockedValueBox<(@Sendable (GiteaIssue) -> Void)?>(nil)
    /// Cancels for the jobs running now, by run id (SIGTERM interrupts them).
    let jobTasks = NIOLockedValueBox<[Int64: @Sendable () -> Void]>([:])

    package init(config: ControlPlaneConfig, ledger: Ledger, api: GiteaAPI, botLogin: String,
                makeContext: @escaping @Sendable () throws -> VerbContext, now: @escaping @Sendable () -> Date = { Date() },
                authorizer: Authorizer? = nil, faults: ServeFaults = ServeFaults(), logger: Logger = Logger(label: "ka.engine")) {
        self.config = config; self.ledger = ledger; self.api = api; self.botLogin = botLogin
        self.makeContext = makeContext; self.now = now; self.faults = faults; self.logger = logger
        self.authorizer = authorizer ?? Authorizer(allow: config.allow, api: api, botLogin: botLogin, now: now)
        planSlots = AsyncSlots(config.maxParallelRuns)
    }

    static let controlVerbs: Set<String> = ["yes", "no", "help"]
    /// Titles the bot files or records itself: `[ka:installable] …`, `[ka:audit] …`, and later the dashboard.
    package static let recordKinds: Set<String> = ["installable", "audit", "dashboard"]
    /// An event started this many times without finishing is given up with one reply.
    static let maxEventAttempts = 3

    /// Whether `[ka:<word>]` in a title asks for a verb. Block and record kinds are not verbs, and any other
    /// word is someone else's title convention (`[ka:cli-build-out]`, `[ka:experiment]`): left alone.
    package static func titleWordIsVerb(_ word: String) -> Bool {
        controlVerbs.contains(word) || Verbs.named(word) != nil
    }

    // MARK: ingest (webhook and poller both land here)

    package func watchIssues(_ watcher: @escaping @Sendable (GiteaIssue) -> Void) { issueWatcher.withLockedValue { $0 = watcher } }
    package func issueSeen(_ issue: GiteaIssue) { issueWatcher.withLockedValue { $0 }?(issue) }

    /// The ledger event for a newly created comment, or nil when it is not ours to read (the bot's own, a PR's).
    package func event(comment c: GiteaComment, issue: Int, isPull: Bool = false) -> Ledger.Event? {
        guard c.user.login != botLogin, !isPull else { return nil }
        return .init(key: "comment:\(c.id)", kind: "comment", issue: issue, commentID: c.id, author: c.user.login, text: c.body)
    }

    /// The ledger event for a newly opened issue whose title names a verb (`[ka:<verb>] args`).
    package func event(issue i: GiteaIssue) -> Ledger.Event? {
        guard i.user.login != botLogin, !i.isPull, let word = CommandParser.titleWord(i.title), Self.titleWordIsVerb(word) else { return nil }
        return .init(key: "issue:\(i.id)", kind: "issue", issue: i.number, commentID: nil, author: i.user.login, text: i.title)
    }

    /// A newly created comment. Edits never re-run: they get a short note once.
    package func ingest(comment c: GiteaComment, issue: Int, isPull: Bool = false) throws -> Bool {
        guard let e = event(comment: c, issue: issue, isPull: isPull) else { return false }
        return try ledger.ingest(e, at: now())
    }

    package func ingest(issue i: GiteaIssue) throws -> Bool {
        guard let e = event(issue: i) else { return false }
        return try ledger.ingest(e, at: now())
    }

    /// An edited comment that holds a command: one note, never a re-run.
    package func noteEdit(comment c: GiteaComment, issue: Int) throws {
        guard c.user.login != botLogin, CommandParser.parse(comment: c.body).contains(where: { if case .success = $0 { return true }; return false }) else { return }
        try ledger.enqueue(.comment(issue: issue, body: "@\(c.user.login) editing a comment does not re-run its commands; post a new comment to run one."),
                           ref: "edit-note-\(c.id)")
    }

    // MARK: events

    /// Starts handling every stored event that is not being handled yet, and returns at once.
    /// `onSettled` runs after each event (the loop uses it to send the replies without waiting for its next turn).
    /// Each start is counted before the event is read (a comment that crashes its reader is given up after
    /// `maxEventAttempts`), for the whole batch in one transaction.
    package func dispatchPending(onSettled: (@Sendable () -> Void)? = nil) throws {
        let pending = try ledger.unprocessedEvents()
        try eventTasks.withLockedValue { tasks in
            let fresh = pending.filter { tasks[$0.key] == nil }
            guard !fresh.isEmpty else { return }
            let attempts = try ledger.beginEvents(fresh.map(\.key))
            for e in fresh {
                let attempt = attempts[e.key] ?? 0
                tasks[e.key] = Task { [self] in
                    await handleEvent(e, attempt: attempt)
                    _ = eventTasks.withLockedValue { $0.removeValue(forKey: e.key) }
                    onSettled?()
                }
            }
        }
    }

    /// Waits until no event is being handled.
    package func waitForEvents() async {
        while true {
            let tasks = eventTasks.withLockedValue { Array($0.values) }
            if tasks.isEmpty { return }
            for t in tasks { await t.value }
        }
    }

    package var eventsInFlight: Int { eventTasks.withLockedValue { $0.count } }
    /// Plans running on their threads now (one that timed out counts until it returns).
    package var plansRunning: Int { planning.withLockedValue { $0 } }

    /// Handles every stored event and waits for all of them (tests; the last turn before exit).
    package func processPending() async throws {
        try dispatchPending()
        await waitForEvents()
    }

    func handleEvent(_ e: Ledger.Event, attempt: Int) async {
        do {
            let parsed: [Result<Invocation, ParseProblem>] = e.kind == "issue"
                ? CommandParser.parse(title: e.text).map { [$0] } ?? []
                : CommandParser.parse(comment: e.text)
            let taken = Array(parsed.prefix(config.maxCommandsPerComment))
            // the last answer's transaction marks the event processed too (or, when it has none, the line after)
            let closing = EventClosing(key: e.key, lastSeq: parsed.count > taken.count ? taken.count : taken.count - 1)
            try await Self.$closing.withValue(closing) {
                try await handleCommands(e, parsed: parsed, taken: taken, attempt: attempt)
            }
            if !closing.marked { try ledger.markProcessed(e.key) }
        } catch {
            // the ledger failed: the event stays unprocessed, and its attempts count this start
            logger.error("event \(e.key): \(error)")
        }
    }

    /// The event whose last answer is being written, so that answer's transaction also marks it processed: one
    /// write fewer for every comment.
    final class EventClosing: Sendable {
        let key: String
        let lastSeq: Int
        private let done = NIOLockedValueBox(false)
        init(key: String, lastSeq: Int) { self.key = key; self.lastSeq = lastSeq }
        var marked: Bool { done.withLockedValue { $0 } }
        /// Inside the transaction that writes the answer to command `seq` of event `key`.
        func markIfLast(key: String, seq: Int, in db: Database, ledger: Ledger) throws {
            guard key == self.key, seq == lastSeq else { return }
            try ledger.markProcessed(db, key)
            done.withLockedValue { $0 = true }
        }
    }
    @TaskLocal static var closing: EventClosing?

    private func handleCommands(_ e: Ledger.Event, parsed: [Result<Invocation, ParseProblem>], taken: [Result<Invocation, ParseProblem>],
                                attempt: Int) async throws {
        if attempt > Self.maxEventAttempts {
            try giveUp(e, taken, starts: attempt - 1)
        } else {
            var gates: [Gate] = []
            for p in taken { gates.append(await gate(p, author: e.author)) }
            var denied: [(raw: String, what: String)] = []
            for (p, g) in zip(taken, gates) { if case let .denied(what) = g { denied.append((p.raw, what)) } }
            let refusal = Self.refusalText(author: e.author, denied)
            var refused = false
            for (seq, p) in taken.enumerated() {
                var summary: String?
                if case .denied = gates[seq], !refused { summary = refusal; refused = true }
                await handle(p, seq: seq, event: e, gate: gates[seq], refusal: summary)
            }
            if parsed.count > taken.count { try replyIgnored(e, parsed: parsed, taken: taken.count) }
        }
    }

    /// Whether a command may go ahead, decided for the whole comment before any of it runs.
    enum Gate { case open, denied(String), unknown(String) }

    func gate(_ parsed: Result<Invocation, ParseProblem>, author: String) async -> Gate {
        guard case let .success(inv) = parsed else { return .open }
        let verb: String, what: String
        do {
            switch inv.verb {
            case "help", "ka-help": return .open
            case "yes", "no":
                guard let nonce = inv.args.first, let p = try pending(nonce: nonce) else {
                    // "no such nonce" is the answer only for who may run something; the others get the refusal a real
                    // nonce gets, so guessing tells them nothing
                    let what = inv.verb == "yes" ? "approve that plan" : "cancel that plan"
                    return try await authorizer.mayRunAny(author, verbs: Verbs.all.map { $0.verbName }) ? .open : .denied(what)
                }
                verb = p.verb
                what = inv.verb == "yes" ? "approve that plan" : "cancel that plan"
            default:
                guard Verbs.named(inv.verb) != nil else { return .open }   // "unknown verb" is the answer
                verb = inv.verb
                what = "run `/ka-\(inv.verb)` here"
            }
            return try await authorizer.mayRun(author, verb: verb) ? .open : .denied(what)
        } catch {
            return .unknown("\(error)")
        }
    }

    /// One refusal per comment for a user who may not run what it asks, however many commands it holds.
    static func refusalText(author: String, _ denied: [(raw: String, what: String)]) -> String {
        guard let first = denied.first else { return "" }
        if denied.count == 1 { return "@\(author) sorry, you are not allowed to \(first.what); nothing was done." }
        return "@\(author) sorry, you are not allowed to run these \(denied.count) commands here; nothing was done:\n\n"
            + denied.map { "- `\($0.raw.prefix(120))` (\($0.what))" }.joined(separator: "\n")
    }

    /// The commands past `max_commands_per_comment` get one reply naming them, and nothing else.
    func replyIgnored(_ e: Ledger.Event, parsed: [Result<Invocation, ParseProblem>], taken: Int) throws {
        let ignored = parsed.dropFirst(taken)
        let lines = ignored.map(\.line)
        guard let firstLine = lines.min(), let lastLine = lines.max(),
              try claim(e, seq: taken, raw: "(\(ignored.count) more commands)", verb: "ignored", args: []) else { return }
        let text = "@\(e.author) this comment holds \(parsed.count) commands; I read at most \(taken) per comment (`max_commands_per_comment`). "
            + "I ignored the other \(ignored.count), on lines \(firstLine)–\(lastLine); nothing was done for them. Post them again in another comment."
        try reply(e, seq: taken, text, state: .refused, verb: "ignored", args: [])
    }

    /// An event whose handling was started `starts` times and never finished: each command not yet answered is
    /// failed, with one reply.
    func giveUp(_ e: Ledger.Event, _ taken: [Result<Invocation, ParseProblem>], starts: Int) throws {
        var firstSeq: Int?
        var raws: [String] = []
        for (seq, p) in taken.enumerated() {
            guard try claim(e, seq: seq, raw: p.raw, verb: p.verbName, args: p.args) else { continue }
            if firstSeq == nil { firstSeq = seq } else { try settle(e, seq: seq, state: .failed, detail: "given up with command \(firstSeq ?? 0)") }
            raws.append(p.raw)
        }
        guard let seq = firstSeq else { return }
        try reply(e, seq: seq, "@\(e.author) kernel-agent stopped \(starts) times while handling this comment, so it is skipped; nothing was done for:\n\n"
                  + raws.map { "- `\($0.prefix(120))`" }.joined(separator: "\n"), state: .failed, verb: "?", args: [])
    }
}

/// Resumes a continuation once, whichever of two racing callers comes first (a plan and its timeout).
final class ResumeOnce<T: Sendable>: Sendable {
    private let continuation: NIOLockedValueBox<CheckedContinuation<T, Never>?>
    init(_ c: CheckedContinuation<T, Never>) { continuation = NIOLockedValueBox(c) }
    func resume(_ value: T) {
        let c = continuation.withLockedValue { c -> CheckedContinuation<T, Never>? in defer { c = nil }; return c }
        c?.resume(returning: value)
    }
}

extension Result where Success == Invocation, Failure == ParseProblem {
    var raw: String { switch self { case let .success(i): return i.raw; case let .failure(p): return p.raw } }
    var line: Int { switch self { case let .success(i): return i.line; case let .failure(p): return p.line } }
    var verbName: String { if case let .success(i) = self { return i.verb }; return "?" }
    var args: [String] { if case let .success(i) = self { return i.args }; return [] }
}

/// Hands a non-Sendable value (a parsed verb) to the one task that uses it.
// Unchecked: the sender drops the value once handed over, which region checking cannot prove (Engine+Runs).
struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
