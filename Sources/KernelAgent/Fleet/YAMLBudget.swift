import CYaml
import Foundation

/// A budget on what the YAML readers accept, checked on libyaml's event stream (the parser Yams itself uses)
/// before Yams composes a tree. Composing is where alias bombs cost: a mapping whose keys alias a 9-way anchor
/// chain took a minute to load, because every key comparison walks the expanded tree. Counting the size each
/// alias expands to, memoised per anchor, costs one pass and refuses such a file in microseconds.
package struct YAMLBudget: Sendable {
    package var maxBytes = 256 * 1024
    package var maxDepth = 64
    package var maxAliases = 64
    /// Nodes the document would have with every alias expanded.
    package var maxExpandedNodes = 100_000

    package static let `default` = YAMLBudget()

    /// Throws a refusal naming `file:line:column` of the first node past the budget. A syntax error is left to
    /// the composer, which reports it with its own location.
    package func check(_ text: String, file: String) throws {
        let utf8 = Array(text.utf8)
        guard utf8.count <= maxBytes else {
            throw KAError.refusal("\(file):1:1: \(utf8.count) bytes, more than the \(maxBytes) a fleet file may have",
                                  hint: "fleet files are short, hand-written YAML; split or shorten it")
        }
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { throw KAError.failure(file, "cannot start the YAML parser") }
        defer { yaml_parser_delete(&parser) }
        try utf8.withUnsafeBufferPointer { buf in
            yaml_parser_set_input_string(&parser, buf.baseAddress, buf.count)
            // Per open collection: the anchor it carries and the expanded node count of its subtree so far.
            var open: [(anchor: String?, nodes: Int)] = []
            var anchorSize: [String: Int] = [:]
            var total = 0
            var aliases = 0
            func refuse(_ mark: yaml_mark_t, _ what: String, _ hint: String) -> KAError {
                KAError.refusal("\(file):\(mark.line + 1):\(mark.column + 1): \(what)", hint: hint)
            }
            func add(_ n: Int, _ mark: yaml_mark_t) throws {
                total += n
                if !open.isEmpty { open[open.count - 1].nodes += n }
                if total > maxExpandedNodes {
                    throw refuse(mark, "the document expands to more than \(maxExpandedNodes) nodes",
                                 "write the values out instead of aliasing anchors into anchors")
                }
            }
            func string(_ p: UnsafeMutablePointer<yaml_char_t>?) -> String? {
                p.map { String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)) }
            }
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else { return }   // the composer reports the syntax error
                defer { yaml_event_delete(&event) }
                let mark = event.start_mark
                switch event.type {
                case YAML_STREAM_END_EVENT:
                    return
                case YAML_SCALAR_EVENT:
                    try add(1, mark)
                    if let a = string(event.data.scalar.anchor) { anchorSize[a] = 1 }
                case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
                    try add(1, mark)
                    let anchor = event.type == YAML_SEQUENCE_START_EVENT
                        ? string(event.data.sequence_start.anchor) : string(event.data.mapping_start.anchor)
                    open.append((anchor, 1))
                    if open.count > maxDepth {
                        throw refuse(mark, "nested deeper than \(maxDepth) levels", "flatten the structure")
                    }
                case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                    guard let closed = open.popLast() else { continue }
                    if let a = closed.anchor { anchorSize[a] = closed.nodes }
                    // The parent counted this collection's own node when it opened; now its subtree too, or an
                    // anchor on [[*a, *a, …]] would weigh 2 and a chain of them slip through.
                    if !open.isEmpty { open[open.count - 1].nodes += closed.nodes - 1 }
                case YAML_ALIAS_EVENT:
                    aliases += 1
                    if aliases > maxAliases {
                        throw refuse(mark, "more than \(maxAliases) aliases", "write the values out instead of aliasing them")
                    }
                    let name = string(event.data.alias.anchor) ?? ""
                    try add(anchorSize[name] ?? 1, mark)
                default:
                    continue
                }
            }
        }
    }
}
