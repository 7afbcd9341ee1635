import Foundation

/// The managed block of `/boot/extlinux/extlinux.conf` for one kernel suffix (seed: `>>> linux-<suffix> (managed)
/// >>>` … `<<< linux-<suffix> (managed) <<<`). Editing replaces the block, or inserts it, and leaves every byte
/// outside it as it was.
///
/// U-Boot's extlinux reader (pxe_utils) and the box's boot shim take the last `DEFAULT` line, so a block that sits
/// after the file's own `DEFAULT` and carries `DEFAULT linux-<suffix>` boots the new kernel while the stock entry
/// stays in the menu, untouched, as the fallback (`install.mode: alongside`).
package struct ExtlinuxBlock: Sendable, Equatable {
    package let suffix: String
    package let label: String
    package let menuLabel: String
    package let kernel: String
    package let initrd: String
    package let fdt: String?
    package let fdtdir: String?
    package let append: String?

    package init(suffix: String, menuLabel: String, kernel: String, initrd: String, fdt: String?, fdtdir: String?, append: String?) {
        self.suffix = suffix; label = "linux-\(suffix)"; self.menuLabel = menuLabel
        self.kernel = kernel; self.initrd = initrd; self.fdt = fdt; self.fdtdir = fdtdir; self.append = append
    }

    package var begin: String { ">>> linux-\(suffix) (managed) >>>" }
    package var end: String { "<<< linux-\(suffix) (managed) <<<" }

    /// The block's lines, markers included (as comments, which extlinux ignores).
    package var lines: [String] {
        var out = ["# \(begin)", "# written by kernel-agent; edits inside this block are replaced at the next install",
                   "DEFAULT \(label)", "", "LABEL \(label)", "    MENU LABEL \(menuLabel)",
                   "    LINUX \(kernel)", "    INITRD \(initrd)"]
        if let fdt { out.append("    FDT \(fdt)") } else if let fdtdir { out.append("    FDTDIR \(fdtdir)") }
        if let append, !append.isEmpty { out.append("    APPEND \(append)") }
        out.append("# \(end)")
        return out
    }

    package enum EditError: Error, Equatable, CustomStringConvertible {
        case unbalanced(String)
        case notUTF8
        package var description: String {
            switch self {
            case let .unbalanced(why): return why
            case .notUTF8: return "is not UTF-8 text"
            }
        }
    }

    /// `conf` with this block replaced (where it was) or inserted: before the first `LABEL` line, so it follows the
    /// file's own `DEFAULT`; at the end when there is no label. Bytes outside the block are kept as they were.
    package func apply(to conf: Data) throws -> Data {
        guard let text = String(data: conf, encoding: .utf8) else { throw EditError.notUTF8 }
        // Lines with their terminators, so what is kept is kept byte for byte ("\r\n" too).
        var parts: [Substring] = []
        var start = text.startIndex
        while start < text.endIndex {
            let nl = text[start...].firstIndex(where: Self.isLineEnd).map { text.index(after: $0) } ?? text.endIndex
            parts.append(text[start..<nl]); start = nl
        }
        func content(_ l: Substring) -> String { l.trimmingCharacters(in: .whitespacesAndNewlines) }
        let begins = parts.indices.filter { content(parts[$0]) == "# \(begin)" }
        let ends = parts.indices.filter { content(parts[$0]) == "# \(end)" }
        let eol = text.contains("\r\n") ? "\r\n" : "\n"
        let block = rendered(eol: eol)
        switch (begins.count, ends.count) {
        case (1, 1) where begins[0] < ends[0]:
            let before = parts[..<begins[0]].joined(), after = parts[(ends[0] + 1)...].joined()
            return Data((before + block + after).utf8)
        case (0, 0):
            let firstLabel = parts.firstIndex { content($0).lowercased().hasPrefix("label ") || content($0).lowercased() == "label" }
            if let firstLabel {
                return Data((parts[..<firstLabel].joined() + block + eol + parts[firstLabel...].joined()).utf8)
            }
            let head = text.last.map(Self.isLineEnd) ?? true ? text : text + eol
            return Data((head + block).utf8)
        default:
            throw EditError.unbalanced("has \(begins.count) '# \(begin)' and \(ends.count) '# \(end)' line(s) (want one of each, in order)")
        }
    }

    /// "\r\n" is one Character in Swift, so "\n" alone does not find it.
    static func isLineEnd(_ c: Character) -> Bool { c == "\n" || c == "\r\n" }

    func rendered(eol: String) -> String { lines.map { $0 + eol }.joined() }

    /// The block's text in `conf`, markers included, or nil when it has none.
    package func find(in conf: Data) -> String? {
        guard let text = String(data: conf, encoding: .utf8),
              let b = text.range(of: "# \(begin)"), let e = text.range(of: "# \(end)", range: b.upperBound..<text.endIndex) else { return nil }
        return String(text[b.lowerBound..<e.upperBound])
    }

    /// `conf` without the block (what the file was before `apply`, when apply inserted it).
    package func remove(from conf: Data) throws -> Data {
        guard let text = String(data: conf, encoding: .utf8) else { throw EditError.notUTF8 }
        guard let b = text.range(of: "# \(begin)"), let e = text.range(of: "# \(end)", range: b.upperBound..<text.endIndex) else { return conf }
        let lineStart = text[..<b.lowerBound].lastIndex(where: Self.isLineEnd).map { text.index(after: $0) } ?? text.startIndex
        var lineEnd = text[e.upperBound...].firstIndex(where: Self.isLineEnd).map { text.index(after: $0) } ?? text.endIndex
        // apply inserted one blank line after the block, before the first label
        if let next = text[lineEnd...].first, Self.isLineEnd(next) { lineEnd = text.index(after: lineEnd) }
        return Data((text[..<lineStart] + text[lineEnd...]).utf8)
    }
}
