import Foundation

/// Apply check of a resolved series against a baseline tree, in process and in memory: the tree is only read.
/// Each file diff is applied the way GNU patch 2.7 (`patch -p1 -N --batch -F2`) applies it (locate_hunk,
/// apply_hunk, copy_till in patch.c), so the per-patch verdict is what GNU patch would say:
/// ok and offset apply at fuzz 0 (what `patch -F0` accepts), fuzz needs fuzz 1–2, failed does not apply.
package enum ApplyStatus: String, Sendable, Comparable, CaseIterable {
    case ok, offset, fuzz
    case missingFile = "missing-file"
    case failed

    var severity: Int { Self.allCases.firstIndex(of: self) ?? 0 }
    package static func < (a: ApplyStatus, b: ApplyStatus) -> Bool { a.severity < b.severity }
    /// Offsets are reported but accepted; everything past them refuses the lock.
    package var passes: Bool { self <= .offset }
}

/// What happened to one hunk, in GNU patch's terms.
package struct HunkOutcome: Sendable, Equatable {
    package enum Kind: Sendable, Equatable {
        case exact
        case offset(Int)
        case fuzz(Int, offset: Int)
        /// Not found at fuzz 0–2.
        case failed
        /// Found, but before the previous hunk's change ("misordered hunks"): GNU fails it.
        case misordered
        /// The file's first hunk applies in reverse: the patch looks applied already, and `-N` skips the file.
        case reversed
        /// Skipped with the rest of its file.
        case ignored
        /// The file to patch does not exist.
        case missingFile
    }
    package let file: String
    /// 1-based, within its file diff (GNU's "Hunk #N").
    package let number: Int
    package let kind: Kind
    /// The line GNU patch names: where it applied, or where it was expected, in the patched file.
    package let line: Int

    package var status: ApplyStatus {
        switch kind {
        case .exact: return .ok
        case .offset: return .offset
        case .fuzz: return .fuzz
        case .missingFile: return .missingFile
        case .failed, .misordered, .reversed, .ignored: return .failed
        }
    }
}

package struct ApplyReport: Sendable {
    package struct Item: Sendable {
        package let path: String
        package let status: ApplyStatus
        /// Notes in patch order, each with the status it stands for.
        package let notes: [(status: ApplyStatus, text: String)]
        package let hunks: [HunkOutcome]
        package var details: [String] { notes.map(\.text) }
        /// The first note that explains the status (the failing hunk, not an earlier offset).
        package var cause: String? { notes.first { $0.status == status }?.text ?? notes.first?.text }
    }
    package let tree: String
    package let items: [Item]
    package var passed: Bool { items.allSatisfy { $0.status.passes } }
    package var failures: [Item] { items.filter { !$0.status.passes } }

    package func count(_ s: ApplyStatus) -> Int { items.filter { $0.status == s }.count }

    package var summary: String { Self.summary(count) }

    package func render(manifest: String) -> String {
        let width = Self.width(items.lazy.map(\.path))
        var out = Self.header(manifest: manifest, tree: tree, width: width)
        for (i, item) in items.enumerated() { out += Self.lines(item, number: i + 1, width: width) }
        return out + Self.footer(summary: summary, passed: passed)
    }

    /// A refusal short enough to read: the counts, the first few failing patches with their cause, and
    /// where the full report is.
    package func refusalLines(reportPath: String, limit: Int = 5) -> String {
        Self.refusalLines(failures: failures, total: items.count, summary: summary, reportPath: reportPath, limit: limit)
    }

    // The report's text, in pieces, so the streamed check writes the same bytes as `render`.

    static func summary(_ count: (ApplyStatus) -> Int) -> String {
        ApplyStatus.allCases.map { "\(count($0)) \($0.rawValue)" }.joined(separator: ", ")
    }

    static func width<S: Sequence>(_ paths: S) -> Int where S.Element: StringProtocol { max(5, paths.map(\.count).max() ?? 0) }

    static func header(manifest: String, tree: String, width: Int) -> String {
        "# kernel-agent apply check: \(manifest) against \(tree) (GNU patch rules; offsets allowed, fuzz not)\n"
            + "#   " + "patch".padding(toLength: width, withPad: " ", startingAt: 0) + "  status\n"
    }

    static func lines(_ item: Item, number: Int, width: Int) -> String {
        let n = String(number).padding(toLength: 3, withPad: " ", startingAt: 0)
        var out = "\(n) " + item.path.padding(toLength: width, withPad: " ", startingAt: 0) + "  \(item.status.rawValue)\n"
        for d in item.details { out += "      \(d)\n" }
        return out
    }

    static func footer(summary: String, passed: Bool) -> String {
        "summary: \(summary)\nresult: \(passed ? "PASS" : "FAIL")\n"
    }

    static func refusalLines(failures: [Item], total: Int, summary: String, reportPath: String, limit: Int) -> String {
        var text = "apply check failed for \(failures.count) of \(total) patch(es): \(summary)"
        for f in failures.prefix(limit) {
            text += "\n    \(f.path): \(f.status.rawValue)" + (f.cause.map { " — \($0)" } ?? "")
        }
        if failures.count > limit { text += "\n    … \(failures.count - limit) more in \(reportPath)" }
        return text
    }
}

