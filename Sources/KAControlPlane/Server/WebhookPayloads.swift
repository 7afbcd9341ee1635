import Foundation

/// The fields of an `issue_comment` delivery the bot reads (Gitea's IssueCommentPayload, modules/structs/hook.go),
/// decoded by Foundation's JSONDecoder, which validates the whole body and skips the fields not named here.
struct IssueCommentBody: Decodable {
    struct Repository: Decodable { let full_name: String }
    struct Issue: Decodable {
        let number: Int
        /// Present and not null when the comment is on a pull request; its content is not read.
        let pull_request: AnyJSONValue?
    }
    struct User: Decodable { let id: Int64?; let login: String }
    struct Comment: Decodable {
        let id: Int64
        let body: String
        let user: User
        let issue_url: String?
        let pull_request_url: String?
        let created_at: String?
        let updated_at: String?
    }
    let action: String
    let is_pull: Bool?
    let repository: Repository
    let issue: Issue
    let comment: Comment
}

/// Any JSON value, read only for its presence.
struct AnyJSONValue: Decodable {
    init(from decoder: Decoder) throws {}
}

/// Why a delivery body was refused, in words for the 400 answer: which field, and what was wrong with it.
package struct PayloadError: Error, Equatable, CustomStringConvertible {
    package enum Kind: Sendable { case malformedJSON, badField }
    package let kind: Kind
    package let reason: String
    package var description: String { reason }

    /// The JSON integers the bot reads: on Linux, JSONDecoder calls a number that does not fit its field "not
    /// valid JSON" and names no field, so these are checked by name to say which one.
    static let commentIntegers: [(path: String, type: String)] = [("issue.number", "Int"), ("comment.id", "Int64"), ("comment.user.id", "Int64")]

    /// Words for a JSONDecoder refusal. JSONDecoder checks only the values it reads, and on Linux calls a number
    /// that does not fit its field "not valid JSON" without naming it; so a refused body is read again with
    /// JSONSerialization (only then) to tell malformed JSON, with its position, from a field that is wrong.
    init(_ error: Error, body: Data, integerFields: [(path: String, type: String)] = []) {
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: body, options: [.fragmentsAllowed]) } catch {
            self = Self.malformed(error)
            return
        }
        func path(_ keys: [CodingKey]) -> String {
            keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
        }
        switch error {
        case let DecodingError.keyNotFound(key, ctx):
            self.init(kind: .badField, reason: "missing field `\(path(ctx.codingPath + [key]))`")
        case let DecodingError.valueNotFound(type, ctx):
            self.init(kind: .badField, reason: "`\(path(ctx.codingPath))` is null; expected \(Self.name(of: type))")
        case let DecodingError.typeMismatch(type, ctx):
            let found = ctx.debugDescription.range(of: "but found ").map { String(ctx.debugDescription[$0.upperBound...]) } ?? "something else"
            let field = ctx.codingPath.isEmpty ? "the body" : "`\(path(ctx.codingPath))`"
            self.init(kind: .badField, reason: "\(field): expected \(Self.name(of: type)), found \(found.replacingOccurrences(of: " instead.", with: ""))")
        case let DecodingError.dataCorrupted(ctx) where !ctx.codingPath.isEmpty:
            self.init(kind: .badField, reason: "`\(path(ctx.codingPath))`: \(ctx.debugDescription)")
        default:
            for field in integerFields {
                let value = field.path.split(separator: ".").reduce(Optional(object)) { ($0 as? [String: Any])?[String($1)] }
                if let n = value as? NSNumber, Int64(n.stringValue) == nil {   // "1.5", "1e+20" and the like do not parse
                    self.init(kind: .badField, reason: "`\(field.path)`: \(n) is not a whole number that fits \(field.type)")
                    return
                }
            }
            self.init(kind: .badField, reason: "JSONDecoder refused a body JSONSerialization reads (\(error))")
        }
    }

    init(kind: Kind, reason: String) { self.kind = kind; self.reason = reason }

    /// A JSONSerialization refusal, with its position ("Invalid value around character 5.").
    static func malformed(_ error: Error) -> PayloadError {
        let detail = (error as NSError).userInfo[NSDebugDescriptionErrorKey].map { "\($0)" } ?? "\(error)"
        return PayloadError(kind: .malformedJSON, reason: "malformed JSON: \(detail)")
    }

    static func name(of type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Int.Type, is Int64.Type: return "an integer"
        case is Bool.Type: return "true or false"
        case is [String: Any].Type: return "an object"
        default:
            let t = "\(type)"
            return t.hasPrefix("Dictionary") ? "an object" : t.hasPrefix("Array") ? "an array" : t
        }
    }
}
