import ArgumentParser
import Foundation
import GRDB
import KernelAgent
import Logging
import NIOConcurrencyHelpers

/// Propose → consent: a plan made off the loop with a timeout, shown with its pins and a nonce; `/ka-yes`
/// queues it, `/ka-no` cancels it.
extension Engine {
    // MARK: propose → consent → run

    func propose(_ inv: Invocation, seq: Int, event e: Ledger.Event) async throws {
        guard Verbs.named(inv.verb) != nil else {
            let near = Verbs.names.min { editDistance($0, inv.verb) < editDistance($1, inv.verb) } ?? "help"
            try reply(e, seq: seq, "@\(e.author) unknown verb `/ka-\(inv.verb)`. Did you mean `/ka-\(near)`?\n\n" + Self.helpText(nil),
                      state: .refused, verb: inv.verb, args: inv.args)
            return
        }
        let plan: Plan
        switch await planOffLoop(inv) {
        case nil:
            try reply(e, seq: seq, "@\(e.author) `\(inv.raw)`: planning did not finish within \(Self.seconds(config.planTimeout)), so I stopped waiting; "
                      + "nothing was done. (`plan_timeout` sets the limit.)", state: .failed, verb: inv.verb, args: inv.args)
            return
        case let .success(p)?: plan = p
        case let .failure(err as UsageProblem)?:
            try reply(e, seq: seq, "@\(e.author) `\(inv.raw)`: \(err.text)", state: .refused, verb: inv.verb, args: inv.args)
            return
        case let .failure(err as KAError)?:
            try reply(e, seq: seq, "@\(e.author) `\(inv.raw)` refused: \(err.message)" + (err.hint.map { "\n\nfix: \($0)" } ?? ""),
                      state: .refused, verb: inv.verb, args: inv.args)
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
        try reply(e, seq: seq, text, state: .awaiting, verb: inv.verb, args: inv.args, nonce: nonce, pins: try RunStore.json(plan.pins), expires: expires)
    }

    static func seconds(_ s: Double) -> String { s == s.rounded() ? "\(Int(s)) s" : String(format: "%.1f s", s) }

    /// Plans on the verbs' own threads, `max_parallel_runs` at a time; nil when it takes longer than
    /// `plan_timeout` (waiting for a free planner counts). A plan that times out runs on until it returns; its
    /// result is dropped.
    func planOffLoop(_ inv: Invocation) async -> Result<Plan, Error>? {
        await withCheckedContinuation { (cont: CheckedContinuation<Result<Plan, Error>?, Never>) in
            let once = ResumeOnce(cont)
            Task(executorPreference: VerbThreads.shared) { [self] in
                await planSlots.acquire()
                planning.withLockedValue { $0 += 1 }
                defer { planning.withLockedValue { $0 -= 1 }; planSlots.release() }
                do { once.resume(.success(try await makePlan(inv.verb, inv.args))) } catch { once.resume(.failure(error)) }
            }
            DispatchQueue.global().asyncAfter(deadline: .now() + config.planTimeout) { once.resume(nil) }
        }
    }

    struct UsageProblem: Error { let text: String }

    /// Parse, policy and plan: what consent shows.
    func makePlan(_ name: String, _ args: [String]) async throws -> Plan {
        guard let type = Verbs.named(name) else { throw UsageProblem(text: "unknown verb") }
        let verb: any Verb
        do { verb = try Verbs.parse(type, args) } catch { throw UsageProblem(text: Verbs.usageReply(type, error: error)) }
        faults.hit(.plan, verb: name)
        return try await VerbPipeline.propose(verb, arguments: args, in: try makeContext())
    }

    func pending(nonce: String) throws -> RunStore.Pending? {
        try ledger.readSync { db in try RunStore.pending(db, nonce: nonce) }
    }

    func consent(_ inv: Invocation, seq: Int, event e: Ledger.Event) throws {
        guard let nonce = inv.args.first, inv.args.count == 1, let p = try pending(nonce: nonce) else {
            try reply(e, seq: seq, "@\(e.author) no pending plan has that nonce; nothing was done.", state: .refused, verb: "yes", args: inv.args)
            return
        }
        guard p.state == .awaiting else {
            try reply(e, seq: seq, "@\(e.author) that plan is already \(p.state); nothing was done.", state: .refused, verb: "yes", args: inv.args)
            return
        }
        guard now() < p.expires else {
            try reply(e, seq: seq, "@\(e.author) that plan expired at \(GiteaTime.format(p.expires)); ask again.", state: .refused, verb: "yes", args: inv.args) { db in
                try RunStore.endAwaiting(db, id: p.id, as: .expired)
            }
            return
        }
        // Claim the consent atomically: only one /ka-yes wins. Its answer is the run's status comment.
        let claimed = try ledger.writeSync { db -> Bool in
            guard try isHandling(db, e, seq: seq), try !overBudget(db, e, seq: seq) else { return true }
            guard try RunStore.approve(db, id: p.id, at: now()) else { return false }
            try RunStore.recordConsent(db, key: e.key, seq: seq, args: inv.args, run: p.id, at: now())
            try ledger.enqueue(.comment(issue: p.issue, body: "⏳ queued: `/ka-\(p.verb) \(p.args.joined(separator: " "))` (approved by @\(e.author))"),
                               ref: "status-\(p.id)", in: db, at: now())
            if let cid = e.commentID { try ledger.enqueue(.reaction(commentID: cid, content: "eyes"), ref: "eyes-\(cid)", in: db, at: now()) }
            return true
        }
        if !claimed {
            try reply(e, seq: seq, "@\(e.author) that plan is no longer awaiting consent.", state: .refused, verb: "yes", args: inv.args)
        }
    }

    func cancel(_ inv: Invocation, seq: Int, event e: Ledger.Event) throws {
        guard let nonce = inv.args.first, let p = try pending(nonce: nonce), p.state == .awaiting else {
            try reply(e, seq: seq, "@\(e.author) no pending plan has that nonce.", state: .refused, verb: "no", args: inv.args)
            return
        }
        try reply(e, seq: seq, "@\(e.author) cancelled `/ka-\(p.verb) \(p.args.joined(separator: " "))`; nothing was done.", state: .answered, verb: "no", args: inv.args) { db in
            try RunStore.endAwaiting(db, id: p.id, as: .cancelled)
        }
    }
}
