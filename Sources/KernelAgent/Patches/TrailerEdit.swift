import Foundation

/// Text edits on a format-patch mail's trailer block (the last paragraph above the `---` divider).
public enum TrailerEdit {
    static func lines(_ data: Data) -> [Substring]? {
        guard let text = String(data: data, encoding: .utf8) else { return nil }
        return text.split(separator: "\n", omittingEmptySubsequences: false)
    }

    /// Index of the `---` line that ends the commit message, if the mail has one.
    static func divider(_ lines: [Substring]) -> Int? {
        let firstDiff = lines.firstIndex { $0.hasPrefix("diff --git ") } ?? lines.count
        return lines[..<firstDiff].lastIndex { $0 == "---" }
    }

    /// Replaces the value of the trailer `key` (which must occur once in the trailer block).
    public static func replace(_ key: String, with value: String, in data: Data) -> Data? {
        guard var ls = lines(data), let d = divider(ls) else { return nil }
        guard let i = ls[..<d].lastIndex(where: { $0.lowercased().hasPrefix(key.lowercased() + ":") }) else { return nil }
        ls[i] = Substring("\(key): \(value)")
        return Data(ls.joined(separator: "\n").utf8)
    }

    /// Appends trailers to the trailer block, opening a new paragraph if the message has none.
    public static func append(_ trailers: [(String, String)], to data: Data) -> Data? {
        guard var ls = lines(data), let d = divider(ls) else { return nil }
        var end = d
        while end > 0, ls[end - 1].trimmingCharacters(in: .whitespaces).isEmpty { end -= 1 }
        var start = end
        while start > 0, !ls[start - 1].trimmingCharacters(in: .whitespaces).isEmpty { start -= 1 }
        let isTrailerBlock = start > 0 && end > start && ls[start..<end].allSatisfy { l in
            if l.first == " " || l.first == "\t" { return true }
            guard let c = l.firstIndex(of: ":"), c > l.startIndex else { return false }
            return l[..<c].allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" }
        }
        var insert = trailers.map { Substring("\($0.0): \($0.1)") }
        if !isTrailerBlock { insert.insert("", at: 0) }
        ls.insert(contentsOf: insert, at: end)
        return Data(ls.joined(separator: "\n").utf8)
    }
}

/// Text edits on manifests that keep every comment and the order of untouched lines: a path is rewritten in place
/// at its exact line and column; a dropped entry takes its own lines (a mapping entry all of them), and in a flow
/// list (`[a, b]`) only its item and one separating comma.
public enum ManifestEdit {
    public static func rewrite(_ data: Data, selectors: [(Manifest.Selector, String?)]) -> Data? {
        guard let text = String(data: data, encoding: .utf8) else { return nil }
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
