import Foundation

/// Text edits on a format-patch mail's trailer block, placed where `git interpret-trailers` reads and
/// writes it (`TrailerBlock`): a new trailer goes at the end of the block, or into a new paragraph when
/// the message has no block.
package enum TrailerEdit {
    /// Whether the mail has format-patch's `---` line between the message and its first diff.
    package static func hasDivider(_ data: Data) -> Bool {
        var sawDivider = false
        for line in data.split(separator: 0x0A, omittingEmptySubsequences: false) {
            if line.starts(with: Array("diff --git ".utf8)) { return sawDivider }
            if line.elementsEqual(Array("---".utf8)) || line.elementsEqual(Array("---\r".utf8)) { sawDivider = true }
        }
        return sawDivider
    }

    /// The line of a NUL byte in the message (before the first diff), if any: git reads a message only up to
    /// its first NUL, so trailers written after one would be invisible to it (found by FuzzTrailer).
    package static func nulLineInMessage(_ data: Data) -> Int? {
        var line = 1
        for chunk in data.split(separator: 0x0A, omittingEmptySubsequences: false) {
            if chunk.starts(with: Array("diff --git ".utf8)) { return nil }
            if chunk.contains(0) { return line }
            line += 1
        }
        return nil
    }

    static func locate(_ data: Data) -> TrailerBlock.Location {
        data.withUnsafeBytes { TrailerBlock.locate($0.bindMemory(to: UInt8.self)) }
    }

    /// Replaces the value of the trailer `key`, which must occur exactly once in the trailer block
    /// (continuation lines of the old value go with it).
    package static func replace(_ key: String, with value: String, in data: Data) -> Data? {
        let loc = locate(data)
        guard loc.end > loc.start else { return nil }
        let bytes = [UInt8](data)
        let wanted = key.lowercased()
        var matches: [Range<Int>] = []
        var k = loc.start
        while k < loc.end {
            var e = k
            while e < loc.end && bytes[e] != 0x0A { e += 1 }
            if e < loc.end { e += 1 }
            let sep = bytes.withUnsafeBufferPointer { b in TrailerBlock.separator(at: k, { $0 < e ? b[$0] : 0 }) }
            if sep >= 1, String(decoding: TrailerBlock.trim(bytes[k..<(k + sep)]), as: UTF8.self).lowercased() == wanted {
                var stop = e
                while stop < loc.end && gitIsSpace(bytes[stop]) && bytes[stop] != 0x0A {
                    while stop < loc.end && bytes[stop] != 0x0A { stop += 1 }
                    if stop < loc.end { stop += 1 }
                }
                matches.append(k..<stop)
            }
            k = e
        }
        guard matches.count == 1, let r = matches.first else { return nil }
        var out = Data(bytes[..<r.lowerBound])
        out.append(contentsOf: Array("\(key): \(value)\n".utf8))
        out.append(contentsOf: bytes[r.upperBound...])
        return out
    }

    /// Why trailers cannot be appended so that git reads them.
    package enum AppendRefusal: Error, Equatable, Sendable {
        /// No format-patch `---` line ends the message.
        case noDivider
        /// A NUL byte on this line of the message: git stops reading there.
        case nulByte(line: Int)
        /// Placed where git puts them, they would still not read back as the trailer block: git skips the message's
        /// last paragraphs (an old `Conflicts:` list, comments) and the title cannot hold trailers (found by FuzzTrailer).
        case wouldNotReadBack
    }

    /// Appends trailers to the trailer block as `git interpret-trailers --trailer` does: after the block's
    /// last line, or, when the message has no block, in a new paragraph above the `---` divider. The result is read
    /// back: trailers that git would not see as the message's last trailers are refused, never written.
    package static func appending(_ trailers: [(String, String)], to data: Data) -> Result<Data, AppendRefusal> {
        guard hasDivider(data) else { return .failure(.noDivider) }
        if let line = nulLineInMessage(data) { return .failure(.nulByte(line: line)) }
        let loc = locate(data)
        var out = Data(data.prefix(loc.end))
        if !loc.blankLineBefore { out.append(0x0A) }   // no block: start a new paragraph
        for (key, value) in trailers { out.append(contentsOf: Array("\(key): \(value)\n".utf8)) }
        out.append(data.dropFirst(loc.end))
        let reread = PatchFile(bytes: out).trailers.suffix(trailers.count)
        guard reread.count == trailers.count,
              zip(reread, trailers).allSatisfy({ $0.key == $1.0 && $0.value == $1.1 }) else { return .failure(.wouldNotReadBack) }
        return .success(out)
    }

    /// `appending`, for callers that only need to know whether it worked.
    package static func append(_ trailers: [(String, String)], to data: Data) -> Data? {
        try? appending(trailers, to: data).get()   // the reason is dropped on purpose; `appending` gives it
    }
}

/// Text edits on manifests that keep every comment and the order of untouched lines: a path is rewritten in place
/// at its exact line and column; a dropped entry takes its own lines (a mapping entry all of them), and in a flow
/// list (`[a, b]`) only its item and one separating comma.
package enum ManifestEdit {
    package static func rewrite(_ data: Data, selectors: [(Manifest.Selector, String?)]) -> Data? {
        // Not String(data:encoding:), which drops a leading byte-order mark: the rest of the file is kept byte for byte.
        guard let text = String(validating: data, as: UTF8.self) else { return nil }
        var ls = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var drop = Set<Int>()
        // Right to left within a line, so an earlier edit does not move a later column.
        for (sel, replacement) in selectors.sorted(by: { ($0.0.line, $0.0.column) > ($1.0.line, $1.0.column) }) {
            let i = sel.line - 1
            guard ls.indices.contains(i) else { return nil }
            let line = ls[i]
            let from = line.index(line.startIndex, offsetBy: min(max(0, sel.column - 1), line.count))
            guard let r = line.range(of: sel.raw, range: from..<line.endIndex) else { return nil }
            if let replacement {
                ls[i] = line.replacingCharacters(in: r, with: replacement)
            } else if !sel.ownsLine && sel.lines.count > 1 {
                for l in sel.lines { drop.insert(l - 1) }
            } else if sel.ownsLine {
                drop.insert(i)
            } else {
                // a flow-list item: remove it, its closing quote, a trailing "/" and one separating comma
                var lo = r.lowerBound, hi = r.upperBound
                if hi < line.endIndex, line[hi] == "/" { hi = line.index(after: hi) }
                if lo > line.startIndex, hi < line.endIndex, ["\"", "'"].contains(line[line.index(before: lo)]), line[hi] == line[line.index(before: lo)] {
                    lo = line.index(before: lo); hi = line.index(after: hi)
                }
                var after = hi
                while after < line.endIndex, line[after] == " " { after = line.index(after: after) }
                if after < line.endIndex, line[after] == "," {
                    hi = line.index(after: after)
                    while hi < line.endIndex, line[hi] == " " { hi = line.index(after: hi) }
                } else {
                    var before = lo
                    while before > line.startIndex, line[line.index(before: before)] == " " { before = line.index(before: before) }
                    if before > line.startIndex, line[line.index(before: before)] == "," { lo = line.index(before: before) }
                }
                ls[i] = String(line[..<lo] + line[hi...])
            }
        }
        ls = ls.enumerated().filter { !drop.contains($0.offset) }.map(\.element)
        return Data(ls.joined(separator: "\n").utf8)
    }
}
