import Foundation
import Yams

/// Strict, located YAML reading: every error says `file:line:column: what is wrong`, unknown keys and wrong
/// types included. Manifests are hand-written; a typo must never be silently ignored.
package struct YAMLLocation: Sendable, CustomStringConvertible {
    package let file: String
    package let line: Int
    package let column: Int
    package var description: String { "\(file):\(line):\(column)" }
}

package struct YAMLValue {
    package let node: Node
    package let file: String
    package let keyPath: String

    package var location: YAMLLocation {
        YAMLLocation(file: file, line: node.mark?.line ?? 1, column: node.mark?.column ?? 1)
    }

    package func error(_ message: String, hint: String? = nil) -> KAError {
        KAError.refusal("\(location): \(keyPath.isEmpty ? "" : "\(keyPath): ")\(message)", hint: hint)
    }

    /// The most bytes a fleet file may have (also checked before the file is read).
    package static let maxFileBytes = YAMLBudget.default.maxBytes

    /// Parses a whole document; an empty file is an error naming the file. The budget (size, depth, aliases and
    /// what they expand to) is checked first, so no file can stall a reader.
    package static func parse(_ text: String, file: String, budget: YAMLBudget = .default) throws -> YAMLValue {
        try budget.check(text, file: file)
        do {
            guard let node = try Yams.compose(yaml: text) else {
                throw KAError.refusal("\(file):1:1: empty document", hint: "the file must hold a YAML mapping")
            }
            return YAMLValue(node: node, file: file, keyPath: "")
        } catch let e as YamlError {
            throw KAError.refusal(Self.describe(e, file: file))
        }
    }

    static func describe(_ e: YamlError, file: String) -> String {
        switch e {
        case let .scanner(_, problem, mark, _), let .parser(_, problem, mark, _), let .composer(_, problem, mark, _):
            return "\(file):\(mark.line):\(mark.column): YAML syntax error: \(problem)"
        case let .duplicatedKeysInMapping(duplicates, context):
            return "\(file):\(context.mark.line):\(context.mark.column): duplicate key(s) \(duplicates.joined(separator: ", "))"
        default:
            return "\(file): YAML error: \(e)"
        }
    }

    // MARK: typed access

    package func mapping(allowed: Set<String>) throws -> YAMLMap {
        guard case let .mapping(m) = node else { throw error("expected a mapping, found \(node.kindName)") }
        var entries: [(String, YAMLValue, Node)] = []
        for (k, v) in m {
            guard case let .scalar(ks) = k else { throw error("mapping keys must be plain strings") }
            let path = keyPath.isEmpty ? ks.string : "\(keyPath).\(ks.string)"
            if !allowed.contains(ks.string) {
                let loc = YAMLLocation(file: file, line: k.mark?.line ?? 1, column: k.mark?.column ?? 1)
                let near = allowed.sorted().min { editDistance($0, ks.string) < editDistance($1, ks.string) }
                var hint = "allowed keys here: \(allowed.sorted().joined(separator: ", "))"
                if let near, editDistance(near, ks.string) <= 2 { hint = "did you mean '\(near)'? " + hint }
                throw KAError.refusal("\(loc): unknown key '\(path)'", hint: hint)
            }
            entries.append((ks.string, YAMLValue(node: v, file: file, keyPath: path), k))
        }
        return YAMLMap(owner: self, entries: entries)
    }

    package var isNull: Bool {
        guard case let .scalar(s) = node else { return false }
        return s.style == .plain && ["", "~", "null", "Null", "NULL"].contains(s.string)
    }

    package func string() throws -> String {
        guard case let .scalar(s) = node else { throw error("expected a string, found \(node.kindName)") }
        return s.string
    }

    /// Only `true` and `false`: YAML 1.1 also reads yes/no/on/off/y/n, and a switch like `infra_opt_in` must
    /// not turn on by a word that looks like prose.
    package func bool() throws -> Bool {
        guard case let .scalar(s) = node else { throw error("expected true or false, found \(node.kindName)") }
        switch (s.style, s.string) {
        case (.plain, "true"): return true
        case (.plain, "false"): return false
        default:
            throw error("expected true or false, found '\(s.string)'",
                        hint: "write exactly true or false (unquoted); YAML 1.1 words like yes, on or True are not accepted")
        }
    }

    package func int() throws -> Int {
        guard case let .scalar(s) = node, let i = Int(s.string) else { throw error("expected an integer") }
        return i
    }

    package func sequence() throws -> [YAMLValue] {
        guard case let .sequence(seq) = node else { throw error("expected a list, found \(node.kindName)") }
        return seq.enumerated().map { YAMLValue(node: $1, file: file, keyPath: "\(keyPath)[\($0)]") }
    }

    package func stringList() throws -> [String] { try sequence().map { try $0.string() } }
}

package struct YAMLMap {
    package let owner: YAMLValue
    let entries: [(String, YAMLValue, Node)]

    package subscript(_ key: String) -> YAMLValue? { entries.first { $0.0 == key }?.1 }
    package var keys: [String] { entries.map(\.0) }

    package func required(_ key: String) throws -> YAMLValue {
        guard let v = self[key] else { throw owner.error("missing required key '\(key)'") }
        return v
    }
}

extension Node {
    var kindName: String {
        switch self {
        case .scalar: return "a scalar"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }
}

/// Levenshtein distance, for did-you-mean hints.
package func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var prev = Array(0...b.count), cur = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        cur[0] = i
        for j in 1...b.count {
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&prev, &cur)
    }
    return prev[b.count]
}