/// The apply check of a streamed series: its report went to a file as it was made, and only the counts and the
/// patches that do not pass are kept.
package struct StreamedApplyReport: Sendable {
    package let total: Int
    /// Per status, in `ApplyStatus.allCases` order.
    let counts: [Int]
    package let failures: [ApplyReport.Item]
    package var passed: Bool { failures.isEmpty }
    package func count(_ s: ApplyStatus) -> Int { ApplyStatus.allCases.firstIndex(of: s).map { counts[$0] } ?? 0 }
    package var summary: String { ApplyReport.summary(count) }
    package func refusalLines(reportPath: String, limit: Int = 5) -> String {
        ApplyReport.refusalLines(failures: failures, total: total, summary: summary, reportPath: reportPath, limit: limit)
    }
}

package struct ApplyChecker {
    /// A line with its '\n' (a file's last line may lack it, and so may a hunk line marked "\ No newline").
    typealias Line = ArraySlice<UInt8>

    let tree: URL
    /// nil value = known not to exist (deleted, or absent from the tree)
    private var files: [String: [Line]?] = [:]

    package init(tree: URL) { self.tree = tree }

    /// GNU patch's default maximum fuzz (-F2): enough to tell "fuzz" from "failed".
    static let maxFuzz = 2

    package static func check(_ entries: [Resolution.Entry], tree: URL, display: String) -> ApplyReport {
        var checker = ApplyChecker(tree: tree)
        let items = entries.map { checker.apply($0.path.value, $0.patch) }
        return ApplyReport(tree: display, items: items)
    }

    /// The apply check of a scanned series, each patch read back from the staged cumulative (the bytes that will
    /// be published), parsed on worker threads and applied in order. A file is dropped after the last patch that
    /// touches it, and the report is written to `report` as it is made (the text `ApplyReport.render` gives), so
    /// memory holds the files still to be patched again and the failures, not the whole series.
    static func check(_ series: ScannedSeries, cumulative: StagedFile, tree: URL, display: String, manifest: String,
                      report: inout FileSink) throws -> StreamedApplyReport {
        var checker = ApplyChecker(tree: tree)
        var counts = [Int](repeating: 0, count: ApplyStatus.allCases.count)
        var failures: [ApplyReport.Item] = []
        let width = ApplyReport.width((0..<series.count).lazy.map { series.path($0) })
        try report.write(ApplyReport.header(manifest: manifest, tree: display, width: width))
        try OrderedPipeline.run(count: series.count, produce: { i -> Result<PatchFile, KAError> in
            let r = series.pieceRange(i)
            do { return .success(PatchFile(bytes: Data(try cumulative.read(at: r.lowerBound, count: r.count)), hashing: false)) }
            catch let e as KAError { return .failure(e) }
            catch { return .failure(KAError.failure(cumulative.shown, "\(error)", cause: error)) }
        }, consume: { i, result in
            let name = String(series.path(i))
            let patch = try result.get()
            let item: ApplyReport.Item
            if let p = patch.problem {
                // the piece is the patch less its trailing signature; a cut that breaks it breaks the cumulative
                item = .init(path: name, status: .failed, notes: [(.failed, "its copy in the cumulative does not parse (line \(p.line) of the copy): \(p.message)")], hunks: [])
            } else {
                item = Timings.measure("apply") { checker.apply(name, patch) }
            }
            for f in patch.files {
                for key in [f.targetPath, f.path] where (series.lastUse[key] ?? i) <= i { checker.forget(key) }
            }
            counts[item.status.severity] += 1
            if !item.status.passes { failures.append(item) }
            try report.write(ApplyReport.lines(item, number: i + 1, width: width))
        })
        let result = StreamedApplyReport(total: series.count, counts: counts, failures: failures)
        try report.write(ApplyReport.footer(summary: result.summary, passed: result.passed))
        return result
    }

    /// Drops what the checker holds of `path` (its patched text, or that it is missing): no later patch touches it.
    mutating func forget(_ path: String) { files[path] = nil }

    private mutating func state(_ path: String) -> [Line]? {
        if let s = files[path] { return s }
        var result: [Line]?
        if let data = FileManager.default.contents(atPath: tree.appendingPathComponent(path).path) {
            result = Self.split(Array(data))
        }
        files[path] = .some(result)
        return result
    }

    static func split(_ bytes: [UInt8]) -> [Line] {
        var out: [Line] = []
        var start = 0
        for i in bytes.indices where bytes[i] == 0x0A {
            out.append(bytes[start...i]); start = i + 1
        }
        if start < bytes.count { out.append(bytes[start...]) }
        return out
    }

    mutating func apply(_ name: String, _ patch: PatchFile) -> ApplyReport.Item {
        var worst = ApplyStatus.ok
        var notes: [(status: ApplyStatus, text: String)] = []
        var outcomes: [HunkOutcome] = []
        func note(_ s: ApplyStatus, _ text: String) { worst = max(worst, s); notes.append((s, text)) }
        let bytes = Array(patch.bytes)
        for f in patch.files {
            if f.isBinary { note(.failed, "\(f.path): binary patch, cannot be checked"); continue }
            let target = f.targetPath
            var run = FileRun(input: [])
            if f.oldPath == nil {
                if let existing = state(target), !existing.isEmpty {
                    note(.failed, "\(target): the patch creates it, but it exists already")
                    outcomes += f.hunks.indices.map { HunkOutcome(file: target, number: $0 + 1, kind: .ignored, line: f.hunks[$0].newStart) }
                    continue
                }
            } else if state(target) != nil, case var .some(.some(lines)) = files.removeValue(forKey: target) {
                // the run owns the lines alone, so finish() edits them in place
                swap(&run.input, &lines)
            } else {
                note(.missingFile, "\(target): missing file")
                outcomes += f.hunks.indices.map { HunkOutcome(file: target, number: $0 + 1, kind: .missingFile, line: f.hunks[$0].oldStart) }
                continue
            }
            for (hi, h) in f.hunks.enumerated() {
                let outcome = run.apply(Self.hunkLines(bytes, h), h, number: hi + 1, file: f.path)
                outcomes.append(outcome)
                let label = "\(f.path) hunk \(hi + 1) (@@ -\(h.oldStart),\(h.oldCount))"
                switch outcome.kind {
                case .exact: break
                case let .offset(n): note(.offset, "\(label): offset \(n > 0 ? "+" : "")\(n) lines (at line \(outcome.line))")
                case let .fuzz(fz, n): note(.fuzz, "\(label): applies only with fuzz \(fz) (offset \(n), at line \(outcome.line))")
                case .failed: note(.failed, "\(label): does not apply, even with fuzz 2 (context or removed lines not found near line \(outcome.line))")
                case .misordered: note(.failed, "\(label): its text is found only before the previous hunk's change (GNU patch: misordered hunks)")
                case .reversed: note(.failed, "\(label): the patch seems applied already (this hunk applies in reverse); GNU patch -N skips the file")
                case .ignored, .missingFile: break
                }
            }
            if run.skipped {   // GNU leaves the file as it was
                if f.oldPath != nil { files[target] = .some(run.input) }
                continue
            }
            let output = run.finish()
            if f.newPath == nil {
                if !output.isEmpty { note(.failed, "\(target): deletion leaves \(output.count) lines") }
                files[target] = .some(nil)
            } else {
                if let np = f.newPath, np != target { files[target] = .some(nil) }
                files[f.newPath ?? target] = .some(output)
            }
        }
        return .init(path: name, status: worst, notes: notes, hunks: outcomes)
    }

    struct HunkLines {
        /// Context and removed lines (GNU's pattern), each with its kind (' ' or '-').
        var old: [(UInt8, Line)] = []
        /// Context and added lines (GNU's replacement), each with its kind (' ' or '+').
        var new: [(UInt8, Line)] = []
    }

    /// A hunk body split into GNU's pattern and replacement. A line keeps its newline unless a
    /// "\ No newline at end of file" marker follows it; an empty body line is an empty context line.
    static func hunkLines(_ bytes: [UInt8], _ h: PatchFile.Hunk) -> HunkLines {
        var out = HunkLines()
        out.old.reserveCapacity(min(h.oldCount, h.body.count))
        out.new.reserveCapacity(min(h.newCount, h.body.count))
        var start = h.body.lowerBound
        let end = min(h.body.upperBound, bytes.count)
        while start < end {
            var e = start
            while e < end && bytes[e] != 0x0A { e += 1 }
            let lineEnd = min(e + 1, end)
            let kind = bytes[start]
            var text: Line = kind == 0x0A ? bytes[start..<lineEnd] : bytes[(start + 1)..<lineEnd]
            if lineEnd < end, bytes[lineEnd] == UInt8(ascii: "\\"), text.last == 0x0A { text = text.dropLast() }
            switch kind {
            case 0x0A, 0x20: out.old.append((0x20, text)); out.new.append((0x20, text))
            case UInt8(ascii: "-"): out.old.append((kind, text))
            case UInt8(ascii: "+"): out.new.append((kind, text))
            default: break   // "\ No newline at end of file"
            }
            start = lineEnd
        }
        return out
    }

    /// One file diff applied to one file, GNU patch style: hunks are located in the input (the file as the
    /// diff found it), and the output is copied from the input up to each change.
    struct FileRun {
        var input: [Line]
        /// Where each applied hunk replaces input lines [range] with new ones, in increasing order. Applied at
        /// the end, last first, in place: GNU copies the input into a new file; the effect is the same.
        var edits: [(range: Range<Int>, lines: [Line])] = []
        /// Input lines 1...lastFrozen are copied or consumed (GNU's last_frozen_line).
        var lastFrozen = 0
        /// How far the hunks were found from where their headers say (GNU's in_offset).
        var inOffset = 0
        /// Lines added minus lines removed so far (GNU's out_offset).
        var outOffset = 0
        var hunksSeen = 0
        var skipped = false

        init(input: [Line]) { self.input = input }

        mutating func apply(_ lines: HunkLines, _ h: PatchFile.Hunk, number: Int, file: String) -> HunkOutcome {
            hunksSeen += 1
            let first = h.oldCount == 0 ? h.oldStart + 1 : h.oldStart
            if skipped { return HunkOutcome(file: file, number: number, kind: .ignored, line: first + outOffset) }
            let prefix = h.leadingContext, suffix = h.trailingContext
            let maxFuzz = min(ApplyChecker.maxFuzz, max(prefix, suffix))
            var fuzz = 0
            var whereFound = 0
            while true {
                whereFound = locate(lines.old, first: first, prefix: prefix, suffix: suffix, fuzz: fuzz)
                if whereFound == 0 && hunksSeen == 1 {
                    // dwim for a reversed patch: GNU tries the swapped hunk; with -N a match skips the file
                    var probe = self
                    let newFirst = h.newCount == 0 ? h.newStart + 1 : h.newStart
                    if probe.locate(lines.new, first: newFirst, prefix: prefix, suffix: suffix, fuzz: fuzz) != 0 {
                        skipped = true
                        return HunkOutcome(file: file, number: number, kind: .reversed, line: first + outOffset)
                    }
                }
                if whereFound != 0 { break }
                fuzz += 1
                if fuzz > maxFuzz { break }
            }
            guard whereFound != 0 else { return HunkOutcome(file: file, number: number, kind: .failed, line: first + outOffset) }
            let at = whereFound + outOffset
            guard applyHunk(lines, h, at: whereFound) else { return HunkOutcome(file: file, number: number, kind: .misordered, line: at) }
            let kind: HunkOutcome.Kind = fuzz > 0 ? .fuzz(fuzz, offset: inOffset) : inOffset != 0 ? .offset(inOffset) : .exact
            return HunkOutcome(file: file, number: number, kind: kind, line: at)
        }

        /// The patched file. Takes the input's storage: with no other reference left it is edited in place.
        mutating func finish() -> [Line] {
            var out: [Line] = []
            swap(&out, &input)
            for e in edits.reversed() { out.replaceSubrange(e.range, with: e.lines) }
            edits = []
            return out
        }

        /// GNU patch 2.7's locate_hunk: the 1-based input line for the pattern's first line, or 0.
        /// A side with less context than the other must sit at that end of the file; the search starts at
        /// the expected line, tries +n before -n, and keeps within [last frozen line, end of file].
        mutating func locate(_ pattern: [(UInt8, Line)], first: Int, prefix: Int, suffix: Int, fuzz: Int) -> Int {
            let inputLines = input.count
            let firstGuess = first + inOffset
            let patLines = pattern.count
            let context = max(prefix, suffix)
            var prefixFuzz = fuzz + prefix - context
            let suffixFuzz = fuzz + suffix - context
            let maxWhere = inputLines - (patLines - suffixFuzz) + 1
            let minWhere = lastFrozen + 1
            let maxPosOffset = maxWhere - firstGuess
            var maxNegOffset = firstGuess - minWhere
            let maxOffset = max(maxPosOffset, maxNegOffset)
            if patLines == 0 { return firstGuess }   // an empty pattern matches anywhere
            if firstGuess <= maxNegOffset { maxNegOffset = firstGuess - 1 }
            if prefixFuzz < 0 && first <= 1 {
                // only the start of the file will do (and, with too little suffix context, the whole file)
                if suffixFuzz < 0 && (patLines != inputLines || prefix < lastFrozen) { return 0 }
                let offset = 1 - firstGuess
                if lastFrozen <= prefix && offset <= maxPosOffset && matches(pattern, at: firstGuess + offset, prefixFuzz: 0, suffixFuzz: suffixFuzz) {
                    inOffset += offset
                    return firstGuess + offset
                }
                return 0
            } else if prefixFuzz < 0 {
                prefixFuzz = 0
            }
            if suffixFuzz < 0 {
                // only the end of the file will do
                let offset = firstGuess - (inputLines - patLines + 1)
                if offset <= maxNegOffset && matches(pattern, at: firstGuess - offset, prefixFuzz: prefixFuzz, suffixFuzz: 0) {
                    inOffset -= offset
                    return firstGuess - offset
                }
                return 0
            }
            // GNU's own start of the search, kept as is: when the expected line lies before the last frozen
            // line it also looks below it, and a match there fails the hunk (see applyHunk).
            var offset = maxPosOffset < 0 ? firstGuess - maxWhere : maxNegOffset < 0 ? firstGuess - minWhere : 0
            while offset <= maxOffset {
                if offset <= maxPosOffset && matches(pattern, at: firstGuess + offset, prefixFuzz: prefixFuzz, suffixFuzz: suffixFuzz) {
                    inOffset += offset
                    return firstGuess + offset
                }
                if offset <= maxNegOffset && matches(pattern, at: firstGuess - offset, prefixFuzz: prefixFuzz, suffixFuzz: suffixFuzz) {
                    inOffset -= offset
                    return firstGuess - offset
                }
                offset += 1
            }
            return 0
        }

        /// patch_match: the pattern, less `prefixFuzz` lines at the top and `suffixFuzz` at the bottom,
        /// equals the input at 1-based line `base` (lines outside the input never match).
        func matches(_ pattern: [(UInt8, Line)], at base: Int, prefixFuzz: Int, suffixFuzz: Int) -> Bool {
            var p = prefixFuzz
            var i = base + prefixFuzz - 1
            let end = pattern.count - suffixFuzz
            while p < end {
                guard i >= 0, i < input.count, Self.equal(input[i], pattern[p].1) else { return false }
                p += 1
                i += 1
            }
            return true
        }

        static func equal(_ a: Line, _ b: Line) -> Bool {
            guard a.count == b.count else { return false }
            return a.withUnsafeBufferPointer { pa in
                b.withUnsafeBufferPointer { pb in
                    guard let x = pa.baseAddress, let y = pb.baseAddress else { return true }
                    return memcmp(x, y, pa.count) == 0
                }
            }
        }

        /// apply_hunk with copy_till: GNU copies the input up to each change, drops removed lines and writes added
        /// ones. Copying up to the first change fails when that change lies before the last frozen line
        /// ("misordered hunks"); later copies cannot, so that is the only check. Only fuzzed context differs
        /// between the hunk and the file, and context stays as the file has it; so the lines from the first to the
        /// last change become the hunk's new lines there.
        mutating func applyHunk(_ lines: HunkLines, _ h: PatchFile.Hunk, at whereFound: Int) -> Bool {
            let base = whereFound - 1
            let prefix = h.leadingContext, suffix = h.trailingContext
            guard lastFrozen <= base + prefix else { return false }
            let start = min(max(0, base + prefix), input.count)
            let end = min(max(start, base + lines.old.count - suffix), input.count)
            edits.append((start..<end, lines.new[prefix..<(lines.new.count - suffix)].map(\.1)))
            lastFrozen = base + lines.old.count - suffix
            outOffset += lines.new.count - lines.old.count
            return true
        }
    }
}
