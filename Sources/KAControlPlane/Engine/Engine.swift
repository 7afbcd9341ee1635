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
public final class Engine: Sendable {
    public let config: ControlPlaneConfig
    public let ledger: Ledger
    let api: GiteaAPI
    let makeContext: @Sendable () throws -> VerbContext
    let now: @Sendable () -> Date
    public let botLogin: String
    let authorizer: Authorizer
    let faults: ServeFaults
    let logger: Logger
    /// Plans run here, a few at a time, never on the cooperative pool (verbs block on I/O).
    private let planQueue: OperationQueue
    // Shared state is behind NIOLockedValueBox (a pthread mutex) rather than Synchronization.Mutex: on Linux,
    // ThreadSanitizer cannot see Mutex's futex and reports the state it guards as racing (Swift 6.3.1).
    private let eventTasks = NIOLockedValueBox<[String: Task<Void, Never>]>([:])
    private let planning = NIOLockedValueBox(0)
    private let lanes = NIOLockedValueBox(LaneBook())
    /// Cancels for the jobs running now, by run id (SIGTERM interrupts them).
    let jobTasks = NIOLockedValueBox<[Int64: @Sendable () -> Void]>([:])

    public init(config: ControlPlaneConfig, ledger: Ledger, api: GiteaAPI, botLogin: String,
                makeContext: @escaping @Sendable () throws -> VerbContext, now: @escaping @Sendable () -> Date = { Date() },
                authorizer: Authorizer? = nil, faults: ServeFaults = ServeFaults(), logger: Logger = Logger(label: "ka.engine")) {
        self.config = config; self.ledger = ledger; self.api = api; self.botLogin = botLogin
        self.makeContext = makeContext; self.now = now; self.faults = faults; self.logger = logger
        self.authorizer = authorizer ?? Authorizer(allow: config.allow, api: api, botLogin: botLogin, now: now)
        planQueue = OperationQueue()
        planQueue.name = "ka-plan"
        planQueue.maxConcurrentOperationCount = config.maxParallelRuns
    }

    static let controlVerbs: Set<String> = ["yes", "no", "help"]
    /// Titles the bot files or records itself: `[ka:installable] …`, `[ka:audit] …`, and later the dashboard.
    public static let recordKinds: Set<String> = ["installable", "audit", "dashboard"]
    /// An event started this many times without finishing is given up with one reply.
    static let maxEventAttempts = 3

    /// Whether `[ka:<word>]` in a title asks for a verb. Block and record kinds are not verbs, and any other
    /// word is someone else's title convention (`[ka:cli-build-out]`, `[ka:experiment]`): left alone.
    public static func titleWordIsVerb(_ word: String) -> Bool {
        controlVerbs.contains(word) || Verbs.named(word) != nil
    }

    // MARK: ingest (webhook and poller both land here)

    /// The ledger event for a newly created comment, or nil when it is not ours to read (the bot's own, a PR's).
    public func event(comment c: GiteaComment, issue: Int, isPull: Bool = false) -> Ledger.Event? {
        guard c.user.login != botLogin, !isPull else { return nil }
        return .init(key: "comment:\(c.id)", kind: "comment", issue: issue, commentID: c.id, author: c.user.login, text: c.body)
    }

    /// The ledger event for a newly opened issue whose title names a verb (`[ka:<verb>] args`).
    public func event(issue i: GiteaIssue) -> Ledger.Event? {
        guard i.user.login != botLogin, !i.isPull, let word = CommandParser.titleWord(i.title), Self.titleWordIsVerb(word) else { return nil }
        return .init(key: "issue:\(i.id)", kind: "issue", issue: i.number, commentID: nil, author: i.user.login, text: i.title)
    }

    /// A newly created comment. Edits never re-run: they get a short note once.
    public func ingest(comment c: GiteaComment, issue: Int, isPull: Bool = false) throws -> Bool {
        guard let e = event(comment: c, issue: issue, isPull: isPull) else { return false }
        return try ledger.ingest(e, at: now())
    }

