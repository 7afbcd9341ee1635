import ArgumentParser
import Foundation
import GRDB
import KernelAgent
import Logging

/// One command's record and its reply: claimed before anything happens, settled with its reply in one
/// transaction, within the requester's reply budget; and the texts the bot answers with.
extension Engine {
    // MARK: one command

    /// Marks one command as being handled, before anything else happens. False when it was claimed before
    /// (answered, or failed by recovery after a crash).
    func claim(_ e: Ledger.Event, seq: Int, raw: String, verb: String, args: [String]) throws -> Bool {
        try ledger.writeSync { db in
            try RunStore.claim(db, key: e.key, seq: seq, issue: e.issue, requester: e.author, verb: verb, args: args, raw: raw, at: now())
        }
    }

    func handle(_ parsed: Result<Invocation, ParseProblem>, seq: Int, event e: Ledger.Event, gate: Gate, refusal: String?) async {
        do {
            guard try claim(e, seq: seq, raw: parsed.raw, verb: parsed.verbName, args: parsed.args) else { return }
            switch gate {
            case .open: break
            case .denied:
                if let refusal {
                    try reply(e, seq: seq, refusal, state: .refused, verb: parsed.verbName, args: parsed.args)
                } else {
                    try settle(e, seq: seq, state: .refused, detail: "not allowed (one refusal per comment)")
                }
                return
            case let .unknown(why):
                try reply(e, seq: seq, "@\(e.author) could not check whether you may run `\(parsed.raw)` (\(why)); nothing was done. Post it again later.",
                          state: .failed, verb: parsed.verbName, args: parsed.args)
                return
            }
            let inv: Invocation
            switch parsed {
            case let .failure(p):
                try reply(e, seq: seq, "@\(e.author) could not read `\(p.raw)`: \(p.message).", state: .refused, verb: "?", args: [])
                return
            case let .success(i): inv = i
            }
            switch inv.verb {
            case "ka-help", "help": try reply(e, seq: seq, Self.helpText(inv.args.first), state: .answered, verb: "help", args: inv.args)
            case "yes": try consent(inv, seq: seq, event: e)
            case "no": try cancel(inv, seq: seq, event: e)
            default: try await propose(inv, seq: seq, event: e)
            }
        } catch {
            logger.error("command \(e.key)#\(seq): \(error)")
            do {
                try reply(e, seq: seq, "@\(e.author) internal error while reading your command: \(error)", state: .failed, verb: "?", args: [])
            } catch {
                logger.error("command \(e.key)#\(seq): cannot even record the failure: \(error)")
            }
        }
    }

    func isHandling(_ db: Database, _ e: Ledger.Event, seq: Int) throws -> Bool {
        try RunStore.isHandling(db, key: e.key, seq: seq)
    }

    /// Settles a claimed command without a reply.
    func settle(_ e: Ledger.Event, seq: Int, state: RunState, detail: String) throws {
        try ledger.writeSync { db in
            try RunStore.settle(db, key: e.key, seq: seq, state: state, detail: detail, at: now())
        }
    }

    /// True (and settled as rate-limited, with one notice while the limit holds) when the requester has had
    /// `reply_rate_limit` replies in the window already.
    func overBudget(_ db: Database, _ e: Ledger.Event, seq: Int) throws -> Bool {
        guard let limit = config.replyRateLimit else { return false }
        let recent = try RunStore.replies(db, to: e.author, since: now().addingTimeInterval(-limit.window))
        guard recent.count >= limit.count, let oldestReply = recent.oldest else { return false }
        try RunStore.markRateLimited(db, key: e.key, seq: seq, at: now())
        // one notice per user until the oldest counted reply leaves the window
        let oldest = oldestReply.timeIntervalSince1970
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
    func reply(_ e: Ledger.Event, seq: Int, _ text: String, state: RunState, verb: String, args: [String],
               nonce: String? = nil, pins: String? = nil, expires: Date? = nil, also: ((Database) throws -> Void)? = nil) throws -> Bool {
        try ledger.writeSync { db in
            guard try isHandling(db, e, seq: seq), try !overBudget(db, e, seq: seq) else { return false }
            try RunStore.recordReply(db, key: e.key, seq: seq, state: state, verb: verb, args: args, nonce: nonce, pins: pins,
                                     expires: expires, at: now())
            try also?(db)
            try ledger.enqueue(.comment(issue: e.issue, body: text), ref: "reply-\(e.key)-\(seq)", in: db, at: now())
            if let cid = e.commentID, seq == 0 {
                try ledger.enqueue(.reaction(commentID: cid, content: "eyes"), ref: "eyes-\(cid)", in: db, at: now())
            }
            try Self.closing?.markIfLast(key: e.key, seq: seq, in: db, ledger: ledger)
            return true
        }
    }


    package static func helpText(_ verb: String?) -> String {
        if let verb, let v = Verbs.named(verb.replacingOccurrences(of: "ka-", with: "")) {
            return "```\n\(Verbs.help(v))\n```"
        }
        var out = "kernel-agent verbs (comment `/ka-<verb> args`; I reply with the plan and a nonce; `/ka-yes <nonce>` runs it):\n\n| verb | what it does |\n|---|---|\n"
        for (name, abstract) in Verbs.abstracts { out += "| `/ka-\(name)` | \(abstract) |\n" }
        out += "| `/ka-help [verb]` | this list, or one verb's usage |\n"
        return out
    }
}
