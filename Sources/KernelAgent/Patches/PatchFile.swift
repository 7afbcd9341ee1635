import Crypto
import Foundation

/// One `git format-patch` file, parsed just enough for curation: its trailers (Scope:, Campaign:),
/// the files and hunks it touches, and its two hashes.
///
/// The diff is read the way `git apply` reads it (apply.c: find_header, parse_git_diff_header,
/// parse_fragment), so a patch git calls corrupt is refused here too, and the trailers the way
/// `git interpret-trailers --parse` reads them (see `TrailerBlock`).
package struct PatchFile: Sendable {
    package struct Trailer: Sendable, Equatable {
        package let key: String
        package let value: String
    }

    /// Why a patch is refused: the 1-based line of the patch file it concerns, and what is wrong there.
    package struct Problem: Sendable, Equatable, CustomStringConvertible {
        package let line: Int
        package let message: String
        package let hint: String
        package var description: String { "line \(line): \(message)" }
    }

    package struct Hunk: Sendable {
        package let oldStart: Int, oldCount: Int, newStart: Int, newCount: Int
        /// Line of the `@@` header in the patch file (1-based).
        package let line: Int
        /// Byte range of the hunk body inside `bytes`: the counted lines, with their newlines, and a
        /// trailing `\ No newline at end of file` line if there is one.
        package let body: Range<Int>
        /// Context lines before the first and after the last change (GNU patch's prefix/suffix context).
        package let leadingContext: Int, trailingContext: Int
        package var oldRange: ClosedRange<Int> { oldStart...max(oldStart, oldStart + oldCount - 1) }
    }

    package struct FileDiff: Sendable {
        package var oldPath: String?   // nil for a new file
        package var newPath: String?   // nil for a deletion
        package var hunks: [Hunk] = []
        package var isBinary = false
        /// Line of the file header (`diff --git` or `---`) in the patch file.
        package var line = 0
        package var path: String { newPath ?? oldPath ?? "?" }
        package var targetPath: String { oldPath ?? newPath ?? "?" }
    }

    /// Bound on every line number and count in a hunk header: no kernel source file comes near it, and it
    /// keeps all range arithmetic far from overflow.
    package static let maxLineNumber = 10_000_000

    package let bytes: Data
    package let subject: String?
    package let trailers: [Trailer]
    /// `Scope:` lines outside the trailer block (they do not count as a scope tag).
    package let scopeLinesOutsideTrailers: Int
    package let files: [FileDiff]
    package let contentHash: String
    /// The first thing that makes the patch unusable, as `git apply --check` would see it (it stops at the
    /// first one too); nil for a well-formed patch. `init(bytes:display:)` turns it into a refusal.
    package let problem: Problem?

    package var scopeTrailers: [String] { trailers.filter { $0.key.lowercased() == "scope" }.map(\.value) }
    package var campaign: String? { trailers.last { $0.key.lowercased() == "campaign" }?.value }
    package let b2sum: String

    /// Parses without judging: a malformed patch comes back with `problem` set. Readers of the tree use
    /// `init(bytes:display:)`, which refuses it.
    package init(bytes: Data) { self.init(bytes: bytes, hashing: true) }

    /// With `hashing` false, `b2sum` and `contentHash` stay empty: for readers that need only the structure and
    /// the trailers (the apply check, ka status).
    init(bytes: Data, hashing: Bool) {
        self.bytes = bytes
        b2sum = hashing ? Timings.measure("patch b2sum") { Blake2b.hex(bytes) } : ""
        var parsed = ParseResult()
        Timings.measure("patch parse") {
            bytes.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
                parsed = Parser.parse(raw.bindMemory(to: UInt8.self))
            }
        }
        subject = parsed.subject
        trailers = parsed.trailers
        scopeLinesOutsideTrailers = parsed.scopeLinesOutsideTrailers
        files = parsed.files
        problem = parsed.problem
        let content = parsed.content
        contentHash = hashing ? Timings.measure("patch sha256") { "sha256:" + Hex.encode(Array(SHA256.hash(data: content))) } : ""
    }

    /// Parses and refuses a patch that is malformed or holds no diff, naming `display:line`.
    package init(bytes: Data, display: String) throws { try self.init(bytes: bytes, display: display, hashing: true) }

    init(bytes: Data, display: String, hashing: Bool) throws {
        self.init(bytes: bytes, hashing: hashing)
        if let p = problem { throw KAError.refusal("\(display):\(p.line)", p.message, hint: p.hint) }
        if files.isEmpty {
            throw KAError.refusal(display, "not a patch (no diff in it)",
                                  hint: "export it with git format-patch")
        }
    }
}

struct ParseResult {
    var subject: String?
    var trailers: [PatchFile.Trailer] = []
    var scopeLinesOutsideTrailers = 0
    var files: [PatchFile.FileDiff] = []
    var problem: PatchFile.Problem?
    /// The ---/+++ and -/+ lines, gathered and hashed once (one SHA-256 call per patch, not one per line).
    var content: [UInt8] = []
}

/// git's ctype (git-compat-util.h): only these four are space, and only ASCII letters and digits are alnum.
@inline(__always) func gitIsSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D }
@inline(__always) func gitIsAlnum(_ c: UInt8) -> Bool {
    (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
}
@inline(__always) func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }

private let corruptHint = "the patch is corrupt (git apply --check refuses it too); regenerate it with git format-patch"
private let pathHint = "diff paths must be relative to the kernel tree, without '..', '.' or '.git' components"

