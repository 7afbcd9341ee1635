import Foundation

/// A strict, single-pass JSON reader that validates the whole body and keeps only the scalars the webhook
/// needs (by key path, e.g. `comment.user.login`). JSONDecoder builds the whole object graph; at thousands of
/// deliveries a second that is most of the ingest cost.
struct PayloadScanner {
    enum Value: Equatable { case string(String), number(Double), bool(Bool), null, container }

    struct Malformed: Error { let offset: Int; let reason: String }

    private let b: [UInt8]
    private var i = 0
    private let wanted: Set<[UInt8]>
    private let prefixes: Set<[UInt8]>        // every proper prefix of a wanted path: only these are descended with a path
    /// The current key path as bytes ("comment.user.login"); reused, so scanning allocates only for kept values.
    private var path: [UInt8] = []
    private(set) var values: [String: Value] = [:]

    static func scan(_ bytes: [UInt8], wanted: Set<String>) throws -> [String: Value] {
        var s = PayloadScanner(b: bytes, wanted: wanted)
        s.skipWS()
        try s.value(tracked: true, depth: 0)
        s.skipWS()
        guard s.i == bytes.count else { throw Malformed(offset: s.i, reason: "trailing data") }
        return s.values
    }

    private init(b: [UInt8], wanted: Set<String>) {
        self.b = b
        self.wanted = Set(wanted.map { Array($0.utf8) })
        var p = Set<[UInt8]>([[]])
        for w in wanted {
            let parts = w.split(separator: ".")
            for n in 1..<max(1, parts.count) { p.insert(Array(parts.prefix(n).joined(separator: ".").utf8)) }
        }
        prefixes = p
        path.reserveCapacity(64)
    }

    private mutating func skipWS() {
        while i < b.count, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 }
    }

    private mutating func expect(_ c: UInt8) throws {
        guard i < b.count, b[i] == c else { throw Malformed(offset: i, reason: "expected '\(Character(UnicodeScalar(c)))'") }
        i += 1
    }

    /// `tracked`: `path` holds this value's key path (false below anything no wanted path goes through).
    private mutating func value(tracked: Bool, depth: Int) throws {
        guard depth < 64 else { throw Malformed(offset: i, reason: "nesting too deep") }
        guard i < b.count else { throw Malformed(offset: i, reason: "unexpected end") }
        let keep = tracked && wanted.contains(path)
        let key = keep ? String(decoding: path, as: UTF8.self) : ""
        switch b[i] {
        case UInt8(ascii: "{"):
            i += 1; skipWS()
            if keep { values[key] = .container }
            if i < b.count, b[i] == UInt8(ascii: "}") { i += 1; return }
            let descend = tracked && prefixes.contains(path)
            let mark = path.count
            while true {
                skipWS()
                let k = try keyRange()
                skipWS(); try expect(UInt8(ascii: ":")); skipWS()
                if descend {
                    if mark > 0 { path.append(UInt8(ascii: ".")) }
                    path.append(contentsOf: b[k])
                }
                try value(tracked: descend, depth: depth + 1)
                if descend { path.removeSubrange(mark...) }
                skipWS()
                guard i < b.count else { throw Malformed(offset: i, reason: "unterminated object") }
                if b[i] == UInt8(ascii: ",") { i += 1; continue }
                try expect(UInt8(ascii: "}")); return
            }
        case UInt8(ascii: "["):
            i += 1; skipWS()
            if keep { values[key] = .container }
            if i < b.count, b[i] == UInt8(ascii: "]") { i += 1; return }
            while true {
                skipWS()
                try value(tracked: false, depth: depth + 1)
                skipWS()
                guard i < b.count else { throw Malformed(offset: i, reason: "unterminated array") }
                if b[i] == UInt8(ascii: ",") { i += 1; continue }
                try expect(UInt8(ascii: "]")); return
            }
        case UInt8(ascii: "\""):
            let s = try string(capture: keep)
            if keep, let s { values[key] = .string(s) }
        case UInt8(ascii: "t"): try literal("true"); if keep { values[key] = .bool(true) }
        case UInt8(ascii: "f"): try literal("false"); if keep { values[key] = .bool(false) }
        case UInt8(ascii: "n"): try literal("null"); if keep { values[key] = .null }
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
            if keep, let d = Double(String(decoding: b[start..<i], as: UTF8.self)) { values[key] = .number(d) }
        }
    }

    private mutating func literal(_ word: StaticString) throws {
        let n = word.utf8CodeUnitCount
        guard i + n <= b.count, b[i..<(i + n)].elementsEqual(UnsafeBufferPointer(start: word.utf8Start, count: n)) else {
            throw Malformed(offset: i, reason: "bad literal")
        }
        i += n
    }

    /// An object key: its raw bytes (keys with escapes are compared raw; Gitea's keys have none).
    private mutating func keyRange() throws -> Range<Int> {
        let start = i + 1
        _ = try string(capture: false)
        return start..<(i - 1)
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
                    guard let unit = utf16Unit(at: i + 1) else { throw Malformed(offset: i, reason: "bad \\u escape") }
                    i += 4
                    // Surrogates come in high-low pairs, in skipped strings too: Foundation refuses the body otherwise.
                    if unit & 0xFC00 == 0xD800 {
                        guard i + 2 < b.count, b[i + 1] == UInt8(ascii: "\\"), b[i + 2] == UInt8(ascii: "u"),
                              let low = utf16Unit(at: i + 3), low & 0xFC00 == 0xDC00 else {
                            throw Malformed(offset: i, reason: "unpaired UTF-16 surrogate")
                        }
                        i += 6
                    } else if unit & 0xFC00 == 0xDC00 {
                        throw Malformed(offset: i, reason: "unpaired UTF-16 surrogate")
                    }
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                     UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"): break
                default: throw Malformed(offset: i, reason: "bad escape")
                }
            }
            i += 1
        }
        throw Malformed(offset: i, reason: "unterminated string")
    }

    /// The 4 hex digits of a `\u` escape starting at `k`, if they are there.
    private func utf16Unit(at k: Int) -> UInt16? {
        guard k >= 0, k + 4 <= b.count else { return nil }
        var unit: UInt16 = 0
        for c in b[k..<(k + 4)] {
            let digit: UInt8
            switch c {
            case 0x30...0x39: digit = c - 0x30
            case 0x41...0x46: digit = c - 0x41 + 10
            case 0x61...0x66: digit = c - 0x61 + 10
            default: return nil
            }
            unit = unit << 4 | UInt16(digit)
        }
        return unit
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
