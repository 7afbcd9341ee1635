import Crypto
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

    /// sha256 of each patch file's bytes, in apply order (the upstream lock's per-file hash), on all cores.
    public func fileSHA256s() -> [String] {
        let entries = resolution.entries
        let out = UnsafeMutableBufferPointer<String>.allocate(capacity: max(1, entries.count))
        out.initialize(repeating: "")
        defer { out.deinitialize(); out.deallocate() }
        nonisolated(unsafe) let sink = out
        DispatchQueue.concurrentPerform(iterations: entries.count) { i in
            sink[i] = Hex.encode(Array(SHA256.hash(data: entries[i].patch.bytes)))
        }
        return Array(out.prefix(entries.count))
    }

    /// `manifest.lock`: YAML, no timestamps, strings JSON-quoted; the same inputs give the same bytes.
    public func renderLock(applyCheck: String) -> String {
        let m = resolution.manifest
        let shas = fileSHA256s()
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
        o += "patches:\n"
        if resolution.entries.isEmpty { o = String(o.dropLast()) + " []\n" }
        for (e, sha) in zip(resolution.entries, shas) {
            o += "  - path: \(q(e.path.value))\n"
            o += "    scope: \(q(e.patch.scopeTrailers.first ?? ""))\n"
            o += "    campaign: \(e.patch.campaign.map(q) ?? "null")\n"
            o += "    b2sum: \(q(e.patch.b2sum))\n"
            o += "    sha256: \(q(sha))\n"
            o += "    content_hash: \(q(e.patch.contentHash))\n"
            o += "    via: [\(e.via.map(q).joined(separator: ", "))]\n"
        }
        o += "cumulative:\n  path: \"cumulative.patch\"\n  b2sum: \(q(cumulativeB2sum))\n  patch_count: \(resolution.entries.count)\n"
        o += "apply_check: \(q(applyCheck))\n"
        return o
    }

    /// The upstream ka-promote's file names under `build/<host>/<baseline_ref>/`.
    public static func upstreamCumulativeName(_ host: HostName) -> String { "0001-\(host.value)-cumulative-series.patch" }

    /// The upstream `manifest.lock`: the resolved file list in apply order with a sha256 each, and the
    /// cumulative's b2sum (what their ka-build checks and stamps). Same determinism rules as ours.
    public func renderUpstreamLock(applyCheck: String) -> String {
        let m = resolution.manifest
        let q = Self.quote
        var o = "# manifest.lock — written by `ka promote \(m.host) --layout upstream`; do not edit.\n"
        o += "host: \(q(m.host.value))\n"
        o += "manifest: \(q(m.file))\n"
        o += "baseline:\n  tree: \(q(m.baseline.repo))\n  ref: \(q(m.baseline.ref))\n"
        o += "kernel_suffix: \(q(m.kernelSuffix))\n"
        o += "apply_order:\n"
        if resolution.entries.isEmpty { o = String(o.dropLast()) + " []\n" }
        for (i, (e, sha)) in zip(resolution.entries, fileSHA256s()).enumerated() {
            o += "  - index: \(i + 1)\n    path: \(q(e.path.value))\n    sha256: \(q(sha))\n"
        }
        o += "cumulative:\n  path: \(q(Self.upstreamCumulativeName(m.host)))\n  b2sum: \(q(cumulativeB2sum))\n"
        o += "apply_check: \(q(applyCheck))\n"
        return o
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