private struct Parser {
    let buf: UnsafeBufferPointer<UInt8>
    /// Every line with its '\n' (the last one may lack it).
    var lines: [Range<Int>] = []
    var result = ParseResult()
    /// git apply's -p value; git guesses 0 from a traditional patch whose names have no '/' (guess_p_value).
    var pValue = 1
    var pValueKnown = false

    static func parse(_ buf: UnsafeBufferPointer<UInt8>) -> ParseResult {
        var p = Parser(buf: buf)
        p.result.content.reserveCapacity(buf.count / 2)
        p.splitLines()
        p.parseMessage()
        p.parseDiffs()
        return p.result
    }

    mutating func splitLines() {
        lines.reserveCapacity(buf.count / 32 + 1)
        guard let base = buf.baseAddress else { return }
        var start = 0
        while start < buf.count {
            if let p = memchr(base + start, 0x0A, buf.count - start) {
                let end = base.distance(to: p.assumingMemoryBound(to: UInt8.self)) + 1
                lines.append(start..<end)
                start = end
            } else {
                lines.append(start..<buf.count)
                start = buf.count
            }
        }
    }

    // MARK: byte helpers (out-of-range reads see NUL, as C code reading a strbuf would)

    @inline(__always) func at(_ k: Int) -> UInt8 { k >= 0 && k < buf.count ? buf[k] : 0 }

    func starts(_ k: Int, _ p: StaticString) -> Bool {
        let n = p.utf8CodeUnitCount
        guard k >= 0, k + n <= buf.count, let base = buf.baseAddress else { return false }
        return memcmp(base + k, p.utf8Start, n) == 0
    }

    func starts(line i: Int, _ p: StaticString) -> Bool { i < lines.count && starts(lines[i].lowerBound, p) }
    func hasNewline(_ i: Int) -> Bool { lines[i].count > 0 && buf[lines[i].upperBound - 1] == 0x0A }
    func remaining(_ i: Int) -> Int { buf.count - lines[i].lowerBound }

    /// The line's text for a message, without its newline (and a CR before it), shortened for display.
    func quote(_ i: Int, limit: Int = 80) -> String {
        var r = lines[i]
        if r.count > 0, buf[r.upperBound - 1] == 0x0A { r = r.lowerBound..<(r.upperBound - 1) }
        if r.count > 0, buf[r.upperBound - 1] == 0x0D { r = r.lowerBound..<(r.upperBound - 1) }
        let cut = r.lowerBound..<min(r.upperBound, r.lowerBound + limit)
        let s = String(decoding: UnsafeBufferPointer(rebasing: buf[cut]), as: UTF8.self)
        return cut.count < r.count ? s + "…" : s
    }

    mutating func fail(_ line: Int, _ message: String, hint: String = corruptHint) {
        if result.problem == nil { result.problem = .init(line: line, message: message, hint: hint) }
    }

    /// Feeds one line (without its newline) and a '\n' to the content hash.
    mutating func hashLine(_ i: Int) {
        var r = lines[i]
        if r.count > 0, buf[r.upperBound - 1] == 0x0A { r = r.lowerBound..<(r.upperBound - 1) }
        result.content.append(contentsOf: UnsafeBufferPointer(rebasing: buf[r]))
        result.content.append(0x0A)
    }

    // MARK: message

    mutating func parseMessage() {
        // Subject from the mail headers (RFC 822, up to the first blank line; Subject may be folded).
        if starts(line: 0, "From ") {
            var i = 1
            while i < lines.count, lines[i].count > 1 || (lines[i].count == 1 && buf[lines[i].lowerBound] != 0x0A) {
                if starts(line: i, "Subject: ") {
                    var s = String(quote(i, limit: 1000).dropFirst("Subject: ".count))
                    while i + 1 < lines.count, buf[lines[i + 1].lowerBound] == 0x20 || buf[lines[i + 1].lowerBound] == 0x09 {
                        i += 1
                        s += quote(i, limit: 1000)
                    }
                    result.subject = s
                }
                i += 1
            }
        }
        let block = TrailerBlock.locate(buf)
        result.trailers = TrailerBlock.parse(buf, block)
        // Scope: lines of the message outside the trailer block.
        for r in lines {
            let k = r.lowerBound
            if k >= block.messageEnd { break }
            if (k < block.start || k >= block.end), r.count >= 6 {
                let scope: StaticString = "scope:"
                var same = true
                for n in 0..<6 where (buf[k + n] | 0x20) != scope.utf8Start[n] { same = false; break }
                if same { result.scopeLinesOutsideTrailers += 1 }
            }
        }
    }

    // MARK: diff (git apply's parse loop)

    /// What a file header says, in git's terms (is_new/is_delete: -1 unknown, 0 no, 1 yes).
    struct Header {
        var line: Int
        var oldName: [UInt8]?
        var newName: [UInt8]?
        var defName: [UInt8]?
        var isNew = -1, isDelete = -1, isRename = 0, isCopy = 0
        var oldMode: UInt = 0, newMode: UInt = 0
        var extensionLine = 0
    }

