import Foundation

/// Two patches from different scopes or campaigns whose hunks touch overlapping preimage line ranges of one
/// file: the order between them is an accident of the tree layout, so a person has to decide.
public struct CampaignConflict: Sendable, Equatable, CustomStringConvertible {
    public let file: String
    public let first: String, firstOrigin: String, firstRange: ClosedRange<Int>
    public let second: String, secondOrigin: String, secondRange: ClosedRange<Int>
    public var description: String {
        "\(file): \(first) [\(firstOrigin)] lines \(firstRange.lowerBound)-\(firstRange.upperBound) overlaps \(second) [\(secondOrigin)] lines \(secondRange.lowerBound)-\(secondRange.upperBound)"
    }
}

public enum ConflictDetector {
    public static func detect(_ entries: [Resolution.Entry]) -> [CampaignConflict] {
        var c = Collector()
        for (i, e) in entries.enumerated() { c.add(entry: i, path: e.path, campaign: e.patch.campaign, files: e.patch.files) }
        return c.detect()
    }

    /// What the check needs of a series, gathered one patch at a time: each hunk's preimage range per file, and
    /// each patch's name and origin. No patch text.
    public struct Collector: Sendable {
        struct Touch: Sendable { let entry: Int; let range: ClosedRange<Int> }
        /// Origin of a patch: its scope dir and its campaign. Same scope and same campaign = one series, no conflict.
        struct Origin: Sendable, Equatable { let path: String; let scope: String; let campaign: String? }
        private var byFile: [String: [Touch]] = [:]
        private var origins: [Int: Origin] = [:]

        public init() {}

        public mutating func add(entry: Int, path: TreePath, campaign: String?, files: [PatchFile.FileDiff]) {
            var touched = false
            for f in files {
                for h in f.hunks { byFile[f.targetPath, default: []].append(Touch(entry: entry, range: h.oldRange)); touched = true }
            }
            if touched { origins[entry] = Origin(path: path.value, scope: path.parent, campaign: campaign) }
        }

        public func detect() -> [CampaignConflict] {
            var out: [CampaignConflict] = []
            var seen = Set<[Int]>()
            for (file, touches) in byFile.sorted(by: { $0.key < $1.key }) {
                // Sweep by start line; only compare ranges that can overlap.
                let sorted = touches.sorted { $0.range.lowerBound < $1.range.lowerBound }
                var active: [Touch] = []
                for t in sorted {
                    active.removeAll { $0.range.upperBound < t.range.lowerBound }
                    for a in active where a.entry != t.entry {
                        guard let oa = origins[a.entry], let ot = origins[t.entry] else { continue }
                        guard oa.scope != ot.scope || oa.campaign != ot.campaign else { continue }
                        let (x, y) = a.entry < t.entry ? (a, t) : (t, a)
                        let key = [x.entry, y.entry]
                        if seen.contains(key) { continue }
                        seen.insert(key)
                        guard let ox = origins[x.entry], let oy = origins[y.entry] else { continue }
                        func label(_ o: Origin) -> String { "scope \(o.scope)" + (o.campaign.map { ", campaign \($0)" } ?? "") }
                        out.append(CampaignConflict(file: file, first: ox.path, firstOrigin: label(ox), firstRange: x.range,
                                                    second: oy.path, secondOrigin: label(oy), secondRange: y.range))
                    }
                    active.append(t)
                }
            }
            return out
        }
    }
}
