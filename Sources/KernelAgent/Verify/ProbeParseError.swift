import Foundation

/// Why a probe's text is not in the language, and where: `line` and `column` count from 1 within the probe's
/// text (columns in Unicode scalars), and `origin` places the text in its file.
package struct ProbeParseError: Error, Sendable, Equatable, CustomStringConvertible {
    package enum Code: String, Sendable, Equatable {
        case tooLong, controlCharacter, emptyProbe, unknownSubject, expectedSpace
        case badPath, badNode, badArgv, emptyArgv, forbiddenProgram
        case missingOperator, unknownOperator, operatorNotForSubject
        case missingValue, badNumber, badRegex, badString, trailingJunk
    }

    package let code: Code
    package let message: String
    package let line: Int
    package let column: Int
    /// The probe's line that holds the error, and a caret under the column.
    package let excerpt: String
    package let origin: ProbeOrigin
    package let hint: String?

    /// The line in the origin's file.
    package var fileLine: Int { origin.line + line - 1 }

    /// `fleet/fresnel.yaml:23: verify.probes[0].probe, column 9: unknown operator '=~'`, then the excerpt.
    package var description: String {
        let place = origin.field.isEmpty ? "\(origin.file):\(fileLine):\(column)" : "\(origin.file):\(fileLine): \(origin.field), column \(column)"
        return "\(place): \(message)\n\(excerpt)"
    }

    /// The same failure as the agent's error type (a refusal, with the hint as its `fix:` line).
    package var asKAError: KAError { KAError.refusal(description, hint: hint) }
}