    public func ingest(issue i: GiteaIssue) throws -> Bool {
        guard let e = event(issue: i) else { return false }
        return try ledger.ingest(e, at: now())
    }

    /// An edited comment that holds a command: one note, never a re-run.
    public func noteEdit(comment c: GiteaComment, issue: Int) throws {
        guard c.user.login != botLogin, CommandParser.parse(comment: c.body).contains(where: { if case .success = $0 { return true }; return false }) else { return }
        try ledger.enqueue(.comment(issue: issue, body: "@\(c.user.login) editing a comment does not re-run its commands; post a new comment to run one."),
                           ref: "edit-note-\(c.id)")
    }

    // MARK: events

    /// Starts handling every stored event that is not being handled yet, and returns at once.
    /// `onSettled` runs after each event (the loop uses it to send the replies without waiting for its next turn).
    public func dispatchPending(onSettled: (@Sendable () -> Void)? = nil) throws {
        let pending = try ledger.unprocessedEvents()
        eventTasks.withLockedValue { tasks in
            for e in pending where tasks[e.key] == nil {
                tasks[e.key] = Task { [self] in
                    await handleEvent(e)
                    _ = eventTasks.withLockedValue { $0.removeValue(forKey: e.key) }
                    onSettled?()
                }
            }
        }
    }

    /// Waits until no event is being handled.
    public func waitForEvents() async {
        while true {
            let tasks = eventTasks.withLockedValue { Array($0.values) }
            if tasks.isEmpty { return }
            for t in tasks { await t.value }
        }
    }

    public var eventsInFlight: Int { eventTasks.withLockedValue { $0.count } }
    /// Plans running on their threads now (one that timed out counts until it returns).
    public var plansRunning: Int { planning.withLockedValue { $0 } }

    /// Handles every stored event and waits for all of them (tests; the last turn before exit).
    public func processPending() async throws {
        try dispatchPending()
        await waitForEvents()
    }

