import Foundation

/// A probe's outcome, in KernelCI's words (and its spellings, which the JSON output keeps).
package enum ProbeCode: String, Sendable, Equatable, Codable, CaseIterable {
    /// The check held.
    case pass
    /// The check did not hold: what the host has is not what the manifest expects. A regression candidate.
    case fail
    /// The probe does not apply to this host (no device tree; the program is not installed). Never a pass.
    case skip
    /// The host could not be asked (unreachable, timed out, cancelled). Retried, and never a regression.
    case infraError = "infra-error"
}

/// One probe's result: what was asked, what the host showed, and the code.
package struct ProbeResult: Sendable, Equatable {
    /// The probe as written in the manifest.
    package let probe: String
    package let origin: ProbeOrigin
    package let code: ProbeCode
    /// What the host showed, at most `ProbeLimits.shownBytes`, control characters escaped (for an issue or a log).
    package let observed: String
    /// One sentence: why this code.
    package let reason: String
    /// How many times the probe was evaluated (more than 1 after infra-errors).
    package let attempts: Int

    package init(probe: String, origin: ProbeOrigin, code: ProbeCode, observed: String, reason: String, attempts: Int = 1) {
        self.probe = probe; self.origin = origin; self.code = code; self.observed = observed; self.reason = reason; self.attempts = attempts
    }

    func attempted(_ n: Int) -> ProbeResult {
        ProbeResult(probe: probe, origin: origin, code: code, observed: observed, reason: reason, attempts: n)
    }

    /// Bytes from a host as shown in a result: valid UTF-8 kept, control characters other than newline and tab
    /// as `\xNN`, cut to `limit` bytes with a note of how much was left out.
    package static func shown(_ bytes: [UInt8], limit: Int = ProbeLimits.shownBytes) -> String {
        var out = ""
        var used = 0
        for scalar in String(decoding: bytes, as: UTF8.self).unicodeScalars {
            let piece: String
            if scalar.value < 0x20 && scalar != "\n" && scalar != "\t" || scalar.value == 0x7f {
                piece = "\\x" + (scalar.value < 0x10 ? "0" : "") + String(scalar.value, radix: 16)
            } else {
                piece = String(scalar)
            }
            guard used + piece.utf8.count <= limit else {
                return out + "… (cut; \(bytes.count) bytes in all)"
            }
            out += piece
            used += piece.utf8.count
        }
        return out
    }
}
