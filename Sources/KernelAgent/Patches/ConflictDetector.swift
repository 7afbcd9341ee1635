import Foundation

/// Two patches from different scopes or campaigns whose hunks touch overlapping preimage line ranges of one
/// file, and the later was not written on top of the earlier: the order between them is an accident of the tree
/// layout, so a person has to decide. A later hunk whose removed or context lines include lines the earlier hunk
/// added is a stack (ohm's bes2600 series, each on top of the one before), not a conflict.
package struct CampaignConflict: Sendable, Equatable, CustomStringConvertible {
    package let file: String
    package let first: String, firstOrigin: String, firstRange: ClosedRange<Int>
    package let second: String, secondOrigin: String, secondRange: ClosedRange<Int>
    package var description: String {
        "\(file): \(first) [\(firstOrigin)] lines \(firstRange.lowerBound)-\(firstRange.upperBound) overlaps \(second) [\(secondOrigin)] lines \(secondRange.lowerBound)-\(secondRange.upperBound)"
    }
}

package enum ConflictDetector {
    package static func detect(_ entries: [Resolution.Entry]) -> [CampaignConflict] {
        var c = Collector()
        for (i, e) in entries.enumerated() { c.add(entry: i, scope: e.path.parent, campaign: e.patch.campaign, patch: e.patch) }
        return c.detect { entries[$0].path.value }
    }

    /// What the check needs of a series, gathered one patch at a time: each hunk's preimage range per file, and
    /// each patch's origin, as small integers. No patch text.
    package struct Collector: Sendable {
        /// One hunk: its patch and its preimage lines. Line numbers are at most `PatchFile.maxLineNumber`.
        struct Touch: Sendable { let entry: Int32, lower: Int32, upper: Int32, lines: Int32 }
        /// Per touch: hashes of the lines its hunk adds, and of its preimage (context and removed) lines, sorted.
        /// Only lines with some substance count: a `}` or a blank line proves nothing about a stack.
        struct HunkLines: Sendable { let added: [UInt64]; let preimage: [UInt64] }
        private var hunkLines: [HunkLines] = []
        /// Origin of a patch: its scope dir and its campaign. Same scope and same campaign = one series, no conflict.
        struct Origin: Sendable, Hashable { let scope: String; let campaign: String? }
        private var byFile: [String: [Touch]] = [:]
        /// Per entry, its index in `origins` (-1: no hunks).
        private var originOf: [Int32] = []
        private var origins: [Origin] = []
        private var originIndex: [Origin: Int32] = [:]

        package init() {}

        /// `scope`: the patch's dir (its origin with its campaign).
        package mutating func add(entry: Int, scope: String, campaign: String?, patch: PatchFile) {
            let e = Int32(clamping: entry)
            var touched = false
            for f in patch.files {
                for h in f.hunks {
                    let r = h.oldRange
                    let id = Int32(clamping: hunkLines.count)
                    hunkLines.append(Self.lines(of: h, in: patch.bytes))
                    byFile[f.targetPath, default: []].append(Touch(entry: e, lower: Int32(clamping: r.lowerBound), upper: Int32(clamping: r.upperBound), lines: id))
                    touched = true
                }
            }
            guard touched else { return }
            let origin = Origin(scope: scope, campaign: campaign)
            let index: Int32
            if let known = originIndex[origin] { index = known } else {
                index = Int32(clamping: origins.count)
                origins.append(origin)
                originIndex[origin] = index
            }
            if originOf.count <= entry { originOf += Array(repeating: -1, count: entry + 1 - originOf.count) }
            originOf[entry] = index
        }

        /// The hashed added and preimage lines of one hunk body.
        static func lines(of h: PatchFile.Hunk, in bytes: Data) -> HunkLines {
            var added: [UInt64] = [], preimage: [UInt64] = []
            bytes.withUnsafeBytes { raw in
                let b = raw.bindMemory(to: UInt8.self)
                var i = h.body.lowerBound
                while i < h.body.upperBound {
                    var end = i
                    while end < h.body.upperBound && b[end] != 0x0a { end += 1 }
                    if end > i {
                        let kind = b[i]
                        // trailing blanks and \r are not part of what a line says
                        var last = end
                        while last > i + 1 && (b[last - 1] == 0x20 || b[last - 1] == 0x09 || b[last - 1] == 0x0d) { last -= 1 }
                        var substance = 0
                        for k in (i + 1)..<max(i + 1, last) where b[k] != 0x20 && b[k] != 0x09 { substance += 1 }
                        if substance >= 4 {
                            var hash: UInt64 = 0xcbf29ce484222325
                            for k in (i + 1)..<last { hash = (hash ^ UInt64(b[k])) &* 0x100000001b3 }
                            if kind == UInt8(ascii: "+") { added.append(hash) }
                            else if kind == UInt8(ascii: " ") || kind == UInt8(ascii: "-") { preimage.append(hash) }
                        }
                    }
                    i = end + 1
                }
            }
            return HunkLines(added: added.sorted(), preimage: preimage.sorted())
        }

        /// Whether hunk `later` was written on top of hunk `earlier`: its preimage holds a line `earlier` added.
        func stacks(_ later: Touch, on earlier: Touch) -> Bool {
            let a = hunkLines[Int(earlier.lines)].added, p = hunkLines[Int(later.lines)].preimage
            var i = 0, j = 0
            while i < a.count && j < p.count {
                if a[i] == p[j] { return true }
                if a[i] < p[j] { i += 1 } else { j += 1 }
            }
            return false
        }

        func origin(_ entry: Int32) -> Origin? {
            let e = Int(entry)
            guard e < originOf.count, originOf[e] >= 0 else { return nil }
            return origins[Int(originOf[e])]
        }

        /// The overlapping pairs, each named by `name(entry)`.
        package func detect(name: (Int) -> String) -> [CampaignConflict] {
            var out: [CampaignConflict] = []
            var seen = Set<[Int32]>()
            for (file, touches) in byFile.sorted(by: { $0.key < $1.key }) {
                // Sweep by start line; only compare ranges that can overlap.
                let sorted = touches.sorted { $0.lower < $1.lower }
                var active: [Touch] = []
                for t in sorted {
                    active.removeAll { $0.upper < t.lower }
                    for a in active where a.entry != t.entry {
                        guard let oa = origin(a.entry), let ot = origin(t.entry), oa != ot else { continue }
                        let (x, y) = a.entry < t.entry ? (a, t) : (t, a)
                        let key = [x.entry, y.entry]
                        if seen.contains(key) { continue }
                        // the later patch edits the earlier one's result: a stack, in apply order
                        if stacks(y, on: x) { continue }
                        seen.insert(key)
                        guard let ox = origin(x.entry), let oy = origin(y.entry) else { continue }
                        func label(_ o: Origin) -> String { "scope \(o.scope)" + (o.campaign.map { ", campaign \($0)" } ?? "") }
                        out.append(CampaignConflict(file: file, first: name(Int(x.entry)), firstOrigin: label(ox), firstRange: Int(x.lower)...Int(x.upper),
                                                    second: name(Int(y.entry)), secondOrigin: label(oy), secondRange: Int(y.lower)...Int(y.upper)))
                    }
                    active.append(t)
                }
            }
            return out
        }
    }
}