    mutating func parseDiffs() {
        var i = 0
        while i < lines.count, result.problem == nil {
            guard var header = findHeader(&i) else { return }
            var hunks: [PatchFile.Hunk] = []
            var oldTotal = 0, newTotal = 0
            while i < lines.count, remaining(i) > 4, starts(line: i, "@@ -") {
                guard let h = parseFragment(&i, header) else { return }
                oldTotal += h.oldCount
                newTotal += h.newCount
                hunks.append(h)
            }
            if header.isNew < 0 && (oldTotal > 0 || hunks.count > 1) { header.isNew = 0 }
            if header.isDelete < 0 && (newTotal > 0 || hunks.count > 1) { header.isDelete = 0 }
            let name = String(decoding: header.newName ?? header.oldName ?? [], as: UTF8.self)
            if header.isNew > 0 && oldTotal > 0 { return fail(header.line, "new file \(name) depends on old contents") }
            if header.isDelete > 0 && newTotal > 0 { return fail(header.line, "deleted file \(name) still has contents") }
            var binary = false
            if hunks.isEmpty {
                binary = parseBinary(&i)
                if result.problem != nil { return }
                let metadata = header.isRename > 0 || header.isCopy > 0 || header.isNew > 0 || header.isDelete != 0
                    || (header.oldMode != 0 && header.newMode != 0 && header.oldMode != header.newMode)
                if !binary && !metadata {
                    return fail(header.line, "the file header for \(name) has no hunks (git apply: patch with only garbage)")
                }
            }
            var fd = PatchFile.FileDiff()
            fd.line = header.line
            if header.isNew <= 0, let o = header.oldName { fd.oldPath = String(decoding: o, as: UTF8.self) }
            if header.isDelete <= 0, let n = header.newName { fd.newPath = String(decoding: n, as: UTF8.self) }
            for p in [fd.oldPath, fd.newPath].compactMap({ $0 }) {
                if let why = Self.unsafePathReason(p) {
                    return fail(header.line, "diff path '\(p)' \(why)", hint: pathHint)
                }
            }
            fd.hunks = hunks
            fd.isBinary = binary
            result.files.append(fd)
        }
    }

    /// KernelCI's and git's rule (verify_path): a diff path is relative and stays inside the tree.
    static func unsafePathReason(_ p: String) -> String? {
        if p.hasPrefix("/") { return "is absolute" }
        for c in p.split(separator: "/", omittingEmptySubsequences: false) {
            if c.isEmpty { return "has an empty component" }
            if c == ".." { return "has a '..' component" }
            if c == "." { return "has a '.' component" }
            if c.lowercased() == ".git" { return "has a '.git' component" }
        }
        return nil
    }

    /// find_header: the next file header at or after line `i`; `i` ends on the first line after it.
    mutating func findHeader(_ i: inout Int) -> Header? {
        while i < lines.count {
            let len = lines[i].count
            if len < 6 { i += 1; continue }
            if starts(line: i, "@@ -") {
                if parseFragmentHeader(i) != nil {
                    fail(i + 1, "hunk header '\(quote(i))' has no file header (diff --git, or ---/+++) before it")
                    return nil
                }
                i += 1
                continue
            }
            if remaining(i) < len + 6 { return nil }
            if starts(line: i, "diff --git ") {
                guard let (header, consumed) = parseGitHeader(i) else { return nil }
                if consumed <= 1 { i += 1; continue }
                i += consumed
                return header
            }
            if starts(line: i, "--- "), i + 1 < lines.count, starts(line: i + 1, "+++ ") {
                guard remaining(i) >= lines[i + 1].count + 14, starts(line: i + 2, "@@ -") else { i += 1; continue }
                guard let header = parseTraditionalHeader(i) else { return nil }
                i += 2
                return header
            }
            i += 1
        }
        return nil
    }

