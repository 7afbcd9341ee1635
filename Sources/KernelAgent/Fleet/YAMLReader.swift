import CYaml   // libyaml, which Yams wraps: its event stream measures a document before Yams builds it
import Foundation
import Yams

/// Strict, located YAML reading: every error says `file:line:column: what is wrong`, unknown keys and wrong
/// types included. Manifests are hand-written; a typo must never be silently ignored.
public struct YAMLLocation: Sendable, CustomStringConvertible {
    public let file: String
    public let line: Int
    public let column: Int
    public var description: String { "\(file):\(line):\(column)" }
}

public struct YAMLValue {
    public let node: Node
    public let file: String
    public let keyPath: String

    public var location: YAMLLocation {
        YAMLLocation(file: file, line: node.mark?.line ?? 1, column: node.mark?.column ?? 1)
    }

    public func error(_ message: String, hint: String? = nil) -> KAError {
        KAError.refusal("\(location): \(keyPath.isEmpty ? "" : "\(keyPath): ")\(message)", hint: hint)
    }

    /// Parses a whole document; an empty file is an error naming the file.
    public static func parse(_ text: String, file: String) throws -> YAMLValue {
        try checkBudget(text, file: file)
        do {
            guard let node = try Yams.compose(yaml: text) else {
                throw KAError.refusal("\(file):1:1: empty document", hint: "the file must hold a YAML mapping")
            }
            return YAMLValue(node: node, file: file, keyPath: "")
        } catch let e as YamlError {
            throw KAError.refusal(Self.describe(e, file: file))
        }
    }

    /// Walks libyaml's events once and refuses, with file:line:column, a document past `YAMLBudget`. Syntax
    /// errors are left to Yams, which describes them.
    static func checkBudget(_ text: String, file: String) throws {
        let bytes = Array(text.utf8)
        guard bytes.count <= YAMLBudget.maxBytes else {
            throw KAError.refusal("\(file):1:1: \(bytes.count) bytes, more than the \(YAMLBudget.maxBytes) a YAML file here may have")
        }
        if bytes.isEmpty { return }
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { throw KAError.failure(file, "libyaml could not start a parser") }
        defer { yaml_parser_delete(&parser) }
        // Per open collection: the expanded node count when it opened, and the expanded depth below it.
        var open: [(anchor: String?, nodesBefore: Int, depthBelow: Int)] = []
        var anchors: [String: (nodes: Int, depth: Int)] = [:]
        var nodes = 0
        try bytes.withUnsafeBufferPointer { buf in
            yaml_parser_set_input_string(&parser, buf.baseAddress, buf.count)
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else { return }
                defer { yaml_event_delete(&event) }
                let at = "\(file):\(event.start_mark.line + 1):\(event.start_mark.column + 1)"
                func name(_ anchor: UnsafeMutablePointer<yaml_char_t>?) -> String? { anchor.map { String(cString: $0) } }
                /// A node of `size` expanded nodes and `depth` expanded levels ends inside the innermost open collection.
                func add(_ size: Int, depth: Int) throws {
                    nodes += size
                    guard nodes <= YAMLBudget.maxExpandedNodes else {
                        throw KAError.refusal("\(at): with its aliases expanded the document has more than \(YAMLBudget.maxExpandedNodes) nodes",
                                              hint: "write the values out instead of aliasing aliases; fleet files are read by hand")
                    }
                    guard open.count + depth <= YAMLBudget.maxDepth else {
                        throw KAError.refusal("\(at): nested deeper than \(YAMLBudget.maxDepth) levels (aliases expanded)")
                    }
                    if !open.isEmpty { open[open.count - 1].depthBelow = max(open[open.count - 1].depthBelow, depth) }
                }
                switch event.type {
                case YAML_SCALAR_EVENT:
                    try add(1, depth: 1)
                    if let a = name(event.data.scalar.anchor) { anchors[a] = (1, 1) }
                case YAML_ALIAS_EVENT:
                    let target = name(event.data.alias.anchor).flatMap { anchors[$0] } ?? (1, 1)   // undefined: Yams refuses it
                    try add(target.nodes, depth: target.depth)
                case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
                    let anchor = event.type == YAML_SEQUENCE_START_EVENT ? event.data.sequence_start.anchor : event.data.mapping_start.anchor
                    try add(1, depth: 1)
                    open.append((name(anchor), nodes - 1, 0))
                case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                    guard let done = open.popLast() else { return }
                    let size = nodes - done.nodesBefore, depth = done.depthBelow + 1
                    if let a = done.anchor { anchors[a] = (size, depth) }
                    if !open.isEmpty { open[open.count - 1].depthBelow = max(open[open.count - 1].depthBelow, depth) }
                case YAML_STREAM_END_EVENT:
                    return
                default:
                    break
                }
            }
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

    public func mapping(allowed: Set<String>) throws -> YAMLMap {
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

    public var isNull: Bool {
        guard case let .scalar(s) = node else { return false }
        return s.style == .plain && ["", "~", "null", "Null", "NULL"].contains(s.string)
    }

    public func string() throws -> String {
        guard case let .scalar(s) = node else { throw error("expected a string, found \(node.kindName)") }
        return s.string
    }

    public func bool() throws -> Bool {
        guard case let .scalar(s) = node, let b = Bool.construct(from: s) else { throw error("expected true or false") }
        return b
    }

    public func int() throws -> Int {
        guard case let .scalar(s) = node, let i = Int(s.string) else { throw error("expected an integer") }
        return i
    }

    public func sequence() throws -> [YAMLValue] {
        guard case let .sequence(seq) = node else { throw error("expected a list, found \(node.kindName)") }
        return seq.enumerated().map { YAMLValue(node: $1, file: file, keyPath: "\(keyPath)[\($0)]") }
    }

    public func stringList() throws -> [String] { try sequence().map { try $0.string() } }
}

/// What a YAML file read here may hold. Yams hashes every mapping key in full, aliases expanded, so a 400-byte
/// file whose key aliases a 9-way anchor chain took a minute to load (issue 6 §1); past these, a file is refused.
public enum YAMLBudget {
    public static let maxBytes = 1 << 20
    /// Nesting levels, aliases expanded.
    public static let maxDepth = 64
    /// Nodes in the document, aliases expanded.
    public static let maxExpandedNodes = 100_000
}

public struct YAMLMap {
    public let owner: YAMLValue
    let entries: [(String, YAMLValue, Node)]

    public subscript(_ key: String) -> YAMLValue? { entries.first { $0.0 == key }?.1 }
    public var keys: [String] { entries.map(\.0) }

    public func required(_ key: String) throws -> YAMLValue {
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
public func editDistance(_ a: String, _ b: String) -> Int {
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
