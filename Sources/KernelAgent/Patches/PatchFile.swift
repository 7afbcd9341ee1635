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
        b2sum = Blake2b.hex(bytes)
        var parser = Parser(bytes: bytes)
        parser.parse()
        subject = parser.subject
        trailers = parser.trailers
        scopeLinesOutsideTrailers = parser.scopeLinesOutsideTrailers
        files = parser.files
        contentHash = "blake2b-256:" + parser.content.hexDigest()
    }
}

private struct Parser {
    let bytes: Data
    var subject: String?
    var trailers: [PatchFile.Trailer] = []
    var scopeLinesOutsideTrailers = 0
    var files: [PatchFile.FileDiff] = []
    var content = Blake2b(digestLength: 32)

    init(bytes: Data) { self.bytes = bytes }

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

    mutating func parseMessage(_ buf: UnsafeBufferPointer<UInt8>, _ lines: [Range<Int>]) {
        var i = 0
        var isMail = false
        if let first = lines.first, hasPrefix(buf, first, "From ") { isMail = true; i = 1 }
        if isMail {
            // RFC 822 headers up to the first blank line; Subject may be folded.
            while i < lines.count, !lines[i].isEmpty {
                let t = text(buf, lines[i])
                if t.hasPrefix("Subject: ") {
                    var s = String(t.dropFirst("Subject: ".count))
                    while i + 1 < lines.count, let c = text(buf, lines[i + 1]).first, c == " " || c == "\t" {
                        i += 1; s += text(buf, lines[i])
                    }
                    subject = s
                }
                i += 1
            }
        }
        // The message ends at the format-patch divider "---".
        var end = lines.count
        if let d = lines[i...].firstIndex(where: { text(buf, $0) == "---" }) { end = d }
        let message = lines[min(i, end)..<end].map { text(buf, $0) }
        // Last paragraph = candidate trailer block.
        var paragraphEnd = message.count
        while paragraphEnd > 0, message[paragraphEnd - 1].trimmingCharacters(in: .whitespaces).isEmpty { paragraphEnd -= 1 }
        var paragraphStart = paragraphEnd
        while paragraphStart > 0, !message[paragraphStart - 1].trimmingCharacters(in: .whitespaces).isEmpty { paragraphStart -= 1 }
        let block = Array(message[paragraphStart..<paragraphEnd])
        var parsed: [PatchFile.Trailer] = []
        var allTrailers = !block.isEmpty && paragraphStart > 0
        for line in block {
            if let c = line.first, c == " " || c == "\t", !parsed.isEmpty { continue }
            guard let colon = line.firstIndex(of: ":"), colon > line.startIndex,
                  line[..<colon].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else { allTrailers = false; break }
            parsed.append(.init(key: String(line[..<colon]), value: line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        if allTrailers { trailers = parsed }
        let outside = allTrailers ? Array(message[..<paragraphStart]) : message
        scopeLinesOutsideTrailers = outside.filter { $0.lowercased().hasPrefix("scope:") }.count
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
        let raw = UnsafeRawBufferPointer(buf)
        if r.upperBound < buf.count {
            content.update(UnsafeRawBufferPointer(rebasing: raw[r.lowerBound..<(r.upperBound + 1)]))
        } else {
            content.update(UnsafeRawBufferPointer(rebasing: raw[r]))
            content.update([UInt8(0x0A)])
        }
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
