import Foundation

/// Why a probe's text is not in the language, and where: `line` and `column` count from 1 within the probe's
/// text (columns in Unicode scalars), and `origin` places the text in its file.
public struct ProbeParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, Equatable {
        case tooLong, controlCharacter, emptyProbe, unknownSubject, expectedSpace
        case badPath, badNode, badArgv, emptyArgv, forbiddenProgram
        case missingOperator, unknownOperator, operatorNotForSubject
        case missingValue, badNumber, badRegex, badString, trailingJunk
    }

    public let code: Code
    public let message: String
    public let line: Int
    public let column: Int
    /// The probe's line that holds the error, and a caret under the column.
    public let excerpt: String
    public let origin: ProbeOrigin
    public let hint: String?

    /// The line in the origin's file.
    public var fileLine: Int { origin.line + line - 1 }

    /// `fleet/fresnel.yaml:23: verify.probes[0].probe, column 9: unknown operator '=~'`, then the excerpt.
    public var description: String {
        let place = origin.field.isEmpty ? "\(origin.file):\(fileLine):\(column)" : "\(origin.file):\(fileLine): \(origin.field), column \(column)"
        return "\(place): \(message)\n\(excerpt)"
    }

    /// The same failure as the agent's error type (a refusal, with the hint as its `fix:` line).
    public var asKAError: KAError { KAError.refusal(description, hint: hint) }
}
