import Foundation

/// A strict, single-pass JSON reader that validates the whole body and keeps only the scalars the webhook
/// needs (by key path, e.g. `comment.user.login`). JSONDecoder builds the whole object graph; at thousands of
/// deliveries a second that is most of the ingest cost.
struct PayloadScanner {
    enum Value: Equatable { case string(String), number(Double), bool(Bool), null, container }

    struct Malformed: Error { let offset: Int; let reason: String }

    private let b: [UInt8]
    private var i = 0
    private let wanted: Set<String>
    private(set) var values: [String: Value] = [:]

    static func scan(_ bytes: [UInt8], wanted: Set<String>) throws -> [String: Value] {
        var s = PayloadScanner(b: bytes, wanted: wanted)
        s.skipWS()
        try s.value(path: "", depth: 0)
        s.skipWS()
        guard s.i == bytes.count else { throw Malformed(offset: s.i, reason: "trailing data") }
        return s.values
    }

    private init(b: [UInt8], wanted: Set<String>) { self.b = b; self.wanted = wanted }

    private mutating func skipWS() {
        while i < b.count, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 }
    }

    private mutating func expect(_ c: UInt8) throws {
        guard i < b.count, b[i] == c else { throw Malformed(offset: i, reason: "expected '\(Character(UnicodeScalar(c)))'") }
        i += 1
    }

    private mutating func value(path: String, depth: Int) throws {
        guard depth < 64 else { throw Malformed(offset: i, reason: "nesting too deep") }
        guard i < b.count else { throw Malformed(offset: i, reason: "unexpected end") }
        let keep = wanted.contains(path)
        switch b[i] {
        case UInt8(ascii: "{"):
            i += 1; skipWS()
            if keep { values[path] = .container }
            if i < b.count, b[i] == UInt8(ascii: "}") { i += 1; return }
            while true {
                skipWS()
                let key = try string(capture: true) ?? ""
                skipWS(); try expect(UInt8(ascii: ":")); skipWS()
                // only paths that can lead to a wanted key are built; elsewhere the key is dropped
                let child = path.isEmpty ? key : path + "." + key
                try value(path: depth < 3 ? child : "…", depth: depth + 1)
                skipWS()
                guard i < b.count else { throw Malformed(offset: i, reason: "unterminated object") }
                if b[i] == UInt8(ascii: ",") { i += 1; continue }
                try expect(UInt8(ascii: "}")); return
            }
        case UInt8(ascii: "["):
            i += 1; skipWS()
            if keep { values[path] = .container }
            if i < b.count, b[i] == UInt8(ascii: "]") { i += 1; return }
            while true {
                skipWS()
                try value(path: "…", depth: depth + 1)
                skipWS()
                guard i < b.count else { throw Malformed(offset: i, reason: "unterminated array") }
                if b[i] == UInt8(ascii: ",") { i += 1; continue }
                try expect(UInt8(ascii: "]")); return
            }
        case UInt8(ascii: "\""):
            let s = try string(capture: keep)
            if keep, let s { values[path] = .string(s) }
        case UInt8(ascii: "t"): try literal("true"); if keep { values[path] = .bool(true) }
        case UInt8(ascii: "f"): try literal("false"); if keep { values[path] = .bool(false) }
        case UInt8(ascii: "n"): try literal("null"); if keep { values[path] = .null }
        default:
            let start = i
            if i < b.count, b[i] == UInt8(ascii: "-") { i += 1 }
            guard i < b.count, b[i] >= 0x30 && b[i] <= 0x39 else { throw Malformed(offset: i, reason: "unexpected character") }
            if b[i] == 0x30 { i += 1 } else { while i < b.count, b[i] >= 0x30 && b[i] <= 0x39 { i += 1 } }
            if i < b.count, b[i] == UInt8(ascii: ".") {
                i += 1
                guard i < b.count, b[i] >= 0x30 && b[i] <= 0x39 else { throw Malformed(offset: i, reason: "bad number") }
                while i < b.count, b[i] >= 0x30 && b[i] <= 0x39 { i += 1 }
            }
            if i < b.count, b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E") {
                i += 1
                if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") { i += 1 }
                guard i < b.count, b[i] >= 0x30 && b[i] <= 0x39 else { throw Malformed(offset: i, reason: "bad number") }
                while i < b.count, b[i] >= 0x30 && b[i] <= 0x39 { i += 1 }
            }
            if keep, let d = Double(String(decoding: b[start..<i], as: UTF8.self)) { values[path] = .number(d) }
        }
    }

    private mutating func literal(_ word: StaticString) throws {
        let n = word.utf8CodeUnitCount
        guard i + n <= b.count, b[i..<(i + n)].elementsEqual(UnsafeBufferPointer(start: word.utf8Start, count: n)) else {
            throw Malformed(offset: i, reason: "bad literal")
        }
        i += n
    }

    /// A JSON string; returns its value only when asked to capture it.
    private mutating func string(capture: Bool) throws -> String? {
        try expect(UInt8(ascii: "\""))
        let start = i
        var escaped = false
        while i < b.count {
            let c = b[i]
            if c == UInt8(ascii: "\"") {
                defer { i += 1 }
                guard capture else { return nil }
                return escaped ? try unescape(start..<i) : String(decoding: b[start..<i], as: UTF8.self)
            }
            if c < 0x20 { throw Malformed(offset: i, reason: "control character in string") }
            if c == UInt8(ascii: "\\") {
                escaped = true
                i += 1
                guard i < b.count else { break }
                switch b[i] {
                case UInt8(ascii: "u"):
                    guard i + 4 < b.count, b[(i + 1)...(i + 4)].allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x66) }) else {
                        throw Malformed(offset: i, reason: "bad \\u escape")
                    }
                    i += 4
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                     UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"): break
                default: throw Malformed(offset: i, reason: "bad escape")
                }
            }
            i += 1
        }
        throw Malformed(offset: i, reason: "unterminated string")
    }

    private func unescape(_ r: Range<Int>) throws -> String {
        // rare path (a body with quotes or newlines): let Foundation do the exact JSON unescaping
        var quoted = [UInt8(ascii: "[")]; quoted.append(UInt8(ascii: "\"")); quoted += b[r]; quoted += [UInt8(ascii: "\""), UInt8(ascii: "]")]
        guard let arr = try? JSONSerialization.jsonObject(with: Data(quoted)) as? [String], let s = arr.first else {
            throw Malformed(offset: r.lowerBound, reason: "bad string")
        }
        return s
    }
}