    /// parse_git_diff_header: the header and how many lines it takes (1 = only the `diff --git` line: not a patch).
    mutating func parseGitHeader(_ i: Int) -> (Header, Int)? {
        var h = Header(line: i + 1)
        h.isNew = 0
        h.isDelete = 0
        h.defName = gitHeaderName(lines[i].lowerBound + "diff --git ".count, end: lines[i].upperBound)
        var j = i + 1
        scan: while j < lines.count, hasNewline(j) {
            let s = lines[j].lowerBound
            func rest(_ p: StaticString) -> Int { s + p.utf8CodeUnitCount }
            if starts(s, "@@ -") { break scan }
            else if starts(s, "--- ") {
                guard verifyName(rest("--- "), isNull: h.isNew > 0, name: &h.oldName, side: "old", line: j) else { return nil }
                hashLine(j)
            } else if starts(s, "+++ ") {
                guard verifyName(rest("+++ "), isNull: h.isDelete > 0, name: &h.newName, side: "new", line: j) else { return nil }
                hashLine(j)
            } else if starts(s, "old mode ") {
                guard let m = parseMode(rest("old mode "), line: j) else { return nil }
                h.oldMode = m
            } else if starts(s, "new mode ") {
                guard let m = parseMode(rest("new mode "), line: j) else { return nil }
                h.newMode = m
            } else if starts(s, "deleted file mode ") {
                h.isDelete = 1
                h.oldName = h.defName
                guard let m = parseMode(rest("deleted file mode "), line: j) else { return nil }
                h.oldMode = m
            } else if starts(s, "new file mode ") {
                h.isNew = 1
                h.newName = h.defName
                guard let m = parseMode(rest("new file mode "), line: j) else { return nil }
                h.newMode = m
            } else if starts(s, "copy from ") {
                h.isCopy = 1; h.oldName = findName(rest("copy from "), p: max(0, pValue - 1), tabEnds: false)
            } else if starts(s, "copy to ") {
                h.isCopy = 1; h.newName = findName(rest("copy to "), p: max(0, pValue - 1), tabEnds: false)
            } else if starts(s, "rename old ") {
                h.isRename = 1; h.oldName = findName(rest("rename old "), p: max(0, pValue - 1), tabEnds: false)
            } else if starts(s, "rename new ") {
                h.isRename = 1; h.newName = findName(rest("rename new "), p: max(0, pValue - 1), tabEnds: false)
            } else if starts(s, "rename from ") {
                h.isRename = 1; h.oldName = findName(rest("rename from "), p: max(0, pValue - 1), tabEnds: false)
            } else if starts(s, "rename to ") {
                h.isRename = 1; h.newName = findName(rest("rename to "), p: max(0, pValue - 1), tabEnds: false)
            } else if starts(s, "similarity index ") || starts(s, "dissimilarity index ") {
                // a score; nothing to check
            } else if starts(s, "index ") {
                guard parseIndexMode(rest("index "), line: j, header: &h) else { return nil }
            } else {
                break scan
            }
            // check_header_line: at most one of new, deleted, rename, copy
            let extensions = (h.isDelete == 1 ? 1 : 0) + (h.isNew == 1 ? 1 : 0) + (h.isRename == 1 ? 1 : 0) + (h.isCopy == 1 ? 1 : 0)
            if extensions > 1 {
                fail(j + 1, "inconsistent header lines \(h.extensionLine) and \(j + 1) (new, deleted, rename and copy exclude each other)")
                return nil
            }
            if extensions > 0 && h.extensionLine == 0 { h.extensionLine = j + 1 }
            j += 1
        }
        if h.oldName == nil && h.newName == nil {
            guard let d = h.defName else {
                fail(i + 1, "the diff --git header lacks file name information (its a/ and b/ names differ and no ---/+++ or rename lines name the file)")
                return nil
            }
            h.oldName = d
            h.newName = d
        }
        if (h.newName == nil && h.isDelete <= 0) || (h.oldName == nil && h.isNew <= 0) {
            fail(i + 1, "the diff --git header lacks file name information")
            return nil
        }
        return (h, j - i)
    }

    /// gitdiff_verify_name: a ---/+++ line of a git diff must agree with what the header said before it.
    mutating func verifyName(_ at: Int, isNull: Bool, name: inout [UInt8]?, side: String, line j: Int) -> Bool {
        if name == nil && !isNull {
            name = findName(at, p: pValue, tabEnds: true)
            return true
        }
        if let n = name {
            if isNull {
                fail(j + 1, "expected /dev/null on the \(side) side, got \(String(decoding: n, as: UTF8.self))")
                return false
            }
            if findName(at, p: pValue, tabEnds: true) != n {
                fail(j + 1, "inconsistent \(side) file name: '\(quote(j))' disagrees with the diff --git line")
                return false
            }
        } else if !isDevNull(at) {
            fail(j + 1, "expected /dev/null on the \(side) side: '\(quote(j))'")
            return false
        }
        return true
    }

    func isDevNull(_ k: Int) -> Bool { starts(k, "/dev/null") && gitIsSpace(at(k + 9)) }

    /// parse_mode_line: an octal mode followed by whitespace.
    mutating func parseMode(_ k: Int, line j: Int) -> UInt? {
        var n = k
        var value: UInt = 0
        while at(n) >= 0x30 && at(n) <= 0x37 {
            value = min(value &* 8 &+ UInt(at(n) - 0x30), 0o7777777)
            n += 1
        }
        guard n > k, gitIsSpace(at(n)) else {
            fail(j + 1, "invalid mode: '\(quote(j))'")
            return nil
        }
        return value
    }

    /// gitdiff_index: "index <hex>..<hex>[ <mode>]"; a mode there counts as the old mode.
    mutating func parseIndexMode(_ k: Int, line j: Int, header h: inout Header) -> Bool {
        let end = lines[j].upperBound
        var dot = k
        while dot < end && buf[dot] != UInt8(ascii: ".") { dot += 1 }
        guard dot < end, at(dot + 1) == UInt8(ascii: "."), dot - k <= 40 else { return true }
        let second = dot + 2
        var n = second
        while n < end && buf[n] != 0x20 && buf[n] != 0x0A { n += 1 }
        guard n - second <= 40 else { return true }
        if at(n) == 0x20 {
            guard let m = parseMode(n + 1, line: j) else { return false }
            h.oldMode = m
        }
        return true
    }

    /// parse_traditional_patch: a ---/+++ pair without a git header.
    mutating func parseTraditionalHeader(_ i: Int) -> Header? {
        let first = lines[i].lowerBound + 4, second = lines[i + 1].lowerBound + 4
        if !pValueKnown {
            var p = guessP(first)
            let q = guessP(second)
            if p < 0 { p = q }
            if p >= 0 && p == q { pValue = p; pValueKnown = true }
        }
        var h = Header(line: i + 1)
        let name: [UInt8]?
        if isDevNull(first) {
            h.isNew = 1; h.isDelete = 0
            name = findName(second, p: pValue, tabEnds: true)
            h.newName = name
        } else if isDevNull(second) {
            h.isNew = 0; h.isDelete = 1
            name = findName(first, p: pValue, tabEnds: true)
            h.oldName = name
        } else {
            let firstName = findName(first, p: pValue, tabEnds: true)
            name = findName(second, def: firstName, p: pValue, tabEnds: true)
            h.oldName = name
            h.newName = name
        }
        guard name != nil else {
            fail(i + 1, "no file name in '\(quote(i))' / '\(quote(i + 1))' once the first path component is stripped")
            return nil
        }
        hashLine(i)
        hashLine(i + 1)
        return h
    }

