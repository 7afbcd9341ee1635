import Crypto
import Foundation

/// One `git format-patch` file, parsed just enough for curation: its trailers (Scope:, Campaign:),
/// the files and hunk ranges it touches, and its two hashes.
public struct PatchFile: Sendable {
    public struct Trailer: Sendable, Equatable {
        public let key: String
        public let value: String
    }

    public struct Hunk: Sendable {
        public let oldStart: Int, oldCount: Int, newStart: Int, newCount: Int
        /// Byte range of the hunk body (the lines after the `@@` header) inside `bytes`.
        public let body: Range<Int>
        public var oldRange: ClosedRange<Int> { oldStart...max(oldStart, oldStart + oldCount - 1) }
    }

    public struct FileDiff: Sendable {
        public var oldPath: String?   // nil for /dev/null (new file)
        public var newPath: String?   // nil for /dev/null (deletion)
        public var hunks: [Hunk] = []
        public var isBinary = false
        public var path: String { newPath ?? oldPath ?? "?" }
        public var targetPath: String { oldPath ?? newPath ?? "?" }
    }

    public let bytes: Data
    public let subject: String?
    public let trailers: [Trailer]
    /// `Scope:` lines outside the trailer block (they do not count as a scope tag).
    public let scopeLinesOutsideTrailers: Int
    public let files: [FileDiff]
    public let contentHash: String

    public var scopeTrailers: [String] { trailers.filter { $0.key.lowercased() == "scope" }.map(\.value) }
    public var campaign: String? { trailers.last { $0.key.lowercased() == "campaign" }?.value }
    public let b2sum: String

    public init(bytes: Data) {
        self.bytes = bytes
        b2sum = Timings.measure("patch b2sum") { Blake2b.hex(bytes) }
        var parser = Parser(bytes: bytes)
        Timings.measure("patch parse") { parser.parse() }
        subject = parser.subject
        trailers = parser.trailers
        scopeLinesOutsideTrailers = parser.scopeLinesOutsideTrailers
        files = parser.files
        contentHash = Timings.measure("patch sha256") { "sha256:" + Hex.encode(Array(SHA256.hash(data: parser.content))) }
    }
}

private struct Parser {
    let bytes: Data
    var subject: String?
    var trailers: [PatchFile.Trailer] = []
    var scopeLinesOutsideTrailers = 0
    var files: [PatchFile.FileDiff] = []
    /// The +/- lines, gathered and hashed once (one SHA-256 call per patch, not one per line).
    var content: [UInt8] = []

    init(bytes: Data) {
        self.bytes = bytes
        content.reserveCapacity(bytes.count)
    }

