import Foundation

/// A manifest promoted up to publishing: the series streamed once, with `cumulative.patch` and the lock's
/// per-patch entries staged (unnamed) on disk as it went, and the pins. What stays in memory per patch is what the
/// plan shows (a pin, a step) and the line the run prints; a refusal writes nothing anyone can see.
package struct Promotion: Sendable {
    package let series: ScannedSeries
    /// The staged cumulative (`0001-<host>-cumulative-series.patch`).
    package let cumulative: StagedFile
    /// The lock's entries for the patches, in order, staged; `writeLock` puts the head and the tail around them.
    let lockEntries: StagedFile
    let lockEntriesLength: Int
    /// What a consent is checked against: the manifest, the baseline, each patch and the cumulative.
    package let pins: [Plan.Pin]
    /// The first 17 hex digits of each patch's content hash (9 bytes a patch), for the run's report.
    let contentHashPrefixes: [UInt8]
    /// The config and baseline tarball, pinned in the lock (v3).
    package let inputs: BuildInputs

    package var manifest: Manifest { series.manifest }
    package var cumulativeB2sum: String { series.cumulativeB2sum }

    /// Streams `manifest`'s series (see `Resolver.scan`), staging the cumulative and the lock entries beside `out`.
    package static func stream(_ manifest: Manifest, resolver: Resolver, out: URL, shown: String,
                              inputs: BuildInputs) throws -> Promotion {
        let cumulative = try StagedFile.create(for: out, shown: "\(shown)/\(cumulativeName(manifest.host))")
        let lockEntries = try StagedFile.create(for: out, shown: "\(shown)/manifest.lock")
        var entries = FileSink(lockEntries, hashing: false)
        var pins = [Plan.Pin(manifest.file, "b2:" + manifest.b2sum),
                    .init("baseline", "\(manifest.baseline.repo)@\(manifest.baseline.ref)" + (manifest.baseline.commit.map { " (\($0))" } ?? ""))]
        var prefixes: [UInt8] = []
        /// What a worker thread prepares of each patch, so this thread only appends.
        struct Entry: Sendable { let lock: String; let pin: String; let prefix: [UInt8]; let count: Int }
        let series = try resolver.scan(manifest, into: cumulative, prepare: { e -> Entry in
            let q = quote
            let path = e.path.value, p = e.patch, sha = e.fileSHA256 ?? ""
            let lock = "  - path: \(q(path))\n    scope: \(q(p.scopeTrailers.first ?? ""))\n    campaign: \(p.campaign.map(q) ?? "null")\n"
                    + "    b2sum: \(q(p.b2sum))\n    sha256: \(q(sha))\n    content_hash: \(q(p.contentHash))\n"
                    + "    via: [\(e.via.map(q).joined(separator: ", "))]\n"
            return Entry(lock: lock, pin: "b2:" + p.b2sum,
                         prefix: bytes(ofHex: p.contentHash.dropFirst("sha256:".count).prefix(2 * prefixLength)), count: e.count)
        }, each: { i, name, entry in
            if i == 0 {
                pins.reserveCapacity(entry.count + 3)
                prefixes.reserveCapacity(entry.count * prefixLength)
            }
            try entries.write(entry.lock)
            pins.append(.init(name, entry.pin))
            prefixes += entry.prefix
        })
        pins.append(.init("cumulative.patch", "b2:" + series.cumulativeB2sum))
        pins += inputs.pins
        let length = entries.count
        _ = try entries.finish()
        return Promotion(series: series, cumulative: cumulative, lockEntries: lockEntries, lockEntriesLength: length,
                         pins: pins, contentHashPrefixes: prefixes, inputs: inputs)
    }

    static let prefixLength = 9

    /// `sha256:` and the first 17 hex digits of patch i's content hash (what the run prints for it).
    func contentHashPrefix(_ i: Int) -> String {
        let start = i * Self.prefixLength
        return "sha256:" + Hex.encode(contentHashPrefixes[start..<(start + Self.prefixLength)]).prefix(17)
    }

    /// The bytes a lower-case hex string spells.
    static func bytes<S: StringProtocol>(ofHex hex: S) -> [UInt8] {
        func nibble(_ c: UInt8) -> UInt8 { c >= 0x61 ? c &- 0x61 &+ 10 : c &- 0x30 }
        var out: [UInt8] = []
        out.reserveCapacity(hex.utf8.count / 2)
        var high: UInt8?
        for c in hex.utf8 {
            if let h = high { out.append(h << 4 | nibble(c)); high = nil } else { high = nibble(c) }
        }
        return out
    }

    /// `manifest.lock`: YAML, no timestamps, strings JSON-quoted; the same inputs give the same bytes. Lock v3:
    /// the resolved files in apply order with a sha256 each (what the user's ka-build checks recipe-side patches
    /// against), the config and baseline tarball pins, and the cumulative's b2sum (what it stamps).
    package func writeLock(applyCheck: String, to sink: inout FileSink) throws {
        let m = manifest
        let q = Self.quote
        var o = "# manifest.lock — written by `ka promote \(m.host)`; do not edit.\n"
        o += "lock_version: 3\n"
        o += "tool: \(q("kernel-agent \(KernelAgentVersion.string)"))\n"
        o += "host: \(q(m.host.value))\n"
        o += "manifest:\n  path: \(q(m.file))\n  b2sum: \(q(m.b2sum))\n"
        o += "baseline:\n  repo: \(q(m.baseline.repo))\n  ref: \(q(m.baseline.ref))\n"
        o += "  commit: \(m.baseline.commit.map(q) ?? "null")\n"
        o += inputs.lockBaselineLines(quote: q)
        o += inputs.lockConfigLines(quote: q)
        o += "kernel_suffix: \(q(m.kernelSuffix))\n"
        o += "apply_order: \(m.hasExplicitOrder ? "\"manifest\"" : "\"kind\"")\n"
        o += series.count == 0 ? "patches: []\n" : "patches:\n"
        try sink.write(o)
        var offset = 0
        while offset < lockEntriesLength {
            let chunk = try lockEntries.read(at: offset, count: min(1 << 18, lockEntriesLength - offset))
            guard !chunk.isEmpty else { throw KAError.failure(lockEntries.shown, "the staged lock entries ended early") }
            try chunk.withUnsafeBytes { try sink.write($0) }
            offset += chunk.count
        }
        o = "cumulative:\n  path: \(q(Self.cumulativeName(m.host)))\n  b2sum: \(q(cumulativeB2sum))\n  patch_count: \(series.count)\n"
        o += "apply_check: \(q(applyCheck))\n"
        try sink.write(o)
    }

    /// The cumulative's file name, the user's ka-promote's: `0001-<host>-cumulative-series.patch`.
    package static func cumulativeName(_ host: HostName) -> String { "0001-\(host.value)-cumulative-series.patch" }

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

package enum KernelAgentVersion {
    package static let string = "0.1.0"
}
