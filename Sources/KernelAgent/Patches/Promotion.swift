import Foundation

/// The outputs of resolving one manifest: `cumulative.patch` and `manifest.lock`, built in memory so a
/// refusal writes nothing.
public struct Promotion: Sendable {
    public let resolution: Resolution
    public let cumulative: Data
    public let cumulativeB2sum: String

    public init(_ resolution: Resolution) {
        self.resolution = resolution
        if let pre = resolution.cumulative {
            cumulative = pre.data
            cumulativeB2sum = pre.b2sum
            return
        }
        var data = Data()
        data.reserveCapacity(resolution.entries.reduce(0) { $0 + $1.patch.bytes.count + 1 })
        var hasher = Blake2b()
        for (i, e) in resolution.entries.enumerated() {
            let piece = CumulativeSeries.piece(e.patch.bytes, index: i, count: resolution.entries.count)
            data.append(piece)
            hasher.update(piece)
        }
        cumulative = data
        cumulativeB2sum = hasher.hexDigest()
    }

    /// Pins a consent would be checked against.
    public var pins: [Plan.Pin] {
        let m = resolution.manifest
        var p = [Plan.Pin(m.file, "b2:" + m.b2sum)]
        p.append(.init("baseline", "\(m.baseline.repo)@\(m.baseline.ref)" + (m.baseline.commit.map { " (\($0))" } ?? "")))
        for e in resolution.entries { p.append(.init("patches/" + e.path.value, "b2:" + e.patch.b2sum)) }
        p.append(.init("cumulative.patch", "b2:" + cumulativeB2sum))
        return p
    }

    /// `manifest.lock`: YAML, no timestamps, strings JSON-quoted; the same inputs give the same bytes.
    public func renderLock(applyCheck: String) -> String {
        let m = resolution.manifest
        func q(_ s: String) -> String {
            if !s.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) { return "\"" + s + "\"" }
            var out = "\""
            for u in s.unicodeScalars {
                switch u {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\t": out += "\\t"
                default:
                    if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
                }
            }
            return out + "\""
        }
        var o = "# manifest.lock — written by `ka promote \(m.host)`; do not edit.\n"
        o += "lock_version: 1\n"
        o += "tool: \(q("kernel-agent \(KernelAgentVersion.string)"))\n"
        o += "host: \(q(m.host.value))\n"
        o += "manifest:\n  path: \(q(m.file))\n  b2sum: \(q(m.b2sum))\n"
        o += "baseline:\n  repo: \(q(m.baseline.repo))\n  ref: \(q(m.baseline.ref))\n"
        o += "  commit: \(m.baseline.commit.map(q) ?? "null")\n"
        o += "kernel_suffix: \(q(m.kernelSuffix))\n"
        o += "patches:\n"
        if resolution.entries.isEmpty { o = String(o.dropLast()) + " []\n" }
        for e in resolution.entries {
            o += "  - path: \(q(e.path.value))\n"
            o += "    scope: \(q(e.patch.scopeTrailers.first ?? ""))\n"
            o += "    campaign: \(e.patch.campaign.map(q) ?? "null")\n"
            o += "    b2sum: \(q(e.patch.b2sum))\n"
            o += "    content_hash: \(q(e.patch.contentHash))\n"
            o += "    via: [\(e.via.map(q).joined(separator: ", "))]\n"
        }
        o += "cumulative:\n  path: \"cumulative.patch\"\n  b2sum: \(q(cumulativeB2sum))\n  patch_count: \(resolution.entries.count)\n"
        o += "apply_check: \(q(applyCheck))\n"
        return o
    }
}

public enum KernelAgentVersion {
    public static let string = "0.1.0"
}
