import Foundation

/// Zero-fuzz apply check of a resolved series against a baseline tree, in process and in memory:
/// the tree is only read. Each hunk is located like GNU patch does (exact position, then the nearest offset,
/// then with fuzz 1–2 to tell "fuzz" from "failed"), so the per-patch report matches what `patch -F0` would say.
public enum ApplyStatus: String, Sendable, Comparable, CaseIterable {
    case ok, offset, fuzz
    case missingFile = "missing-file"
    case failed

    var severity: Int { Self.allCases.firstIndex(of: self) ?? 0 }
    public static func < (a: ApplyStatus, b: ApplyStatus) -> Bool { a.severity < b.severity }
    /// Offsets are reported but accepted; everything past them refuses the lock.
    public var passes: Bool { self <= .offset }
}

public struct ApplyReport: Sendable {
    public struct Item: Sendable {
        public let path: String
        public let status: ApplyStatus
        public let details: [String]
    }
    public let tree: String
    public let items: [Item]
    public var passed: Bool { items.allSatisfy { $0.status.passes } }
    public var failures: [Item] { items.filter { !$0.status.passes } }

    public func count(_ s: ApplyStatus) -> Int { items.filter { $0.status == s }.count }

    public var summary: String {
        ApplyStatus.allCases.map { "\(count($0)) \($0.rawValue)" }.joined(separator: ", ")
    }

    public func render(manifest: String) -> String {
        var out = "# kernel-agent apply check: \(manifest) against \(tree) (zero fuzz; offsets allowed)\n"
        let width = max(5, items.map(\.path.count).max() ?? 0)
        out += "#   " + "patch".padding(toLength: width, withPad: " ", startingAt: 0) + "  status\n"
        for (i, item) in items.enumerated() {
            let n = String(i + 1).padding(toLength: 3, withPad: " ", startingAt: 0)
            out += "\(n) " + item.path.padding(toLength: width, withPad: " ", startingAt: 0) + "  \(item.status.rawValue)\n"
            for d in item.details { out += "      \(d)\n" }
        }
        out += "summary: \(summary)\n"
        out += "result: \(passed ? "PASS" : "FAIL")\n"
        return out
    }
}

public struct ApplyChecker {
    typealias Line = ArraySlice<UInt8>

    final class FileState {
        var lines: [Line]
        init(lines: [Line]) { self.lines = lines }
    }

    let tree: URL
    private var files: [String: FileState?] = [:]   // nil value = known not to exist (deleted or absent)

    public init(tree: URL) { self.tree = tree }

    public static func check(_ entries: [Resolution.Entry], tree: URL, display: String) -> ApplyReport {
        var checker = ApplyChecker(tree: tree)
        let items = entries.map { checker.apply($0.path.value, $0.patch) }
        return ApplyReport(tree: display, items: items)
    }

    private mutating func state(_ path: String) -> FileState? {
        if let s = files[path] { return s }
        let url = tree.appendingPathComponent(path)
        var result: FileState?
        if let data = FileManager.default.contents(atPath: url.path) { result = FileState(lines: Self.split(Array(data))) }
        files[path] = result
        return result
    }

    static func split(_ bytes: [UInt8]) -> [Line] {
        var out: [Line] = []
        var start = 0
        for i in bytes.indices where bytes[i] == 0x0A {
            out.append(bytes[start..<i]); start = i + 1
        }
        if start < bytes.count { out.append(bytes[start...]) }
        return out
    }

