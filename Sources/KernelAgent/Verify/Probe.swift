import Foundation

/// Where a probe's text was written: the first character of the text is at `file:line:column`.
/// Errors and results name it, so a person finds the manifest line that holds the probe.
package struct ProbeOrigin: Sendable, Equatable, CustomStringConvertible {
    package let file: String
    package let line: Int
    package let column: Int
    /// What holds the text in that file, e.g. `verify.probes[0].probe`; empty when the text stands alone.
    package let field: String

    package init(file: String, line: Int = 1, column: Int = 1, field: String = "") {
        self.file = file; self.line = line; self.column = column; self.field = field
    }

    package var description: String { "\(file):\(line)" + (field.isEmpty ? "" : ": \(field)") }
}

/// One parsed probe of Bar 3 or Bar 4: a subject read on the host and a check of what it read.
/// The grammar is in fleet/README.md ("Probes"); `ProbeParser` is its only constructor from text.
package struct Probe: Sendable, Equatable, CustomStringConvertible {
    package enum Subject: Sendable, Equatable {
        /// `file <abs-path>`: a file on the host, read with at most `ProbeLimits.fileBytes`.
        case file(path: String)
        /// `dt <node>[:<property>]`: a node or one property under the host's /proc/device-tree.
        case deviceTree(node: String, property: String?)
        /// `cmd [argv, …]`: a program run on the host without a shell; its stdout is what is checked.
        case command(argv: [String])

        package var keyword: String {
            switch self {
            case .file: return "file"
            case .deviceTree: return "dt"
            case .command: return "cmd"
            }
        }
    }

    package enum Operator: String, Sendable, Equatable, CaseIterable {
        case equal = "==", notEqual = "!=", matches = "~", notMatches = "!~"
        case greaterOrEqual = ">=", lessOrEqual = "<=", greater = ">", less = "<"
        case exists, missing

        /// Whether the operator takes a value after it.
        package var takesValue: Bool { self != .exists && self != .missing }
        package var isNumeric: Bool { [.greaterOrEqual, .lessOrEqual, .greater, .less].contains(self) }
        package var isRegex: Bool { self == .matches || self == .notMatches }
    }

    package enum Check: Sendable, Equatable {
        case exists
        case missing
        /// `==` / `!=`: the observed text, trimmed of surrounding whitespace, against the value.
        case equal(String, negated: Bool)
        /// `~` / `!~`: whether the pattern matches anywhere (`^` and `$` match at each line).
        case matches(ProbePattern, negated: Bool)
        /// `>=`, `<=`, `>`, `<`: the observed text as a number against this one.
        case compare(Operator, ProbeNumber)

        package var op: Operator {
            switch self {
            case .exists: return .exists
            case .missing: return .missing
            case let .equal(_, negated): return negated ? .notEqual : .equal
            case let .matches(_, negated): return negated ? .notMatches : .matches
            case let .compare(op, _): return op
            }
        }
    }

    package let subject: Subject
    package let check: Check
    /// The probe as written (one line, surrounding whitespace removed): what results and issues show.
    package let text: String
    package let origin: ProbeOrigin

    package init(subject: Subject, check: Check, text: String, origin: ProbeOrigin) {
        self.subject = subject; self.check = check; self.text = text; self.origin = origin
    }

    package var description: String { text }
}

/// A number of a numeric check: an integer when both sides are integers (exact up to Int64), else a Double.
package struct ProbeNumber: Sendable, Equatable, CustomStringConvertible {
    package let text: String
    package let integer: Int64?
    package let real: Double

    /// `-?[0-9]+(\.[0-9]+)?`, nothing else: no exponent, no hex, no leading '+'.
    package init?(_ text: String) {
        let bytes = Array(text.utf8)
        var i = 0
        if i < bytes.count && bytes[i] == UInt8(ascii: "-") { i += 1 }
        let intStart = i
        while i < bytes.count && NameBytes.isDigit(bytes[i]) { i += 1 }
        guard i > intStart else { return nil }
        var fractional = false
        if i < bytes.count && bytes[i] == UInt8(ascii: ".") {
            i += 1
            let fracStart = i
            while i < bytes.count && NameBytes.isDigit(bytes[i]) { i += 1 }
            guard i > fracStart else { return nil }
            fractional = true
        }
        guard i == bytes.count, bytes.count <= 64, let real = Double(text), real.isFinite else { return nil }
        self.text = text
        self.integer = fractional ? nil : Int64(text)
        self.real = real
    }

    package var description: String { text }

    /// -1, 0 or 1, exactly for two integers.
    package func compare(to other: ProbeNumber) -> Int {
        if let a = integer, let b = other.integer { return a < b ? -1 : (a == b ? 0 : 1) }
        return real < other.real ? -1 : (real == other.real ? 0 : 1)
    }
}

/// The bounds of the probe language and of what a probe may read, in one place (fleet/README.md quotes them).
package enum ProbeLimits {
    /// The longest probe text.
    package static let textBytes = 4096
    /// The longest path, node path or argv element.
    package static let wordBytes = 1024
    /// The most argv elements of a `cmd`.
    package static let argvCount = 32
    /// The longest regex pattern.
    package static let patternBytes = 256
    /// How much of a file or device-tree property is read (a sysfs file is at most a page).
    package static let fileBytes = 32 * 1024
    /// How much of a command's stdout is kept and checked.
    package static let outputBytes = 1024 * 1024
    /// How much of what was observed a result keeps (for the regression issue).
    package static let shownBytes = 2048
    /// How long one regex match may take before the probe gives up on the pattern.
    package static let matchBudget: Swift.Duration = .milliseconds(500)
}
