import Foundation

/// The outputs of promoting one manifest: the scanned series, and `cumulative.patch` staged (unnamed) on disk. The
/// lock is written from the series' summaries at publish time; a refusal writes nothing anyone can see.
public struct Promotion: Sendable {
    public let series: ScannedSeries
    /// The staged cumulative.patch (nil when the series was only hashed).
    public let cumulative: StagedFile?
    public var cumulativeB2sum: String { series.cumulativeB2sum }
    public var manifest: Manifest { series.manifest }

    public init(series: ScannedSeries, cumulative: StagedFile?) {
        self.series = series
        self.cumulative = cumulative
    }

    /// Pins a consent would be checked against.
    public var pins: [Plan.Pin] {
        let m = manifest
        var p = [Plan.Pin(m.file, "b2:" + m.b2sum)]
        p.reserveCapacity(series.patches.count + 3)
        p.append(.init("baseline", "\(m.baseline.repo)@\(m.baseline.ref)" + (m.baseline.commit.map { " (\($0))" } ?? "")))
        for (i, e) in series.patches.enumerated() { p.append(.init("patches/" + e.path.value, "b2:" + series.b2sum(i))) }
        p.append(.init("cumulative.patch", "b2:" + cumulativeB2sum))
        return p
    }

    /// `manifest.lock`: YAML, no timestamps, strings JSON-quoted; the same inputs give the same bytes. Written a
    /// patch at a time.
    public func writeLock(applyCheck: String, to sink: inout FileSink) throws {
        let m = manifest
        let q = Self.quote
        var o = "# manifest.lock — written by `ka promote \(m.host)`; do not edit.\n"
        o += "lock_version: 2\n"
        o += "tool: \(q("kernel-agent \(KernelAgentVersion.string)"))\n"
        o += "host: \(q(m.host.value))\n"
        o += "manifest:\n  path: \(q(m.file))\n  b2sum: \(q(m.b2sum))\n"
        o += "baseline:\n  repo: \(q(m.baseline.repo))\n  ref: \(q(m.baseline.ref))\n"
        o += "  commit: \(m.baseline.commit.map(q) ?? "null")\n"
        o += "kernel_suffix: \(q(m.kernelSuffix))\n"
        o += "apply_order: \(m.hasExplicitOrder ? "\"manifest\"" : "\"kind\"")\n"
        o += series.patches.isEmpty ? "patches: []\n" : "patches:\n"
        try sink.write(o)
        for (i, e) in series.patches.enumerated() {
            o = "  - path: \(q(e.path.value))\n"
            o += "    scope: \(q(e.scope))\n"
            o += "    campaign: \(e.campaign.map(q) ?? "null")\n"
            o += "    b2sum: \(q(series.b2sum(i)))\n"
            o += "    sha256: \(q(series.sha256(i)))\n"
            o += "    content_hash: \(q(series.contentHash(i)))\n"
            o += "    via: [\(e.via.map(q).joined(separator: ", "))]\n"
            try sink.write(o)
        }
        o = "cumulative:\n  path: \"cumulative.patch\"\n  b2sum: \(q(cumulativeB2sum))\n  patch_count: \(series.patches.count)\n"
        o += "apply_check: \(q(applyCheck))\n"
        try sink.write(o)
    }

    /// The upstream ka-promote's file names under `build/<host>/<baseline_ref>/`.
    public static func upstreamCumulativeName(_ host: HostName) -> String { "0001-\(host.value)-cumulative-series.patch" }

    /// The upstream `manifest.lock`: the resolved file list in apply order with a sha256 each, and the
    /// cumulative's b2sum (what their ka-build checks and stamps). Same determinism rules as ours.
    public func writeUpstreamLock(applyCheck: String, to sink: inout FileSink) throws {
        let m = manifest
        let q = Self.quote
        var o = "# manifest.lock — written by `ka promote \(m.host) --layout upstream`; do not edit.\n"
        o += "host: \(q(m.host.value))\n"
        o += "manifest: \(q(m.file))\n"
        o += "baseline:\n  tree: \(q(m.baseline.repo))\n  ref: \(q(m.baseline.ref))\n"
        o += "kernel_suffix: \(q(m.kernelSuffix))\n"
        o += series.patches.isEmpty ? "apply_order: []\n" : "apply_order:\n"
        try sink.write(o)
        for (i, e) in series.patches.enumerated() {
            try sink.write("  - index: \(i + 1)\n    path: \(q(e.path.value))\n    sha256: \(q(series.sha256(i)))\n")
        }
        o = "cumulative:\n  path: \(q(Self.upstreamCumulativeName(m.host)))\n  b2sum: \(q(cumulativeB2sum))\n"
        o += "apply_check: \(q(applyCheck))\n"
        try sink.write(o)
    }

    static func quote(_ s: String) -> String {
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
}

public enum KernelAgentVersion {
    public static let string = "0.1.0"
}