    func guessP(_ k: Int) -> Int {
        if isDevNull(k) { return -1 }
        guard let name = findName(k, p: 0, tabEnds: true) else { return -1 }
        return name.contains(UInt8(ascii: "/")) ? -1 : 0
    }

    /// find_name: the path after `p` leading components, up to the newline (or a tab, for ---/+++ lines).
    /// A name in double quotes is unquoted C-style first. Runs of '/' count as one.
    func findName(_ k: Int, def: [UInt8]? = nil, p: Int, tabEnds: Bool) -> [UInt8]? {
        if at(k) == UInt8(ascii: "\""), let (unquoted, _) = unquoteC(k) {
            // find_name_gnu; when it finds nothing, git reads the line unquoted
            var rest: ArraySlice<UInt8>? = unquoted[...]
            for _ in 0..<p {
                guard let r = rest, let slash = r.firstIndex(of: UInt8(ascii: "/")) else { rest = nil; break }
                rest = r[(slash + 1)...]
            }
            if let rest { return Self.squashSlashes(Array(rest)) }
        }
        var n = k
        var start: Int? = p == 0 ? k : nil
        var components = p
        while n < buf.count {
            let c = buf[n]
            if c == 0x0A || (tabEnds && c == 0x09) || c == 0 { break }
            n += 1
            if c == UInt8(ascii: "/") && components > 0 {
                components -= 1
                if components == 0 { start = n }
            }
        }
        guard let s = start, n > s else { return def.map(Self.squashSlashes) }
        let found = Array(UnsafeBufferPointer(rebasing: buf[s..<n]))
        if let def, def.count < found.count, found.starts(with: def) { return Self.squashSlashes(def) }
        return Self.squashSlashes(found)
    }

    static func squashSlashes(_ name: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(name.count)
        for c in name where !(c == UInt8(ascii: "/") && out.last == UInt8(ascii: "/")) { out.append(c) }
        return out
    }

    /// unquote_c_style: a "…" name with \\, \", \a\b\f\n\r\t\v and \ooo escapes; the index after the closing quote.
    func unquoteC(_ k: Int) -> ([UInt8], Int)? {
        var out: [UInt8] = []
        var n = k + 1
        while n < buf.count {
            let c = buf[n]
            if c == UInt8(ascii: "\"") { return (out, n + 1) }
            if c == 0x0A || c == 0 { return nil }
            if c != UInt8(ascii: "\\") { out.append(c); n += 1; continue }
            let e = at(n + 1)
            switch e {
            case UInt8(ascii: "\\"), UInt8(ascii: "\""): out.append(e); n += 2
            case UInt8(ascii: "a"): out.append(0x07); n += 2
            case UInt8(ascii: "b"): out.append(0x08); n += 2
            case UInt8(ascii: "f"): out.append(0x0C); n += 2
            case UInt8(ascii: "n"): out.append(0x0A); n += 2
            case UInt8(ascii: "r"): out.append(0x0D); n += 2
            case UInt8(ascii: "t"): out.append(0x09); n += 2
            case UInt8(ascii: "v"): out.append(0x0B); n += 2
            case UInt8(ascii: "0")...UInt8(ascii: "3"):
                let d1 = at(n + 2), d2 = at(n + 3)
                guard d1 >= 0x30 && d1 <= 0x37, d2 >= 0x30 && d2 <= 0x37 else { return nil }
                out.append((e - 0x30) << 6 | (d1 - 0x30) << 3 | (d2 - 0x30))
                n += 4
            default: return nil
            }
        }
        return nil
    }

    /// git_header_name: the name in "diff --git a/NAME b/NAME", found only when both sides spell it the same.
    func gitHeaderName(_ k: Int, end: Int) -> [UInt8]? {
        func skipPrefix(_ name: ArraySlice<UInt8>) -> ArraySlice<UInt8>? {
            // skip_tree_prefix: drop pValue components; a leading '/' means absolute, which git does not take
            if pValue == 0 { return name.first == UInt8(ascii: "/") ? nil : name }
            var left = pValue
            for idx in name.indices where name[idx] == UInt8(ascii: "/") {
                left -= 1
                if left <= 0 { return idx == name.startIndex ? nil : name[(idx + 1)...] }
            }
            return nil
        }
        let lineBytes = Array(UnsafeBufferPointer(rebasing: buf[k..<max(k, end)]))
        let body = lineBytes.last == 0x0A ? lineBytes.dropLast() : lineBytes[...]
        if body.first == UInt8(ascii: "\"") {
            guard let (first, after) = unquoteC(k), let firstName = skipPrefix(first[...]) else { return nil }
            var s = after - k
            while s < body.count, gitIsSpace(body[s]) { s += 1 }
            guard s < body.count else { return nil }
            if body[s] == UInt8(ascii: "\"") {
                guard let (second, _) = unquoteC(k + s), let secondName = skipPrefix(second[...]) else { return nil }
                return secondName.elementsEqual(firstName) ? Array(firstName) : nil
            }
            // quoted first, unquoted second: git compares the second with its newline still on, so it never matches
            return nil
        }
        guard let name = skipPrefix(body[...]) else { return nil }
        if let q = name.firstIndex(of: UInt8(ascii: "\"")) {
            // unquoted first name, quoted second
            guard let (second, _) = unquoteC(k + q), let np = skipPrefix(second[...]) else { return nil }
            let len = np.count
            guard len < q - name.startIndex, name.prefix(len).elementsEqual(np),
                  gitIsSpace(name[name.startIndex + len]) else { return nil }
            return Array(np)
        }
        // "a/NAME b/NAME": try every space or tab as the separator
        for sep in name.indices where name[sep] == 0x20 || name[sep] == 0x09 {
            let len = sep - name.startIndex
            guard sep + 1 < name.endIndex, let second = skipPrefix(name[(sep + 1)...]) else { continue }
            if second.count == len && second.elementsEqual(name.prefix(len)) { return Array(name.prefix(len)) }
        }
        return nil
    }

