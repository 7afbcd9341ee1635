import ArgumentParser
import Foundation
import GRDB
import KernelAgent

/// Turns events (new comments, new issues) into runs of the same verbs the CLI runs. Conversation asks for
/// consent first: the reply lists the plan and its pins, with a nonce; only `/ka-yes <nonce>` from an
/// allowed user before expiry runs it, and only if the pins still hold.
public final class Engine: @unchecked Sendable {
    public let config: ControlPlaneConfig
    public let ledger: Ledger
    let api: GiteaAPI
    let makeContext: @Sendable () throws -> VerbContext
    let now: @Sendable () -> Date
    public private(set) var botLogin: String
    private let permissionCache = NSCache<NSString, NSString>()

    public init(config: ControlPlaneConfig, ledger: Ledger, api: GiteaAPI, botLogin: String,
                makeContext: @escaping @Sendable () throws -> VerbContext, now: @escaping @Sendable () -> Date = { Date() }) {
        self.config = config; self.ledger = ledger; self.api = api; self.botLogin = botLogin
        self.makeContext = makeContext; self.now = now
    }

    static let controlVerbs: Set<String> = ["yes", "no", "help"]

    // MARK: ingest (webhook and poller both land here)

    /// The ledger event for a newly created comment, or nil when it is not ours to read (the bot's own, a PR's).
    public func event(comment c: GiteaComment, issue: Int, isPull: Bool = false) -> Ledger.Event? {
        guard c.user.login != botLogin, !isPull else { return nil }
        return .init(key: "comment:\(c.id)", kind: "comment", issue: issue, commentID: c.id, author: c.user.login, text: c.body)
    }

    /// The ledger event for a newly opened issue whose title may hold a verb.
    public func event(issue i: GiteaIssue) -> Ledger.Event? {
        guard i.user.login != botLogin, !i.isPull, i.title.hasPrefix("[ka:") else { return nil }
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
        guard c.user.login != botLogin, CommandParser.parse(comment: c.body).contains(where: { (try? $0.get()) != nil }) else { return }
        try ledger.enqueue(.comment(issue: issue, body: "@\(c.user.login) editing a comment does not re-run its commands; post a new comment to run one."),
                           ref: "edit-note-\(c.id)")
    }

    // MARK: processing

    /// Handles every stored, unhandled event. Safe to call from several places: each invocation's run row is
    /// created once (UNIQUE(event_key, seq)), and its reply is enqueued in the same transaction.
    public func processPending() async {
        guard let events = try? ledger.unprocessedEvents() else { return }
        for e in events {
            let invocations: [Result<Invocation, ParseProblem>]
            if e.kind == "issue" {
                invocations = CommandParser.parse(title: e.text).map { [$0] } ?? []
            } else {
                invocations = CommandParser.parse(comment: e.text)
            }
            for (seq, inv) in invocations.enumerated() {
                await handle(inv, seq: seq, event: e)
            }
            try? ledger.markProcessed(e.key)
        }
    }

    func reply(_ e: Ledger.Event, seq: Int, _ text: String, state: String, verb: String, args: [String],
               nonce: String? = nil, pins: String? = nil, expires: Date? = nil) throws {
        try ledger.writeSync { db in
            try db.execute(sql: """
                INSERT OR IGNORE INTO runs (event_key, seq, issue, requester, verb, args, state, nonce, expires_at, pins, created_at, updated_at)
                VALUES (?,?,?,?,?,?,?,?,?,?,?,?)
                """, arguments: [e.key, seq, e.issue, e.author, verb, Self.json(args), state, nonce, expires?.timeIntervalSince1970, pins,
                                 now().timeIntervalSince1970, now().timeIntervalSince1970])
            guard db.changesCount == 1 else { return }   // this invocation was answered before
            try ledger.enqueue(.comment(issue: e.issue, body: text), ref: "reply-\(e.key)-\(seq)", in: db, at: now())
            if let cid = e.commentID, seq == 0 {
                try ledger.enqueue(.reaction(commentID: cid, content: "eyes"), ref: "eyes-\(cid)", in: db, at: now())
            }
        }
    }

    static func json<T: Encodable>(_ v: T) -> String { String(decoding: (try? JSONEncoder().encode(v)) ?? Data("null".utf8), as: UTF8.self) }

