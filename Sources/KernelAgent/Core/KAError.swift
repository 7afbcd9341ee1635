import Foundation

/// Every failure a verb can report. A refusal is a hard-rule or input rejection (exit 2, nothing written);
/// `chain` names how we got there, e.g. `fleet/ohm.yaml → include arch/arm64/xyz → no such patch dir`.
package struct KAError: Error, CustomStringConvertible, Equatable, Sendable {
    package enum Kind: String, Sendable {
        case refusal          // a hard rule or a bad input said no
        case notAvailable     // the verb is declared but its pipeline has not landed
        case failure          // the verb tried and something outside our control failed (I/O, subprocess)
    }

    package let kind: Kind
    package let chain: [String]
    package let hint: String?
    /// Blocks this refusal asks to have filed (promote: [ka:patch-fail], [ka:campaign-conflict]). The verb only
    /// says so; the front door files them, once, where blocks are filed at all (the control plane).
    package var blocks: [BlockRequest] = []
    /// The error underneath (a SQLite error, a POSIX one, a decoding error), kept for whoever handles it; the chain
    /// already says it in words. Not part of equality.
    package var cause: (any Error)? = nil

    package init(_ kind: Kind, _ chain: [String], hint: String? = nil, blocks: [BlockRequest] = [], cause: (any Error)? = nil) {
        self.kind = kind
        self.chain = chain
        self.hint = hint
        self.blocks = blocks
        self.cause = cause
    }

    package static func refusal(_ chain: String..., hint: String? = nil) -> KAError {
        KAError(.refusal, chain, hint: hint)
    }

    package static func failure(_ chain: String..., hint: String? = nil) -> KAError {
        KAError(.failure, chain, hint: hint)
    }

    /// A failure caused by `cause`: its text ends the chain, and the error itself is kept.
    package static func failure(_ chain: String..., cause: any Error, hint: String? = nil) -> KAError {
        KAError(.failure, chain, hint: hint, cause: cause)
    }

    /// The same error, with one more link in front: the caller's context.
    package func within(_ context: String) -> KAError {
        KAError(kind, [context] + chain, hint: hint, blocks: blocks, cause: cause)
    }

    /// The innermost cause that is not itself a KAError (nil when there is none).
    package var rootCause: (any Error)? {
        guard let cause else { return nil }
        if let inner = cause as? KAError { return inner.rootCause ?? inner }
        return cause
    }

    package static func == (a: KAError, b: KAError) -> Bool {
        a.kind == b.kind && a.chain == b.chain && a.hint == b.hint && a.blocks == b.blocks
    }

    package var message: String { chain.joined(separator: " → ") }

    package var description: String {
        guard let hint else { return message }
        return "\(message)\n  fix: \(hint)"
    }

    package var exitCode: Int32 {
        switch kind {
        case .refusal, .notAvailable: return 2
        case .failure: return 1
        }
    }
}