    // MARK: hunks

    struct FragmentHeader { var oldStart = 0, oldCount = 1, newStart = 0, newCount = 1, tooLarge = false }

    /// parse_fragment_header: "@@ -a[,b] +c[,d] @@…", every number bounded by `maxLineNumber`.
    func parseFragmentHeader(_ i: Int) -> FragmentHeader? {
        guard hasNewline(i) else { return nil }
        var h = FragmentHeader()
        var tooLarge = false
        var k = lines[i].lowerBound + 4
        func number(_ value: inout Int) -> Bool {
            guard isDigit(at(k)) else { return false }
            var v = 0
            while isDigit(at(k)) {
                if v <= PatchFile.maxLineNumber { v = v * 10 + Int(at(k) - 0x30) }
                k += 1
            }
            if v > PatchFile.maxLineNumber { tooLarge = true }
            value = v
            return true
        }
        func range(_ start: inout Int, _ count: inout Int, then expect: StaticString) -> Bool {
            guard number(&start) else { return false }
            count = 1
            if at(k) == UInt8(ascii: ",") {
                k += 1
                guard number(&count) else { return false }
            }
            guard k + expect.utf8CodeUnitCount <= lines[i].upperBound, starts(k, expect) else { return false }
            k += expect.utf8CodeUnitCount
            return true
        }
        guard range(&h.oldStart, &h.oldCount, then: " +"), range(&h.newStart, &h.newCount, then: " @@") else { return nil }
        h.tooLarge = tooLarge
        return h
    }

    /// parse_fragment: a hunk whose body holds exactly the lines its header counts.
    mutating func parseFragment(_ i: inout Int, _ header: Header) -> PatchFile.Hunk? {
        let hl = i
        guard let h = parseFragmentHeader(hl) else {
            fail(hl + 1, "malformed hunk header '\(quote(hl))' (expected '@@ -a[,b] +c[,d] @@' with decimal numbers)")
            return nil
        }
        if h.tooLarge {
            fail(hl + 1, "hunk header '\(quote(hl))' has a line number or count above \(PatchFile.maxLineNumber)")
            return nil
        }
        var oldLeft = h.oldCount, newLeft = h.newCount
        var oldSeen = 0, newSeen = 0, added = 0, deleted = 0, leading = 0, trailing = 0
        var j = hl + 1
        let bodyStart = j < lines.count ? lines[j].lowerBound : buf.count
        func mismatch(_ endLine: Int) -> String {
            "hunk header '\(quote(hl))' counts \(h.oldCount) old and \(h.newCount) new line(s), but its body "
                + (oldSeen + newSeen == 0 ? "is empty" : "has \(oldSeen) old and \(newSeen) new line(s) up to line \(endLine)")
        }
        while j < lines.count, oldLeft != 0 || newLeft != 0 {
            guard hasNewline(j) else {
                fail(hl + 1, mismatch(j + 1) + " (the file ends inside the hunk, without a newline)")
                return nil
            }
            switch buf[lines[j].lowerBound] {
            case 0x0A, 0x20:
                oldLeft -= 1; newLeft -= 1; oldSeen += 1; newSeen += 1
                if deleted == 0 && added == 0 { leading += 1 }
                trailing += 1
            case UInt8(ascii: "-"):
                deleted += 1; oldLeft -= 1; oldSeen += 1; trailing = 0
                hashLine(j)
            case UInt8(ascii: "+"):
                added += 1; newLeft -= 1; newSeen += 1; trailing = 0
                hashLine(j)
            case UInt8(ascii: "\\"):
                guard lines[j].count >= 12, at(lines[j].lowerBound + 1) == 0x20 else {
                    fail(hl + 1, "hunk at line \(hl + 1): line \(j + 1) '\(quote(j))' is not a '\\ No newline at end of file' marker")
                    return nil
                }
            default:
                if oldLeft > 0 && newLeft > 0 {
                    fail(hl + 1, "hunk at line \(hl + 1): line \(j + 1) '\(quote(j, limit: 40))' is not a context (' '), '-', '+' or '\\' line")
                } else {
                    fail(hl + 1, mismatch(j))
                }
                return nil
            }
            j += 1
        }
        if oldLeft != 0 || newLeft != 0 {
            fail(hl + 1, mismatch(j) + (j == hl + 1 ? "" : " (the file ends inside the hunk)"))
            return nil
        }
        if added == 0 && deleted == 0 {
            fail(hl + 1, "hunk at line \(hl + 1) changes nothing: it has no '-' or '+' line")
            return nil
        }
        // a last line without a newline is followed by "\ No newline at end of file"
        if j < lines.count, remaining(j) > 12, starts(line: j, "\\ ") { j += 1 }
        let bodyEnd = j < lines.count ? lines[j].lowerBound : buf.count
        i = j
        return PatchFile.Hunk(oldStart: h.oldStart, oldCount: h.oldCount, newStart: h.newStart, newCount: h.newCount,
                              line: hl + 1, body: bodyStart..<max(bodyStart, bodyEnd),
                              leadingContext: leading, trailingContext: trailing)
    }

