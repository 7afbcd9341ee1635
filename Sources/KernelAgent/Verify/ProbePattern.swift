import Foundation

/// The regex of a `~` / `!~` check: ICU syntax (NSRegularExpression), `^` and `$` at every line.
///
/// A manifest's pattern runs against whatever a host prints, so it is bounded three ways: its length
/// (`ProbeLimits.patternBytes`), its shape (no backreferences, no quantified group that holds a quantifier, the
/// classic exponential forms `(a+)+` and `(a*)*`), and its running time (`ProbeLimits.matchBudget`, enforced
/// through ICU's progress callback, which covers the forms the shape check cannot see, such as `(a|a)*b`).
package struct ProbePattern: Sendable, Equatable, CustomStringConvertible {
    package let source: String

    /// Why a pattern is refused; `offset` is the byte offset in the pattern.
    package struct Refusal: Error, Sendable, Equatable {
        package let offset: Int
        package let message: String
    }

    package init(_ source: String) throws(Refusal) {
        let bytes = Array(source.utf8)
        guard !bytes.isEmpty else { throw Refusal(offset: 0, message: "empty regex") }
        guard bytes.count <= ProbeLimits.patternBytes else {
            throw Refusal(offset: ProbeLimits.patternBytes, message: "regex longer than \(ProbeLimits.patternBytes) bytes")
        }
        try Self.checkShape(bytes)
        do {
            _ = try NSRegularExpression(pattern: source, options: [.anchorsMatchLines])
        } catch {
            throw Refusal(offset: 0, message: "not a valid regex (ICU syntax)")
        }
        self.source = source
    }

    package var description: String { source }

    package enum Outcome: Sendable, Equatable {
        /// It matched; the line that holds the start of the first match.
        case matched(line: String)
        case notMatched
        /// The match took longer than its budget or ran out of ICU's backtracking stack.
        case tooCostly
    }

    /// Whether the pattern matches anywhere in `text`, within `budget`.
    package func firstMatch(in text: String, budget: Swift.Duration = ProbeLimits.matchBudget) -> Outcome {
        // The pattern compiled in init; a failure here would be a Foundation change, reported as too costly
        // rather than as a match either way.
        guard let regex = try? NSRegularExpression(pattern: source, options: [.anchorsMatchLines]) else { return .tooCostly }
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: budget)
        var outcome = Outcome.notMatched
        let nsText = text as NSString
        let range = NSRange(location: 0, length: nsText.length)
        regex.enumerateMatches(in: text, options: [.reportProgress, .reportCompletion], range: range) { result, flags, stop in
            if let result {
                let line = nsText.lineRange(for: NSRange(location: result.range.location, length: 0))
                outcome = .matched(line: nsText.substring(with: line).trimmingCharacters(in: .newlines))
                stop.pointee = true
            } else if flags.contains(.internalError) {
                outcome = .tooCostly
            } else if flags.contains(.progress) && clock.now > deadline {
                outcome = .tooCostly
                stop.pointee = true
            }
        }
        return outcome
    }

    /// Refuses backreferences and a quantified group that holds a quantifier (star height above one).
    static func checkShape(_ p: [UInt8]) throws(Refusal) {
        struct Group { var start: Int; var hasQuantifier = false }
        var groups: [Group] = []
        var i = 0
        func markQuantifier() {
            if !groups.isEmpty { groups[groups.count - 1].hasQuantifier = true }
        }
        /// The quantifier at `j`, if any: whether it can repeat more than once, and where it ends.
        func quantifier(at j: Int) -> (repeats: Bool, end: Int)? {
            guard j < p.count else { return nil }
            switch p[j] {
            case UInt8(ascii: "*"), UInt8(ascii: "+"): return (true, j + 1)
            case UInt8(ascii: "?"): return (false, j + 1)
            case UInt8(ascii: "{"):
                var k = j + 1
                var numbers: [Int] = [0]
                var sawComma = false
                while k < p.count, p[k] != UInt8(ascii: "}") {
                    if p[k] == UInt8(ascii: ",") { sawComma = true; numbers.append(0) }
                    else if NameBytes.isDigit(p[k]) { numbers[numbers.count - 1] = min(numbers[numbers.count - 1] * 10 + Int(p[k] - 48), 100_000) }
                    else if p[k] != UInt8(ascii: " ") { return nil }
                    k += 1
                }
                guard k < p.count else { return nil }
                let unbounded = sawComma && k > 0 && p[k - 1] == UInt8(ascii: ",")
                let repeats = unbounded || (numbers.max() ?? 0) > 1
                return (repeats, k + 1)
            default: return nil
            }
        }
        while i < p.count {
            let c = p[i]
            switch c {
            case UInt8(ascii: "\\"):
                guard i + 1 < p.count else { return }   // ICU refuses the trailing backslash
                let n = p[i + 1]
                if (n >= UInt8(ascii: "1") && n <= UInt8(ascii: "9")) || n == UInt8(ascii: "k") {
                    throw Refusal(offset: i, message: "backreferences are not allowed in a probe regex")
                }
                if n == UInt8(ascii: "Q") {   // \Q…\E is literal
                    var k = i + 2
                    while k + 1 < p.count, !(p[k] == UInt8(ascii: "\\") && p[k + 1] == UInt8(ascii: "E")) { k += 1 }
                    // empty, it is nothing: a quantifier after it would repeat what stands before it
                    if k == i + 2 { throw Refusal(offset: i, message: "an empty \\Q\\E is not allowed in a probe regex; remove it") }
                    i = k + 2
                    continue
                }
                i += 2
                if let q = quantifier(at: i) { if q.repeats { markQuantifier() }; i = q.end }
            case UInt8(ascii: "["):
                // a set, possibly nested ([a-z&&[^b]]); its content is literal for this check
                var depth = 0
                var k = i
                while k < p.count {
                    if p[k] == UInt8(ascii: "\\") { k += 2; continue }
                    if p[k] == UInt8(ascii: "[") { depth += 1 }
                    else if p[k] == UInt8(ascii: "]") && k > i + 1 && !(k == i + 2 && p[i + 1] == UInt8(ascii: "^")) {
                        depth -= 1
                        if depth == 0 { break }
                    }
                    k += 1
                }
                i = k + 1
                if let q = quantifier(at: i) { if q.repeats { markQuantifier() }; i = q.end }
            case UInt8(ascii: "("):
                // Comments and free-spacing mode put nothing between an atom and its quantifier ((a+)(?#c)+,
                // (?x)(a+) +), which the shape check would read as two atoms: refused, with what to write instead.
                if i + 2 < p.count, p[i + 1] == UInt8(ascii: "?") {
                    if p[i + 2] == UInt8(ascii: "#") {
                        throw Refusal(offset: i, message: "(?#…) comments are not allowed in a probe regex; put the comment in the manifest (# …)")
                    }
                    var k = i + 2
                    while k < p.count, NameBytes.isLower(p[k]) || NameBytes.isUpper(p[k]) { k += 1 }
                    if p[(i + 2)..<k].contains(UInt8(ascii: "x")) {
                        throw Refusal(offset: i, message: "free-spacing mode (?x) is not allowed in a probe regex; write the pattern without it")
                    }
                }
                groups.append(Group(start: i))
                i += 1
            case UInt8(ascii: ")"):
                guard let group = groups.popLast() else { return }   // ICU refuses the unbalanced paren
                i += 1
                if let q = quantifier(at: i) {
                    if q.repeats && group.hasQuantifier {
                        throw Refusal(offset: group.start,
                                      message: "a repeated group holds a repetition (like (a+)+): it can take exponential time")
                    }
                    if q.repeats || group.hasQuantifier { markQuantifier() }
                    i = q.end
                } else if group.hasQuantifier {
                    markQuantifier()
                }
            default:
                i += 1
                if let q = quantifier(at: i) { if q.repeats { markQuantifier() }; i = q.end }
            }
            // possessive and lazy suffixes (`*+`, `*?`) belong to the quantifier just read
            while i < p.count, p[i] == UInt8(ascii: "+") || p[i] == UInt8(ascii: "?") {
                guard i > 0, [UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "?"), UInt8(ascii: "}")].contains(p[i - 1]) else { break }
                i += 1
            }
        }
    }
}