    mutating func apply(_ name: String, _ patch: PatchFile) -> ApplyReport.Item {
        var worst = ApplyStatus.ok
        var details: [String] = []
        let bytes = Array(patch.bytes)
        for f in patch.files {
            if f.isBinary { worst = max(worst, .failed); details.append("\(f.path): binary patch, cannot be checked"); continue }
            let target = f.targetPath
            var st: FileState
            if f.oldPath == nil {
                if state(target) != nil {
                    worst = max(worst, .failed); details.append("\(target): new file already exists"); continue
                }
                st = FileState(lines: [])
            } else if let s = state(target) {
                st = s
            } else {
                worst = max(worst, .missingFile); details.append("\(target): missing file"); continue
            }
            var delta = 0
            for (hi, h) in f.hunks.enumerated() {
                let (old, new) = Self.hunkLines(bytes, h.body)
                let expected = max(0, (h.oldCount == 0 ? h.oldStart : h.oldStart - 1) + delta)
                let label = "\(f.path) hunk \(hi + 1) (@@ -\(h.oldStart),\(h.oldCount))"
                if let pos = Self.find(old, in: st.lines, near: expected) {
                    if pos != expected {
                        worst = max(worst, .offset)
                        details.append("\(label): offset \(pos - expected > 0 ? "+" : "")\(pos - expected) lines")
                    }
                    st.lines.replaceSubrange(pos..<(pos + old.count), with: new.map(\.1))
                    delta += new.count - old.count + (pos - expected)
                    continue
                }
                var fuzzed = false
                for fuzz in 1...2 {
                    let lead = min(fuzz, old.prefix { $0.0 == UInt8(ascii: " ") }.count)
                    let trail = min(fuzz, old.reversed().prefix { $0.0 == UInt8(ascii: " ") }.count)
                    guard lead + trail > 0, lead + trail < old.count else { continue }
                    let core = Array(old[lead..<(old.count - trail)])
                    if let pos = Self.find(core, in: st.lines, near: expected + lead) {
                        worst = max(worst, .fuzz)
                        details.append("\(label): applies only with fuzz \(fuzz) (offset \(pos - lead - expected))")
                        let newLead = min(lead, new.prefix { $0.0 == UInt8(ascii: " ") }.count)
                        let newTrail = min(trail, new.reversed().prefix { $0.0 == UInt8(ascii: " ") }.count)
                        st.lines.replaceSubrange(pos..<(pos + core.count), with: new[newLead..<(new.count - newTrail)].map(\.1))
                        delta += new.count - old.count
                        fuzzed = true
                        break
                    }
                }
                if !fuzzed {
                    worst = max(worst, .failed)
                    details.append("\(label): does not apply (context or removed lines not found)")
                }
            }
            if f.newPath == nil {
                if !st.lines.isEmpty { worst = max(worst, .failed); details.append("\(target): deletion leaves \(st.lines.count) lines") }
                files[target] = .some(nil)
            } else {
                if let np = f.newPath, np != target { files[target] = .some(nil) }
                files[f.newPath ?? target] = st
            }
        }
        return .init(path: name, status: worst, details: details)
    }

    /// Old (context + removed) and new (context + added) lines of a hunk body, each tagged with its kind.
    static func hunkLines(_ bytes: [UInt8], _ body: Range<Int>) -> (old: [(UInt8, Line)], new: [(UInt8, Line)]) {
        var old: [(UInt8, Line)] = [], new: [(UInt8, Line)] = []
        var start = body.lowerBound
        let end = min(body.upperBound, bytes.count)
        while start < end {
            var e = start
            while e < end && bytes[e] != 0x0A { e += 1 }
            let kind = e > start ? bytes[start] : UInt8(ascii: " ")
            let text = e > start ? bytes[(start + 1)..<e] : bytes[start..<start]
            switch kind {
            case UInt8(ascii: " "): old.append((kind, text)); new.append((kind, text))
            case UInt8(ascii: "-"): old.append((kind, text))
            case UInt8(ascii: "+"): new.append((kind, text))
            default: break   // "\ No newline at end of file"
            }
            start = e + 1
        }
        return (old, new)
    }

    /// The match position nearest to `near`, searching outward (GNU patch's order: exact, then ±1, ±2, …).
    static func find(_ needle: [(UInt8, Line)], in lines: [Line], near: Int) -> Int? {
        let limit = lines.count - needle.count
        guard limit >= 0 else { return nil }
        func matches(_ pos: Int) -> Bool {
            for (k, l) in needle.enumerated() where !lines[pos + k].elementsEqual(l.1) { return false }
            return true
        }
        let start = min(max(0, near), limit)
        if matches(start) { return start }
        var d = 1
        while start - d >= 0 || start + d <= limit {
            if start - d >= 0, matches(start - d) { return start - d }
            if start + d <= limit, matches(start + d) { return start + d }
            d += 1
        }
        return nil
    }
}