    /// A file diff without hunks may be binary: "GIT binary patch" hunks (shape checked, data not decoded),
    /// or a "Binary files … differ" line.
    mutating func parseBinary(_ i: inout Int) -> Bool {
        guard i < lines.count else { return false }
        if starts(line: i, "GIT binary patch\n") && lines[i].count == "GIT binary patch\n".count {
            let start = i
            i += 1
            guard binaryHunk(&i, required: true, patchLine: start) else { return false }
            _ = binaryHunk(&i, required: false, patchLine: start)
            return result.problem == nil
        }
        let r = lines[i]
        if r.count >= 8, starts(r.upperBound - 8, " differ\n"), starts(line: i, "Binary files ") || starts(line: i, "Files ") {
            i += 1
            return true
        }
        return false
    }

    mutating func binaryHunk(_ i: inout Int, required: Bool, patchLine: Int) -> Bool {
        guard i < lines.count, starts(line: i, "literal ") || starts(line: i, "delta ") else {
            if required { fail(patchLine + 1, "unrecognized binary patch: no 'literal' or 'delta' line after 'GIT binary patch'") }
            return false
        }
        i += 1
        while i < lines.count {
            let len = lines[i].count
            if len == 1 && buf[lines[i].lowerBound] == 0x0A { i += 1; return true }
            let c = buf[lines[i].lowerBound]
            guard len >= 7, (len - 2) % 5 == 0, (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) else {
                fail(i + 1, "corrupt binary patch: '\(quote(i, limit: 40))'")
                return false
            }
            i += 1
        }
        fail(patchLine + 1, "corrupt binary patch: it does not end with an empty line")
        return false
    }
}

/// Where `git interpret-trailers --parse` finds the trailer block of a commit message, and what it reads there
/// (git's trailer.c, with an unconfigured git: separator ':', no trailer.<token> keys).
enum TrailerBlock {
    struct Location {
        /// Where the message ends: the first line starting with "---" and a space (format-patch's divider,
        /// or a diff's "--- a/…" line), or the first NUL, or the end.
        var messageEnd: Int
        /// The trailer block is [start, end); start == end when there is none.
        var start: Int
        var end: Int
        /// Whether the text before `start` ends with a blank line (then a new trailer needs no new paragraph).
        var blankLineBefore: Bool
    }

    static let gitGeneratedPrefixes: [StaticString] = ["Signed-off-by: ", "(cherry picked from commit "]

    static func locate(_ buf: UnsafeBufferPointer<UInt8>) -> Location {
        guard let base = buf.baseAddress, buf.count > 0 else { return Location(messageEnd: 0, start: 0, end: 0, blankLineBefore: false) }
        // C-string semantics: git stops at the first NUL
        let len = memchr(base, 0, buf.count).map { base.distance(to: $0.assumingMemoryBound(to: UInt8.self)) } ?? buf.count
        func at(_ k: Int) -> UInt8 { k < len ? buf[k] : 0 }
        func nextLine(_ k: Int) -> Int {
            guard k < len, let p = memchr(base + k, 0x0A, len - k) else { return len }
            return base.distance(to: p.assumingMemoryBound(to: UInt8.self)) + 1
        }
        func startsWith(_ k: Int, _ s: StaticString) -> Bool {
            let n = s.utf8CodeUnitCount
            return k + n <= len && memcmp(base + k, s.utf8Start, n) == 0
        }
        // find_patch_start
        var messageEnd = len
        var k = 0
        while k < len {
            if startsWith(k, "---") && gitIsSpace(at(k + 3)) { messageEnd = k; break }
            k = nextLine(k)
        }
        let end = messageEnd - ignoredTail(buf, len: messageEnd, at: at, nextLine: nextLine, startsWith: startsWith)
        func isBlankLine(_ k: Int) -> Bool {
            var n = k
            while n < len && at(n) != 0x0A && gitIsSpace(at(n)) { n += 1 }
            return n >= len || at(n) == 0x0A
        }
        func lastLine(_ upTo: Int) -> Int {
            if upTo <= 0 { return -1 }
            if upTo == 1 { return 0 }
            var n = upTo - 2
            while n >= 0 { if buf[n] == 0x0A { return n + 1 }; n -= 1 }
            return 0
        }
        // find_trailer_start: the title paragraph cannot hold trailers
        var s = 0
        while s < end {
            if at(s) == UInt8(ascii: "#") { s = nextLine(s); continue }
            if isBlankLine(s) { break }
            s = nextLine(s)
        }
        let endOfTitle = s
        var start = end
        var onlySpaces = true, recognizedPrefix = false
        var trailerLines = 0, nonTrailerLines = 0, possibleContinuationLines = 0
        var l = lastLine(end)
        scan: while l >= endOfTitle && l >= 0 {
            defer { l = lastLine(l) }
            if at(l) == UInt8(ascii: "#") {
                nonTrailerLines += possibleContinuationLines
                possibleContinuationLines = 0
                continue
            }
            if isBlankLine(l) {
                if onlySpaces { continue }
                nonTrailerLines += possibleContinuationLines
                if (recognizedPrefix && trailerLines * 3 >= nonTrailerLines) || (trailerLines > 0 && nonTrailerLines == 0) {
                    start = nextLine(l)
                }
                break scan
            }
            onlySpaces = false
            if gitGeneratedPrefixes.contains(where: { startsWith(l, $0) }) {
                trailerLines += 1
                possibleContinuationLines = 0
                recognizedPrefix = true
                continue
            }
            if separator(at: l, at) >= 1 && !gitIsSpace(at(l)) {
                trailerLines += 1
                possibleContinuationLines = 0
            } else if gitIsSpace(at(l)) {
                possibleContinuationLines += 1
            } else {
                nonTrailerLines += 1 + possibleContinuationLines
                possibleContinuationLines = 0
            }
        }
        let blankBefore: Bool = {
            let ll = lastLine(start)
            return ll >= 0 && isBlankLine(ll)
        }()
        return Location(messageEnd: messageEnd, start: start, end: end, blankLineBefore: blankBefore)
    }

