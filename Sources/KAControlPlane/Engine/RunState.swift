import GRDB

/// Where one command or run stands in the ledger's `runs` table.
enum RunState: String, Sendable, CaseIterable, DatabaseValueConvertible {
    /// Claimed: being handled now (a crash here fails it with a reply on the next start).
    case handling
    /// A plan was proposed; waiting for `/ka-yes` or `/ka-no`.
    case awaiting
    /// Consented; waits for its lane.
    case queued
    case running
    case done
    case failed
    /// Refused: not allowed, bad arguments, a hard rule.
    case refused
    /// Answered with no run (help, a consent reply).
    case answered
    case expired
    case cancelled
    case rateLimited = "rate-limited"
}