    mutating func parse() {
        bytes.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            let buf = raw.bindMemory(to: UInt8.self)
            var lines: [Range<Int>] = []   // without the '\n'
            lines.reserveCapacity(buf.count / 32)
            var start = 0
            if let base = buf.baseAddress {
                while start < buf.count {
                    let remaining = buf.count - start
                    if let p = memchr(base + start, 0x0A, remaining) {
                        let end = base.distance(to: p.assumingMemoryBound(to: UInt8.self))
                        lines.append(start..<end)
                        start = end + 1
                    } else {
                        lines.append(start..<buf.count)
                        start = buf.count
                    }
                }
            }
            let firstDiff = lines.indices.first { i in
                hasPrefix(buf, lines[i], "diff --git ") || (hasPrefix(buf, lines[i], "--- ") && i + 1 < lines.count && hasPrefix(buf, lines[i + 1], "+++ "))
            } ?? lines.count
            parseMessage(buf, Array(lines[0..<firstDiff]))
            parseDiff(buf, lines, from: firstDiff)
        }
    }

    func hasPrefix(_ buf: UnsafeBufferPointer<UInt8>, _ r: Range<Int>, _ p: StaticString) -> Bool {
        let n = p.utf8CodeUnitCount
        guard r.count >= n else { return false }
        return memcmp(buf.baseAddress! + r.lowerBound, p.utf8Start, n) == 0
    }

    func text(_ buf: UnsafeBufferPointer<UInt8>, _ r: Range<Int>) -> String {
        var s = String(decoding: UnsafeBufferPointer(rebasing: buf[r]), as: UTF8.self)
        if s.hasSuffix("\r") { s.removeLast() }
        return s
    }

    /// Works on byte ranges: a Foundation string per message line costs more than the rest of the parse.
    mutating func parseMessage(_ buf: UnsafeBufferPointer<UInt8>, _ lines: [Range<Int>]) {
        func isBlank(_ r: Range<Int>) -> Bool { buf[r].allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D } }
        func isContinuation(_ r: Range<Int>) -> Bool { !r.isEmpty && (buf[r.lowerBound] == 0x20 || buf[r.lowerBound] == 0x09) }
        /// `Token: value` → the colon's index; tokens are letters, digits and '-'.
        func trailerColon(_ r: Range<Int>) -> Int? {
            var i = r.lowerBound
            while i < r.upperBound {
                let c = buf[i]
                if c == UInt8(ascii: ":") { return i > r.lowerBound ? i : nil }
                let ok = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == UInt8(ascii: "-")
                if !ok { return nil }
                i += 1
            }
            return nil
        }
        func isScopeLine(_ r: Range<Int>) -> Bool {
            guard r.count >= 6 else { return false }
            let scope: [UInt8] = Array("scope:".utf8)
            for k in 0..<6 where (buf[r.lowerBound + k] | 0x20) != scope[k] { return false }
            return true
        }
        var i = 0
        if let first = lines.first, hasPrefix(buf, first, "From ") {
            i = 1
            // RFC 822 headers up to the first blank line; Subject may be folded.
            while i < lines.count, !lines[i].isEmpty {
                if hasPrefix(buf, lines[i], "Subject: ") {
                    var s = text(buf, lines[i]).dropFirst("Subject: ".count).description
                    while i + 1 < lines.count, isContinuation(lines[i + 1]) { i += 1; s += text(buf, lines[i]) }
                    subject = s
                }
                i += 1
            }
        }
        // The message ends at the format-patch divider "---".
        var end = lines.count
        if i < lines.count, let d = lines[i...].firstIndex(where: { r in
            r.count >= 3 && buf[r.lowerBound] == 0x2D && buf[r.lowerBound + 1] == 0x2D && buf[r.lowerBound + 2] == 0x2D
                && buf[(r.lowerBound + 3)..<r.upperBound].allSatisfy { $0 == 0x0D } }) { end = d }
        let start = min(i, end)
        // Last paragraph = candidate trailer block.
        var paragraphEnd = end
        while paragraphEnd > start, isBlank(lines[paragraphEnd - 1]) { paragraphEnd -= 1 }
        var paragraphStart = paragraphEnd
        while paragraphStart > start, !isBlank(lines[paragraphStart - 1]) { paragraphStart -= 1 }
        var parsed: [PatchFile.Trailer] = []
        var allTrailers = paragraphEnd > paragraphStart && paragraphStart > start
        for r in lines[paragraphStart..<paragraphEnd] {
            if isContinuation(r), !parsed.isEmpty { continue }
            guard let colon = trailerColon(r) else { allTrailers = false; break }
            let key = String(decoding: UnsafeBufferPointer(rebasing: buf[r.lowerBound..<colon]), as: UTF8.self)
            let value = text(buf, (colon + 1)..<r.upperBound).trimmingCharacters(in: .whitespaces)
            parsed.append(.init(key: key, value: value))
        }
        if allTrailers { trailers = parsed }
        let outsideEnd = allTrailers ? paragraphStart : end
        scopeLinesOutsideTrailers = lines[start..<outsideEnd].filter(isScopeLine).count
    }

    mutating func parseDiff(_ buf: UnsafeBufferPointer<UInt8>, _ lines: [Range<Int>], from start: Int) {
        var i = start
        var current: PatchFile.FileDiff?
        func stripPrefix(_ p: String) -> String? {
            var s = p
            if let tab = s.firstIndex(of: "\t") { s = String(s[..<tab]) }
            if s == "/dev/null" { return nil }
            if s.hasPrefix("a/") || s.hasPrefix("b/") { s.removeFirst(2) }
            return s
        }
        func flush(_ files: inout [PatchFile.FileDiff]) {
            if let c = current { files.append(c) }
            current = nil
        }
        while i < lines.count {
            let r = lines[i]
            if hasPrefix(buf, r, "diff --git ") {
                flush(&files)
                let t = text(buf, r).dropFirst("diff --git ".count)
                // "a/X b/Y": until ---/+++ say otherwise, split at " b/".
                var fd = PatchFile.FileDiff()
                if let sp = t.range(of: " b/") {
                    fd.oldPath = stripPrefix(String(t[..<sp.lowerBound]))
                    fd.newPath = String(t[sp.upperBound...])
                }
                current = fd
            } else if hasPrefix(buf, r, "--- "), i + 1 < lines.count, hasPrefix(buf, lines[i + 1], "+++ ") {
                if current == nil || !(current?.hunks.isEmpty ?? true) { flush(&files); current = PatchFile.FileDiff() }
                current?.oldPath = stripPrefix(String(text(buf, r).dropFirst(4)))
                current?.newPath = stripPrefix(String(text(buf, lines[i + 1]).dropFirst(4)))
                hashLine(buf, r)
                hashLine(buf, lines[i + 1])
                i += 1
            } else if hasPrefix(buf, r, "new file mode") {
                current?.oldPath = nil
            } else if hasPrefix(buf, r, "deleted file mode") {
                current?.newPath = nil
            } else if hasPrefix(buf, r, "Binary files ") || hasPrefix(buf, r, "GIT binary patch") {
                current?.isBinary = true
            } else if hasPrefix(buf, r, "@@ -"), let h = parseHunkHeader(text(buf, r)) {
                // Consume exactly the counted lines; whatever follows (e.g. "-- \n2.39.5") is not hunk text.
                var oldLeft = h.oldCount, newLeft = h.newCount
                var j = i + 1
                let bodyStart = j < lines.count ? lines[j].lowerBound : r.upperBound
                var bodyEnd = bodyStart
                while j < lines.count, oldLeft > 0 || newLeft > 0 || (j < lines.count && hasPrefix(buf, lines[j], "\\")) {
                    let lr = lines[j]
                    let c = lr.isEmpty ? UInt8(ascii: " ") : buf[lr.lowerBound]
                    switch c {
                    case UInt8(ascii: " "): oldLeft -= 1; newLeft -= 1
                    case UInt8(ascii: "-"): oldLeft -= 1; hashLine(buf, lr)
                    case UInt8(ascii: "+"): newLeft -= 1; hashLine(buf, lr)
                    case UInt8(ascii: "\\"): break
                    default: oldLeft = 0; newLeft = 0; j -= 1   // malformed: stop the hunk here
                    }
                    bodyEnd = lr.upperBound
                    j += 1
                    if oldLeft <= 0 && newLeft <= 0 && !(j < lines.count && hasPrefix(buf, lines[j], "\\")) { break }
                }
                current?.hunks.append(.init(oldStart: h.oldStart, oldCount: h.oldCount, newStart: h.newStart,
                                            newCount: h.newCount, body: bodyStart..<min(bodyEnd + 1, buf.count)))
                i = j - 1
            }
            i += 1
        }
        flush(&files)
    }

    /// Feeds one line and a '\n' to the content hash (the newline as the file has it, or added if it is the last line).
    mutating func hashLine(_ buf: UnsafeBufferPointer<UInt8>, _ r: Range<Int>) {
        content.append(contentsOf: UnsafeBufferPointer(rebasing: buf[r]))
        content.append(0x0A)
    }

    func parseHunkHeader(_ s: String) -> (oldStart: Int, oldCount: Int, newStart: Int, newCount: Int)? {
        // @@ -a[,b] +c[,d] @@ ...
        let parts = s.split(separator: " ", maxSplits: 4)
        guard parts.count >= 3, parts[1].hasPrefix("-"), parts[2].hasPrefix("+") else { return nil }
        func pair(_ p: Substring) -> (Int, Int)? {
            let nums = p.dropFirst().split(separator: ",")
            guard let a = Int(nums[0]) else { return nil }
            if nums.count > 1 { guard let b = Int(nums[1]) else { return nil }; return (a, b) }
            return (a, 1)
        }
        guard let o = pair(parts[1]), let n = pair(parts[2]) else { return nil }
        return (o.0, o.1, n.0, n.1)
    }
}