    /// ignore_non_trailer: trailing comment lines, empty lines and an old "Conflicts:" block, and
    /// everything from a scissors line on. (git looks for the scissors line past `len` too; here only
    /// the message is searched.)
    static func ignoredTail(_ buf: UnsafeBufferPointer<UInt8>, len: Int, at: (Int) -> UInt8,
                            nextLine: (Int) -> Int, startsWith: (Int, StaticString) -> Bool) -> Int {
        var cutoff = len
        let scissors: StaticString = "# ------------------------ >8 ------------------------\n"
        if startsWith(0, scissors) { cutoff = 0 } else {
            var k = nextLine(0)
            while k < len { if startsWith(k, scissors) { cutoff = k; break }; k = nextLine(k) }
        }
        var boc = 0, bol = 0
        var inOldConflictsBlock = false
        while bol < cutoff {
            let next = min(nextLine(bol), cutoff)
            if at(bol) == UInt8(ascii: "#") || at(bol) == 0x0A {
                if boc == 0 { boc = bol }
            } else if startsWith(bol, "Conflicts:\n") {
                inOldConflictsBlock = true
                if boc == 0 { boc = bol }
            } else if inOldConflictsBlock && at(bol) == 0x09 {
                // a pathname in the conflicts block
            } else if boc != 0 {
                boc = 0
                inOldConflictsBlock = false
            }
            bol = next
        }
        return boc != 0 ? len - boc : len - cutoff
    }

    /// find_separator: "<token><optional blanks>:", token of letters, digits and '-'; -1 if the line is not one.
    static func separator(at k: Int, _ at: (Int) -> UInt8) -> Int {
        var whitespace = false
        var n = k
        while true {
            let c = at(n)
            if c == 0 { return -1 }
            if c == UInt8(ascii: ":") { return n - k }
            if !whitespace && (gitIsAlnum(c) || c == UInt8(ascii: "-")) { n += 1; continue }
            if n != k && (c == 0x20 || c == 0x09) { whitespace = true; n += 1; continue }
            return -1
        }
    }

    /// The block's trailers as `--parse` prints them: continuation lines joined, values unfolded and trimmed.
    static func parse(_ buf: UnsafeBufferPointer<UInt8>, _ loc: Location) -> [PatchFile.Trailer] {
        guard loc.end > loc.start else { return [] }
        func at(_ k: Int) -> UInt8 { k < loc.end ? buf[k] : 0 }
        var items: [[UInt8]] = []
        var lastIsTrailer = false
        var k = loc.start
        while k < loc.end {
            var e = k
            while e < loc.end && buf[e] != 0x0A { e += 1 }
            if e < loc.end { e += 1 }
            let line = Array(UnsafeBufferPointer(rebasing: buf[k..<e]))
            if lastIsTrailer, let first = line.first, gitIsSpace(first), !items.isEmpty {
                items[items.count - 1] += line
            } else {
                items.append(line)
                lastIsTrailer = line.withUnsafeBufferPointer { lb in
                    separator(at: 0, { $0 < lb.count ? lb[$0] : 0 }) >= 1
                }
            }
            k = e
        }
        var out: [PatchFile.Trailer] = []
        for item in items where item.first != UInt8(ascii: "#") {
            let sep = item.withUnsafeBufferPointer { lb in separator(at: 0, { $0 < lb.count ? lb[$0] : 0 }) }
            guard sep >= 1 else { continue }
            let key = trim(item[0..<sep])
            let value = unfold(trim(item[(sep + 1)...]))
            out.append(.init(key: String(decoding: key, as: UTF8.self), value: String(decoding: value, as: UTF8.self)))
        }
        return out
    }

    static func trim(_ s: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var a = s.startIndex, b = s.endIndex
        while a < b && gitIsSpace(s[a]) { a += 1 }
        while b > a && gitIsSpace(s[b - 1]) { b -= 1 }
        return s[a..<b]
    }

    /// unfold_value: a newline and the whitespace after it become one space.
    static func unfold(_ s: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        guard s.contains(0x0A) else { return s }
        var out: [UInt8] = []
        var n = s.startIndex
        while n < s.endIndex {
            let c = s[n]
            n += 1
            if c == 0x0A {
                while n < s.endIndex && gitIsSpace(s[n]) { n += 1 }
                out.append(0x20)
            } else {
                out.append(c)
            }
        }
        return trim(out[...])
    }
}