    func handleEvent(_ e: Ledger.Event) async {
        do {
            let attempt = try ledger.beginEvent(e.key)
            let parsed: [Result<Invocation, ParseProblem>] = e.kind == "issue"
                ? CommandParser.parse(title: e.text).map { [$0] } ?? []
                : CommandParser.parse(comment: e.text)
            let taken = Array(parsed.prefix(config.maxCommandsPerComment))
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
            try ledger.markProcessed(e.key)
        } catch {
            // the ledger failed: the event stays unprocessed, and its attempts count this start
            logger.error("event \(e.key): \(error)")
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
                guard let nonce = inv.args.first, let p = try pending(nonce: nonce) else { return .open }   // "no such nonce" is the answer
                verb = p.verb
                what = inv.verb == "yes" ? "approve `/ka-\(p.verb)`" : "cancel that plan"
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
        try reply(e, seq: taken, text, state: "refused", verb: "ignored", args: [])
    }

    /// An event whose handling was started `starts` times and never finished: each command not yet answered is
    /// failed, with one reply.
    func giveUp(_ e: Ledger.Event, _ taken: [Result<Invocation, ParseProblem>], starts: Int) throws {
        var firstSeq: Int?
        var raws: [String] = []
        for (seq, p) in taken.enumerated() {
            guard try claim(e, seq: seq, raw: p.raw, verb: p.verbName, args: p.args) else { continue }
            if firstSeq == nil { firstSeq = seq } else { try settle(e, seq: seq, state: "failed", detail: "given up with command \(firstSeq ?? 0)") }
            raws.append(p.raw)
        }
        guard let seq = firstSeq else { return }
        try reply(e, seq: seq, "@\(e.author) kernel-agent stopped \(starts) times while handling this comment, so it is skipped; nothing was done for:\n\n"
                  + raws.map { "- `\($0.prefix(120))`" }.joined(separator: "\n"), state: "failed", verb: "?", args: [])
    }

    // MARK: one command

    /// Marks one command as being handled, before anything else happens. False when it was claimed before
    /// (answered, or failed by recovery after a crash).
    func claim(_ e: Ledger.Event, seq: Int, raw: String, verb: String, args: [String]) throws -> Bool {
        try ledger.writeSync { db in
            try db.execute(sql: """
                INSERT OR IGNORE INTO runs (event_key, seq, issue, requester, verb, args, state, detail, created_at, updated_at)
                VALUES (?,?,?,?,?,?,'handling',?,?,?)
                """, arguments: [e.key, seq, e.issue, e.author, verb, Self.json(args), String(raw.prefix(500)),
                                 now().timeIntervalSince1970, now().timeIntervalSince1970])
            return db.changesCount == 1
        }
    }

    func handle(_ parsed: Result<Invocation, ParseProblem>, seq: Int, event e: Ledger.Event, gate: Gate, refusal: String?) async {
        do {
            guard try claim(e, seq: seq, raw: parsed.raw, verb: parsed.verbName, args: parsed.args) else { return }
            switch gate {
            case .open: break
            case .denied:
                if let refusal {
                    try reply(e, seq: seq, refusal, state: "refused", verb: parsed.verbName, args: parsed.args)
                } else {
                    try settle(e, seq: seq, state: "refused", detail: "not allowed (one refusal per comment)")
                }
                return
            case let .unknown(why):
                try reply(e, seq: seq, "@\(e.author) could not check whether you may run `\(parsed.raw)` (\(why)); nothing was done. Post it again later.",
                          state: "failed", verb: parsed.verbName, args: parsed.args)
                return
            }
            let inv: Invocation
            switch parsed {
            case let .failure(p):
                try reply(e, seq: seq, "@\(e.author) could not read `\(p.raw)`: \(p.message).", state: "refused", verb: "?", args: [])
                return
            case let .success(i): inv = i
            }
            switch inv.verb {
            case "ka-help", "help": try reply(e, seq: seq, Self.helpText(inv.args.first), state: "answered", verb: "help", args: inv.args)
            case "yes": try consent(inv, seq: seq, event: e)
            case "no": try cancel(inv, seq: seq, event: e)
            default: try await propose(inv, seq: seq, event: e)
            }
        } catch {
            logger.error("command \(e.key)#\(seq): \(error)")
            do {
                try reply(e, seq: seq, "@\(e.author) internal error while reading your command: \(error)", state: "failed", verb: "?", args: [])
            } catch {
                logger.error("command \(e.key)#\(seq): cannot even record the failure: \(error)")
            }
        }
    }

    func isHandling(_ db: Database, _ e: Ledger.Event, seq: Int) throws -> Bool {
        try String.fetchOne(db, sql: "SELECT state FROM runs WHERE event_key = ? AND seq = ?", arguments: [e.key, seq]) == "handling"
    }

    /// Settles a claimed command without a reply.
    func settle(_ e: Ledger.Event, seq: Int, state: String, detail: String) throws {
        try ledger.writeSync { db in
            try db.execute(sql: "UPDATE runs SET state = ?, detail = ?, updated_at = ? WHERE event_key = ? AND seq = ? AND state = 'handling'",
                           arguments: [state, detail, now().timeIntervalSince1970, e.key, seq])
        }
    }

    /// True (and settled as rate-limited, with one notice while the limit holds) when the requester has had
    /// `reply_rate_limit` replies in the window already.
    func overBudget(_ db: Database, _ e: Ledger.Event, seq: Int) throws -> Bool {
        guard let limit = config.replyRateLimit else { return false }
        let t = now().timeIntervalSince1970
        let row = try Row.fetchOne(db, sql: "SELECT COUNT(*) AS n, MIN(replied_at) AS oldest FROM runs WHERE requester = ? AND replied_at > ?",
                                   arguments: [e.author, t - limit.window])
        guard let row, row["n"] as Int >= limit.count, let oldest = row["oldest"] as Double? else { return false }
        try db.execute(sql: "UPDATE runs SET state = 'rate-limited', updated_at = ? WHERE event_key = ? AND seq = ?", arguments: [t, e.key, seq])
        // one notice per user until the oldest counted reply leaves the window
        let until = Date(timeIntervalSince1970: oldest + limit.window)
        try ledger.enqueue(.comment(issue: e.issue, body: "@\(e.author) you have had \(limit.count) replies from me in the last \(Self.seconds(limit.window)) "
                                    + "(`reply_rate_limit`), so I am not answering your commands until \(GiteaTime.format(until)); nothing was done for them. "
                                    + "Post them again after that."),
                           ref: "rate-limit-\(e.author)-\(Int(oldest))", in: db, at: now())
        return true
    }

    /// Settles a claimed command and enqueues its reply in one transaction (with `also`, if given). Past the
    /// requester's reply budget nothing of it happens. False when the command was settled before.
    @discardableResult
    func reply(_ e: Ledger.Event, seq: Int, _ text: String, state: String, verb: String, args: [String],
               nonce: String? = nil, pins: String? = nil, expires: Date? = nil, also: ((Database) throws -> Void)? = nil) throws -> Bool {
        try ledger.writeSync { db in
            guard try isHandling(db, e, seq: seq), try !overBudget(db, e, seq: seq) else { return false }
            let t = now().timeIntervalSince1970
            try db.execute(sql: """
                UPDATE runs SET state = ?, verb = ?, args = ?, nonce = ?, expires_at = ?, pins = ?, updated_at = ?, replied_at = ?
                WHERE event_key = ? AND seq = ?
                """, arguments: [state, verb, Self.json(args), nonce, expires?.timeIntervalSince1970, pins, t, t, e.key, seq])
            try also?(db)
            try ledger.enqueue(.comment(issue: e.issue, body: text), ref: "reply-\(e.key)-\(seq)", in: db, at: now())
            if let cid = e.commentID, seq == 0 {
                try ledger.enqueue(.reaction(commentID: cid, content: "eyes"), ref: "eyes-\(cid)", in: db, at: now())
            }
            return true
        }
    }

    static func json<T: Encodable>(_ v: T) -> String {
        // [String] and [Plan.Pin] always encode
        (try? JSONEncoder().encode(v)).map { String(decoding: $0, as: UTF8.self) } ?? "null"
    }

    public static func helpText(_ verb: String?) -> String {
        if let verb, let v = Verbs.named(verb.replacingOccurrences(of: "ka-", with: "")) {
            return "```\n\(Verbs.help(v))\n```"
        }
        var out = "kernel-agent verbs (comment `/ka-<verb> args`; I reply with the plan and a nonce; `/ka-yes <nonce>` runs it):\n\n| verb | what it does |\n|---|---|\n"
        for (name, abstract) in Verbs.abstracts { out += "| `/ka-\(name)` | \(abstract) |\n" }
        out += "| `/ka-help [verb]` | this list, or one verb's usage |\n"
        return out
    }

    // MARK: propose → consent → run

    func propose(_ inv: Invocation, seq: Int, event e: Ledger.Event) async throws {
        guard Verbs.named(inv.verb) != nil else {
            let near = Verbs.names.min { editDistance($0, inv.verb) < editDistance($1, inv.verb) } ?? "help"
            try reply(e, seq: seq, "@\(e.author) unknown verb `/ka-\(inv.verb)`. Did you mean `/ka-\(near)`?\n\n" + Self.helpText(nil),
                      state: "refused", verb: inv.verb, args: inv.args)
            return
        }
        let plan: Plan
        switch await planOffLoop(inv) {
        case nil:
            try reply(e, seq: seq, "@\(e.author) `\(inv.raw)`: planning did not finish within \(Self.seconds(config.planTimeout)), so I stopped waiting; "
                      + "nothing was done. (`plan_timeout` sets the limit.)", state: "failed", verb: inv.verb, args: inv.args)
            return
        case let .success(p)?: plan = p
        case let .failure(err as UsageProblem)?:
            try reply(e, seq: seq, "@\(e.author) `\(inv.raw)`: \(err.text)", state: "refused", verb: inv.verb, args: inv.args)
            return
        case let .failure(err as KAError)?:
            try reply(e, seq: seq, "@\(e.author) `\(inv.raw)` refused: \(err.message)" + (err.hint.map { "\n\nfix: \($0)" } ?? ""),
                      state: "refused", verb: inv.verb, args: inv.args)
            return
        case let .failure(err)?: throw err
        }
        let nonce = String(UInt64.random(in: 0...UInt64.max), radix: 36)
        let expires = now().addingTimeInterval(config.consentTTL)
        var text = "@\(e.author) `/ka-\(inv.verb)\(inv.args.isEmpty ? "" : " " + inv.args.joined(separator: " "))` will:\n\n"
        for (i, s) in plan.steps.enumerated() { text += "\(i + 1). \(s.trimmingCharacters(in: .whitespaces))\n" }
        if !plan.pins.isEmpty {
            text += "\n<details><summary>pinned to \(plan.pins.count) input(s)</summary>\n\n| input | value |\n|---|---|\n"
            for p in plan.pins { text += "| `\(p.name)` | `\(p.value.prefix(28))…` |\n" }
            text += "\n</details>\n"
        }
        text += "\nReply `/ka-yes \(nonce)` to run it, or `/ka-no \(nonce)` to cancel. This expires \(GiteaTime.format(expires)). If any pinned input changes first, the consent is void."
        try reply(e, seq: seq, text, state: "awaiting", verb: inv.verb, args: inv.args, nonce: nonce, pins: Self.json(plan.pins), expires: expires)
    }

    static func seconds(_ s: Double) -> String { s == s.rounded() ? "\(Int(s)) s" : String(format: "%.1f s", s) }

    /// Plans on the plan queue; nil when it takes longer than `plan_timeout` (waiting for a free planner counts).
    /// A plan that times out keeps its thread until it returns; its result is dropped.
    func planOffLoop(_ inv: Invocation) async -> Result<Plan, Error>? {
        await withCheckedContinuation { (cont: CheckedContinuation<Result<Plan, Error>?, Never>) in
            let once = ResumeOnce(cont)
            planQueue.addOperation { [self] in
                planning.withLockedValue { $0 += 1 }
                defer { planning.withLockedValue { $0 -= 1 } }
                once.resume(Result { try makePlan(inv.verb, inv.args) })
            }
            DispatchQueue.global().asyncAfter(deadline: .now() + config.planTimeout) { once.resume(nil) }
        }
    }

    struct UsageProblem: Error { let text: String }

    /// Parse + policy + plan, synchronously (verbs are synchronous code).
    func makePlan(_ name: String, _ args: [String]) throws -> Plan {
        guard let type = Verbs.named(name) else { throw UsageProblem(text: "unknown verb") }
        let verb: any Verb
        do { verb = try Verbs.parse(type, args) } catch { throw UsageProblem(text: Verbs.usageReply(type, error: error)) }
        faults.hit(.plan, verb: name)
        let ctx = try makeContext()
        return try verb.withTreeAccess(in: ctx) {
            do {
                try ctx.policy().admit(try verb.policySubject(in: ctx))
                return try verb.plan(in: ctx)
            } catch {
                try ctx.fileRequestedBlocks(of: error)
                throw error
            }
        }
    }

    struct Pending { let id: Int64; let issue: Int; let verb: String; let args: [String]; let pins: [Plan.Pin]; let expires: Date; let state: String }

    func pending(nonce: String) throws -> Pending? {
        try ledger.readSync { db in
            guard let r = try Row.fetchOne(db, sql: "SELECT * FROM runs WHERE nonce = ?", arguments: [nonce]) else { return nil }
            return Pending(id: r["id"], issue: r["issue"], verb: r["verb"], args: try Self.decode([String].self, r["args"]),
                           pins: try Self.decode([Plan.Pin].self, r["pins"] ?? "[]"),
                           expires: Date(timeIntervalSince1970: r["expires_at"] ?? 0), state: r["state"])
        }
    }

    static func decode<T: Decodable>(_ t: T.Type, _ json: String) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(json.utf8))
    }

    func consent(_ inv: Invocation, seq: Int, event e: Ledger.Event) throws {
        guard let nonce = inv.args.first, inv.args.count == 1, let p = try pending(nonce: nonce) else {
            try reply(e, seq: seq, "@\(e.author) no pending plan has that nonce; nothing was done.", state: "refused", verb: "yes", args: inv.args)
            return
        }
        guard p.state == "awaiting" else {
            try reply(e, seq: seq, "@\(e.author) that plan is already \(p.state); nothing was done.", state: "refused", verb: "yes", args: inv.args)
            return
        }
        guard now() < p.expires else {
            try reply(e, seq: seq, "@\(e.author) that plan expired at \(GiteaTime.format(p.expires)); ask again.", state: "refused", verb: "yes", args: inv.args) { db in
                try db.execute(sql: "UPDATE runs SET state = 'expired' WHERE id = ? AND state = 'awaiting'", arguments: [p.id])
            }
            return
        }
        // Claim the consent atomically: only one /ka-yes wins. Its answer is the run's status comment.
        let claimed = try ledger.writeSync { db -> Bool in
            guard try isHandling(db, e, seq: seq), try !overBudget(db, e, seq: seq) else { return true }
            let t = now().timeIntervalSince1970
            try db.execute(sql: "UPDATE runs SET state = 'queued', updated_at = ? WHERE id = ? AND state = 'awaiting'", arguments: [t, p.id])
            guard db.changesCount == 1 else { return false }
            try db.execute(sql: "UPDATE runs SET state = 'answered', verb = 'yes', args = ?, detail = ?, updated_at = ?, replied_at = ? WHERE event_key = ? AND seq = ?",
                           arguments: [Self.json(inv.args), "run #\(p.id)", t, t, e.key, seq])
            try ledger.enqueue(.comment(issue: p.issue, body: "⏳ queued: `/ka-\(p.verb) \(p.args.joined(separator: " "))` (approved by @\(e.author))"),
                               ref: "status-\(p.id)", in: db, at: now())
            if let cid = e.commentID { try ledger.enqueue(.reaction(commentID: cid, content: "eyes"), ref: "eyes-\(cid)", in: db, at: now()) }
            return true
        }
        if !claimed {
            try reply(e, seq: seq, "@\(e.author) that plan is no longer awaiting consent.", state: "refused", verb: "yes", args: inv.args)
        }
    }

    func cancel(_ inv: Invocation, seq: Int, event e: Ledger.Event) throws {
        guard let nonce = inv.args.first, let p = try pending(nonce: nonce), p.state == "awaiting" else {
            try reply(e, seq: seq, "@\(e.author) no pending plan has that nonce.", state: "refused", verb: "no", args: inv.args)
            return
        }
        try reply(e, seq: seq, "@\(e.author) cancelled `/ka-\(p.verb) \(p.args.joined(separator: " "))`; nothing was done.", state: "answered", verb: "no", args: inv.args) { db in
            try db.execute(sql: "UPDATE runs SET state = 'cancelled' WHERE id = ? AND state = 'awaiting'", arguments: [p.id])
        }
    }

    // MARK: recovery

    /// On start. A run that was running when the process died is marked failed and says so; queued ones stay
    /// queued. A command that was being handled (planning, answering) is failed with a reply: it may be what
    /// killed the process, so it is never handled again.
    public func recoverInterrupted() throws {
        try ledger.writeSync { db in
            let t = now().timeIntervalSince1970
            let running = try Int64.fetchAll(db, sql: "SELECT id FROM runs WHERE state = 'running'")
            let resumed = try requeueResumableJobs(db, runningIDs: running)
            for id in running where !resumed.contains(id) {
                try db.execute(sql: "UPDATE runs SET state = 'failed', detail = 'interrupted by a restart', finished_at = ? WHERE id = ?", arguments: [t, id])
                try ledger.enqueue(.editComment(targetRef: "status-\(id)", body: "❌ failed: kernel-agent restarted while this ran; it was not retried. Check the state (`/ka-status`) and invoke it again."),
                                   ref: "status-\(id)-interrupted", in: db, at: now())
            }
            let handling = try Row.fetchAll(db, sql: "SELECT event_key, seq, issue, requester, detail FROM runs WHERE state = 'handling'")
            for r in handling {
                let key: String = r["event_key"], seq: Int = r["seq"], raw: String = r["detail"] ?? "?"
                try db.execute(sql: "UPDATE runs SET state = 'failed', detail = ?, updated_at = ?, replied_at = ? WHERE event_key = ? AND seq = ?",
                               arguments: ["interrupted while handling: \(raw)", t, t, key, seq])
                try ledger.enqueue(.comment(issue: r["issue"], body: "@\(r["requester"] as String) ❌ kernel-agent stopped while handling `\(raw)` and did not retry it; "
                                            + "nothing was done. Check the state (`/ka-status`) and post the command again if you still want it."),
                                   ref: "reply-\(key)-\(seq)", in: db, at: now())
            }
        }
    }

    // MARK: running

    struct Queued { let id: Int64; let verb: String; let args: [String]; let pins: [Plan.Pin]; let issue: Int }

    func queuedRuns() throws -> [Queued] {
        try ledger.readSync { db in
            try Row.fetchAll(db, sql: "SELECT * FROM runs WHERE state = 'queued' ORDER BY id").map { r in
                Queued(id: r["id"], verb: r["verb"], args: try Self.decode([String].self, r["args"]),
                       pins: try Self.decode([Plan.Pin].self, r["pins"] ?? "[]"), issue: r["issue"])
            }
        }
    }

    /// Lanes in use right now; a run waits while its lane is busy.
    struct LaneBook { var busy: [String: Int64] = [:]; var announcedWait = Set<Int64>() }

    /// Starts every queued run whose lane is free, up to the parallel limit. Returns the tasks started.
    @discardableResult
    public func startRunnable() throws -> [Task<Void, Never>] {
        var started: [Task<Void, Never>] = []
        for q in try queuedRuns() {
            let verb: any Verb
            do {
                guard let type = Verbs.named(q.verb) else { throw KAError.refusal("/ka-\(q.verb)", "this kernel-agent has no such verb any more") }
                verb = try Verbs.parse(type, q.args)
            } catch {
                // It parsed when it was planned; an upgrade since changed the verb. Fail it once, with a reply.
                let why = (error as? KAError)?.description ?? Verbs.named(q.verb).map { Verbs.usageReply($0, error: error) } ?? "\(error)"
                try ledger.writeSync { db in
                    let t = now().timeIntervalSince1970
                    try db.execute(sql: "UPDATE runs SET state = 'failed', detail = ?, updated_at = ?, finished_at = ? WHERE id = ? AND state = 'queued'",
                                   arguments: [String(why.prefix(2000)), t, t, q.id])
                    try ledger.enqueue(.editComment(targetRef: "status-\(q.id)", body: "❌ failed: `/ka-\(q.verb) \(q.args.joined(separator: " "))` no longer parses, so it was not run:\n\n\(why)"),
                                       ref: "status-\(q.id)-unparsable", in: db, at: now())
                }
                continue
            }
            // read-only verbs share no lane with anything
            let lane = verb.lane == .none ? "run-\(q.id)" : verb.lane.description
            enum Decision { case wait(holder: Int64, announce: Bool), full, go }
            let decision = lanes.withLockedValue { book -> Decision in
                if let holder = book.busy[lane] { return .wait(holder: holder, announce: book.announcedWait.insert(q.id).inserted) }
                if book.busy.count >= config.maxParallelRuns { return .full }
                book.busy[lane] = q.id
                return .go
            }
            switch decision {
            case .full: return started
            case let .wait(holder, announce):
                if announce {
                    try ledger.enqueue(.editComment(targetRef: "status-\(q.id)", body: "⏳ queued: `/ka-\(q.verb) \(q.args.joined(separator: " "))` waits behind run #\(holder) on \(lane)"),
                                       ref: "status-\(q.id)-wait")
                }
                continue
            case .go: break
            }
            let claimed: Bool
            do {
                claimed = try ledger.writeSync { db -> Bool in
                    let t = now().timeIntervalSince1970
                    try db.execute(sql: "UPDATE runs SET state = 'running', updated_at = ?, started_at = ? WHERE id = ? AND state = 'queued'", arguments: [t, t, q.id])
                    guard db.changesCount == 1 else { return false }
                    try ledger.enqueue(.editComment(targetRef: "status-\(q.id)", body: "🏃 running: `/ka-\(q.verb) \(q.args.joined(separator: " "))`"), ref: "status-\(q.id)-running", in: db, at: now())
                    return true
                }
            } catch {
                release(lane)
                throw error
            }
            guard claimed else { release(lane); continue }
            let parsed = UncheckedSendable(verb)   // parsed arguments only, handed to the one task that runs them
            started.append(Task.detached { [self] in
                await self.execute(q, verb: parsed.value)
                self.release(lane)
            })
        }
        return started
    }

    private func release(_ lane: String) { _ = lanes.withLockedValue { $0.busy.removeValue(forKey: lane) } }

    func execute(_ q: Queued, verb: any Verb) async {
        if let jobVerb = verb as? any JobVerb {
            await executeJob(q, verb: jobVerb)
            return
        }
        nonisolated(unsafe) let verb = verb   // parsed arguments only; used on one thread at a time
        let outcome: (state: String, text: String) = await withCheckedContinuation { cont in
            DispatchQueue.global().async { [self] in
                do {
                    faults.hit(.run, verb: q.verb)
                    let ctx = try makeContext()
                    // One hold of the tree lock for the pin check and the run: nothing can move in between.
                    let outcome: (String, String) = try verb.withTreeAccess(in: ctx) { () throws -> (String, String) in
                        do {
                            try ctx.policy().admit(try verb.policySubject(in: ctx))
                            let fresh = try verb.plan(in: ctx)
                            let original = Plan(verb: q.verb, arguments: q.args, steps: [], pins: q.pins)
                            let changed = original.changedPins(comparedTo: fresh)
                            if !changed.isEmpty {
                                return ("failed", "consent void: pinned inputs changed since the plan:\n\n" + changed.map { "- `\($0)`" }.joined(separator: "\n") + "\n\nNothing was done; ask again for a new plan.")
                            }
                            return ("done", try verb.run(fresh, in: ctx).text)
                        } catch {
                            try ctx.fileRequestedBlocks(of: error)
                            throw error
                        }
                    }
                    cont.resume(returning: outcome)
                } catch let e as KAError {
                    cont.resume(returning: ("failed", e.description))
                } catch {
                    cont.resume(returning: ("failed", "\(error)"))
                }
            }
        }
        let icon = outcome.state == "done" ? "✅ done" : "❌ failed"
        let body = "\(icon): `/ka-\(q.verb) \(q.args.joined(separator: " "))`\n\n" + Self.fold(outcome.text)
        do {
            try ledger.writeSync { db in
                let t = now().timeIntervalSince1970
                try db.execute(sql: "UPDATE runs SET state = ?, detail = ?, updated_at = ?, finished_at = ? WHERE id = ?",
                               arguments: [outcome.state, String(outcome.text.prefix(2000)), t, t, q.id])
                try ledger.enqueue(.editComment(targetRef: "status-\(q.id)", body: body), ref: "status-\(q.id)-final", in: db, at: now())
            }
        } catch {
            // stays 'running': the next start fails it with a reply
            logger.error("run #\(q.id): cannot record its outcome: \(error)")
        }
    }

    /// Long output goes into <details> with its tail visible.
    static func fold(_ text: String) -> String {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.count <= 25 { return "```\n\(text.trimmingCharacters(in: .newlines))\n```" }
        let tail = lines.suffix(15).joined(separator: "\n")
        return "<details><summary>full output (\(lines.count) lines)</summary>\n\n```\n\(text)\n```\n</details>\n\nlast lines:\n```\n\(tail)\n```"
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
struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