    func handle(_ parsed: Result<Invocation, ParseProblem>, seq: Int, event e: Ledger.Event) async {
        do {
            let inv: Invocation
            switch parsed {
            case let .failure(p):
                try reply(e, seq: seq, "@\(e.author) could not read `\(p.raw)`: \(p.message).", state: "refused", verb: "?", args: [])
                return
            case let .success(i): inv = i
            }
            switch inv.verb {
            case "ka-help", "help": try reply(e, seq: seq, Self.helpText(inv.args.first), state: "answered", verb: "help", args: inv.args)
            case "yes": try await consent(inv, seq: seq, event: e)
            case "no": try await cancel(inv, seq: seq, event: e)
            default: try await propose(inv, seq: seq, event: e)
            }
        } catch {
            try? reply(e, seq: seq, "@\(e.author) internal error while reading your command: \(error)", state: "failed", verb: "?", args: [])
        }
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

    // MARK: authorization

    func authorized(_ login: String, verb: String) async -> Bool {
        if let list = config.allow[verb] ?? config.allow["*"] { return list.contains(login) }
        if let cached = permissionCache.object(forKey: login as NSString) { return ["write", "admin", "owner"].contains(cached as String) }
        guard let p = try? await api.permission(of: login) else { return false }
        permissionCache.setObject(p as NSString, forKey: login as NSString)
        return ["write", "admin", "owner"].contains(p)
    }

    // MARK: propose → consent → run

    func propose(_ inv: Invocation, seq: Int, event e: Ledger.Event) async throws {
        guard Verbs.named(inv.verb) != nil else {
            let near = Verbs.names.min { editDistance($0, inv.verb) < editDistance($1, inv.verb) } ?? "help"
            try reply(e, seq: seq, "@\(e.author) unknown verb `/ka-\(inv.verb)`. Did you mean `/ka-\(near)`?\n\n" + Self.helpText(nil),
                      state: "refused", verb: inv.verb, args: inv.args)
            return
        }
        guard await authorized(e.author, verb: inv.verb) else {
            try reply(e, seq: seq, "@\(e.author) sorry, you are not allowed to run `/ka-\(inv.verb)` here; nothing was done.",
                      state: "refused", verb: inv.verb, args: inv.args)
            return
        }
        let plan: Plan
        do {
            // verbs are synchronous and may block on I/O: keep them off the async executor
            let verbName = inv.verb, args = inv.args
            let result: Result<Plan, Error> = await withCheckedContinuation { cont in
                DispatchQueue.global().async { [self] in
                    cont.resume(returning: Result { try makePlan(verbName, args) })
                }
            }
            plan = try result.get()
        } catch let err as UsageProblem {
            try reply(e, seq: seq, "@\(e.author) `\(inv.raw)`: \(err.text)", state: "refused", verb: inv.verb, args: inv.args)
            return
        } catch let err as KAError {
            try reply(e, seq: seq, "@\(e.author) `\(inv.raw)` refused: \(err.message)" + (err.hint.map { "\n\nfix: \($0)" } ?? ""),
                      state: "refused", verb: inv.verb, args: inv.args)
            return
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

    struct UsageProblem: Error { let text: String }

    /// Parse + policy + plan, synchronously (verbs are synchronous code).
    func makePlan(_ name: String, _ args: [String]) throws -> Plan {
        guard let type = Verbs.named(name) else { throw UsageProblem(text: "unknown verb") }
        let verb: any Verb
        do { verb = try Verbs.parse(type, args) } catch { throw UsageProblem(text: Verbs.usageReply(type, error: error)) }
        let ctx = try makeContext()
        return try verb.withTreeAccess(in: ctx) {
            try ctx.policy().admit(try verb.policySubject(in: ctx))
            return try verb.plan(in: ctx)
        }
    }

    struct Pending { let id: Int64; let issue: Int; let verb: String; let args: [String]; let pins: [Plan.Pin]; let expires: Date; let state: String }

    func pending(nonce: String) throws -> Pending? {
        try ledger.readSync { db in
            guard let r = try Row.fetchOne(db, sql: "SELECT * FROM runs WHERE nonce = ?", arguments: [nonce]) else { return nil }
            let args = (try? JSONDecoder().decode([String].self, from: Data((r["args"] as String).utf8))) ?? []
            let pins = (try? JSONDecoder().decode([Plan.Pin].self, from: Data(((r["pins"] as String?) ?? "[]").utf8))) ?? []
            return Pending(id: r["id"], issue: r["issue"], verb: r["verb"], args: args, pins: pins,
                           expires: Date(timeIntervalSince1970: r["expires_at"] ?? 0), state: r["state"])
        }
    }

    func consent(_ inv: Invocation, seq: Int, event e: Ledger.Event) async throws {
        guard let nonce = inv.args.first, inv.args.count == 1, let p = try pending(nonce: nonce) else {
            try reply(e, seq: seq, "@\(e.author) no pending plan has that nonce; nothing was done.", state: "refused", verb: "yes", args: inv.args)
            return
        }
        guard await authorized(e.author, verb: p.verb) else {
            try reply(e, seq: seq, "@\(e.author) sorry, you are not allowed to approve `/ka-\(p.verb)`; nothing was done.", state: "refused", verb: "yes", args: inv.args)
            return
        }
        guard p.state == "awaiting" else {
            try reply(e, seq: seq, "@\(e.author) that plan is already \(p.state); nothing was done.", state: "refused", verb: "yes", args: inv.args)
            return
        }
        guard now() < p.expires else {
            try ledger.writeSync { try $0.execute(sql: "UPDATE runs SET state = 'expired' WHERE id = ?", arguments: [p.id]) }
            try reply(e, seq: seq, "@\(e.author) that plan expired at \(GiteaTime.format(p.expires)); ask again.", state: "refused", verb: "yes", args: inv.args)
            return
        }
        // Claim the consent atomically: only one /ka-yes wins.
        let claimed = try ledger.writeSync { db -> Bool in
            try db.execute(sql: "UPDATE runs SET state = 'queued', updated_at = ? WHERE id = ? AND state = 'awaiting'",
                           arguments: [now().timeIntervalSince1970, p.id])
            guard db.changesCount == 1 else { return false }
            try db.execute(sql: """
                INSERT OR IGNORE INTO runs (event_key, seq, issue, requester, verb, args, state, detail, created_at, updated_at)
                VALUES (?,?,?,?,?,?,'answered',?,?,?)
                """, arguments: [e.key, seq, e.issue, e.author, "yes", Self.json(inv.args), "run #\(p.id)", now().timeIntervalSince1970, now().timeIntervalSince1970])
            try ledger.enqueue(.comment(issue: p.issue, body: "⏳ queued: `/ka-\(p.verb) \(p.args.joined(separator: " "))` (approved by @\(e.author))"),
                               ref: "status-\(p.id)", in: db, at: now())
            if let cid = e.commentID { try ledger.enqueue(.reaction(commentID: cid, content: "eyes"), ref: "eyes-\(cid)", in: db, at: now()) }
            return true
        }
        if !claimed {
            try reply(e, seq: seq, "@\(e.author) that plan is no longer awaiting consent.", state: "refused", verb: "yes", args: inv.args)
        }
    }

    func cancel(_ inv: Invocation, seq: Int, event e: Ledger.Event) async throws {
        guard let nonce = inv.args.first, let p = try pending(nonce: nonce), p.state == "awaiting" else {
            try reply(e, seq: seq, "@\(e.author) no pending plan has that nonce.", state: "refused", verb: "no", args: inv.args)
            return
        }
        guard await authorized(e.author, verb: p.verb) else {
            try reply(e, seq: seq, "@\(e.author) sorry, you are not allowed to cancel that plan.", state: "refused", verb: "no", args: inv.args)
            return
        }
        try ledger.writeSync { try $0.execute(sql: "UPDATE runs SET state = 'cancelled' WHERE id = ? AND state = 'awaiting'", arguments: [p.id]) }
        try reply(e, seq: seq, "@\(e.author) cancelled `/ka-\(p.verb) \(p.args.joined(separator: " "))`; nothing was done.", state: "answered", verb: "no", args: inv.args)
    }

    // MARK: running

    /// On start: a run that was running when the process died is marked failed and says so; queued ones stay queued.
    public func recoverInterrupted() throws {
        try ledger.writeSync { db in
            let ids = try Int64.fetchAll(db, sql: "SELECT id FROM runs WHERE state = 'running'")
            for id in ids {
                try db.execute(sql: "UPDATE runs SET state = 'failed', detail = 'interrupted by a restart' WHERE id = ?", arguments: [id])
                try ledger.enqueue(.editComment(targetRef: "status-\(id)", body: "❌ failed: kernel-agent restarted while this ran; it was not retried. Check the state (`/ka-status`) and invoke it again."),
                                   ref: "status-\(id)-interrupted", in: db, at: now())
            }
        }
    }

    struct Queued { let id: Int64; let verb: String; let args: [String]; let pins: [Plan.Pin]; let issue: Int }

    func queuedRuns() throws -> [Queued] {
        try ledger.readSync { db in
            try Row.fetchAll(db, sql: "SELECT * FROM runs WHERE state = 'queued' ORDER BY id").map { r in
                Queued(id: r["id"], verb: r["verb"],
                       args: (try? JSONDecoder().decode([String].self, from: Data((r["args"] as String).utf8))) ?? [],
                       pins: (try? JSONDecoder().decode([Plan.Pin].self, from: Data(((r["pins"] as String?) ?? "[]").utf8))) ?? [],
                       issue: r["issue"])
            }
        }
    }

    /// Lanes in use right now; a run waits while its lane is busy.
    private var busy: [String: Int64] = [:]
    private var announcedWait = Set<Int64>()
    private let busyLock = NSLock()

    /// Starts every queued run whose lane is free, up to the parallel limit. Returns the tasks started.
    @discardableResult
    public func startRunnable() -> [Task<Void, Never>] {
        guard let queued = try? queuedRuns() else { return [] }
        var started: [Task<Void, Never>] = []
        for q in queued {
            guard let type = Verbs.named(q.verb) else { continue }
            guard let verb = try? Verbs.parse(type, q.args) else { continue }
            // read-only verbs share no lane with anything
            let lane = verb.lane == .none ? "run-\(q.id)" : verb.lane.description
            busyLock.lock()
            if let holder = busy[lane] {
                let first = announcedWait.insert(q.id).inserted
                busyLock.unlock()
                if first {
                    try? ledger.enqueue(.editComment(targetRef: "status-\(q.id)", body: "⏳ queued: `/ka-\(q.verb) \(q.args.joined(separator: " "))` waits behind run #\(holder) on \(lane)"),
                                        ref: "status-\(q.id)-wait")
                }
                continue
            }
            if busy.count >= config.maxParallelRuns { busyLock.unlock(); break }
            busy[lane] = q.id
            busyLock.unlock()
            let claimed = (try? ledger.writeSync { db -> Bool in
                try db.execute(sql: "UPDATE runs SET state = 'running', updated_at = ? WHERE id = ? AND state = 'queued'", arguments: [now().timeIntervalSince1970, q.id])
                guard db.changesCount == 1 else { return false }
                try ledger.enqueue(.editComment(targetRef: "status-\(q.id)", body: "🏃 running: `/ka-\(q.verb) \(q.args.joined(separator: " "))`"), ref: "status-\(q.id)-running", in: db, at: now())
                return true
            }) ?? false
            guard claimed else { busyLock.lock(); busy[lane] = nil; busyLock.unlock(); continue }
            started.append(Task.detached { [self] in
                await self.execute(q, verb: verb)
                self.release(lane)
            })
        }
        return started
    }

    private func release(_ lane: String) { busyLock.withLock { _ = busy.removeValue(forKey: lane) } }

    func execute(_ q: Queued, verb: any Verb) async {
        nonisolated(unsafe) let verb = verb   // parsed arguments only; used on one thread at a time
        let outcome: (state: String, text: String) = await withCheckedContinuation { cont in
            DispatchQueue.global().async { [self] in
                do {
                    let ctx = try makeContext()
                    // One hold of the tree lock for the pin check and the run: nothing can move in between.
                    let outcome: (String, String) = try verb.withTreeAccess(in: ctx) {
                        try ctx.policy().admit(try verb.policySubject(in: ctx))
                        let fresh = try verb.plan(in: ctx)
                        let original = Plan(verb: q.verb, arguments: q.args, steps: [], pins: q.pins)
                        let changed = original.changedPins(comparedTo: fresh)
                        if !changed.isEmpty {
                            return ("failed", "consent void: pinned inputs changed since the plan:\n\n" + changed.map { "- `\($0)`" }.joined(separator: "\n") + "\n\nNothing was done; ask again for a new plan.")
                        }
                        return ("done", try verb.run(fresh, in: ctx).text)
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
        try? ledger.writeSync { db in
            try db.execute(sql: "UPDATE runs SET state = ?, detail = ?, updated_at = ? WHERE id = ?",
                           arguments: [outcome.state, String(outcome.text.prefix(2000)), now().timeIntervalSince1970, q.id])
            try ledger.enqueue(.editComment(targetRef: "status-\(q.id)", body: body), ref: "status-\(q.id)-final", in: db, at: now())
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
