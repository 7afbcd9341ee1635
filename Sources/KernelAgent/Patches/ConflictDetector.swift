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
    /// Origin of a patch: its scope dir and its campaign. Same scope and same campaign = one series, no conflict.
    static func origin(_ e: Resolution.Entry) -> (scope: String, campaign: String?) { (e.path.parent, e.patch.campaign) }

    public static func detect(_ entries: [Resolution.Entry]) -> [CampaignConflict] {
        struct Touch { let entry: Int; let range: ClosedRange<Int> }
        var byFile: [String: [Touch]] = [:]
        for (i, e) in entries.enumerated() {
            for f in e.patch.files {
                for h in f.hunks { byFile[f.targetPath, default: []].append(Touch(entry: i, range: h.oldRange)) }
            }
        }
        var out: [CampaignConflict] = []
        var seen = Set<[Int]>()
        for (file, touches) in byFile.sorted(by: { $0.key < $1.key }) {
            // Sweep by start line; only compare ranges that can overlap.
            let sorted = touches.sorted { $0.range.lowerBound < $1.range.lowerBound }
            var active: [Touch] = []
            for t in sorted {
                active.removeAll { $0.range.upperBound < t.range.lowerBound }
                for a in active where a.entry != t.entry {
                    let ea = entries[a.entry], et = entries[t.entry]
                    let oa = origin(ea), ot = origin(et)
                    guard oa.scope != ot.scope || oa.campaign != ot.campaign else { continue }
                    let (x, y) = a.entry < t.entry ? (a, t) : (t, a)
                    let key = [x.entry, y.entry]
                    if seen.contains(key) { continue }
                    seen.insert(key)
                    let ex = entries[x.entry], ey = entries[y.entry]
                    func label(_ e: Resolution.Entry) -> String {
                        "scope \(e.path.parent)" + (e.patch.campaign.map { ", campaign \($0)" } ?? "")
                    }
                    out.append(CampaignConflict(file: file, first: ex.path.value, firstOrigin: label(ex), firstRange: x.range,
                                                second: ey.path.value, secondOrigin: label(ey), secondRange: y.range))
                }
                active.append(t)
            }
        }
        return out
    }
}
