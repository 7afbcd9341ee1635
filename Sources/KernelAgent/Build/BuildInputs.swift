import Foundation

/// What a build starts from besides the patches: the host's kernel config and the baseline tarball. Promote pins
/// both in the lock; `ka build` checks them again and refuses when one moved.
package struct BuildInputs: Sendable, Equatable {
    package struct Config: Sendable, Equatable {
        package let path: String
        package let b2sum: String
        package let olddefconfig: Bool
    }

    package struct Tarball: Sendable, Equatable {
        package let name: String
        /// nil: unpinned (`unpinnedReason` says why) and a build refuses.
        package let b2sum: String?
        /// The local file in the mirror dir, when there is one.
        package let file: String?
        /// The URL makepkg fetches it from, when it comes from a URL.
        package let url: String?
        package let unpinnedReason: String?
    }

    package let config: Config?
    package let tarball: Tarball

    /// Reads the config file the manifest names and finds the tarball `KA_CONFIG` points at, hashing both.
    package static func resolve(_ m: Manifest, ws: Workspace, pipeline: PipelineConfig) throws -> BuildInputs {
        var config: Config?
        if let cf = m.configFile {
            let url = ws.root.appendingPathComponent(cf.path)
            guard FS.isRegularFile(url) else {
                throw KAError.refusal("\(cf.location)", "config file \(cf.path) does not exist",
                                      hint: "save the host's kernel config there (zcat /proc/config.gz > \(cf.path)), or fix this line of \(m.file)")
            }
            _ = try ws.confine(url, within: ws.fleetDir)
            config = Config(path: cf.path, b2sum: try PackageRenderer.b2sum(url), olddefconfig: cf.olddefconfig)
        }
        let baseline = pipeline.baseline
        let name = baseline?.tarball ?? BaselineTarball.defaultName(ref: m.baseline.ref)
        let tarball: Tarball
        if let mirror = baseline?.mirror {
            let file = URL(fileURLWithPath: mirror).appendingPathComponent(name)
            if FS.isRegularFile(file) {
                let sum = try PackageRenderer.b2sum(file)
                if let want = baseline?.b2sum, want != sum {
                    throw KAError.refusal("\(baseline?.origin ?? "KA_CONFIG"): baseline.b2sum",
                                          "\(file.path) has b2sum \(sum.prefix(16))…, not the pinned \(want.prefix(16))…",
                                          hint: "the mirror's tarball changed: fetch the real one again, or update baseline.b2sum if the change is intended")
                }
                tarball = Tarball(name: name, b2sum: sum, file: file.path, url: nil, unpinnedReason: nil)
            } else {
                tarball = Tarball(name: name, b2sum: nil, file: nil, url: nil, unpinnedReason: "\(name) is not in the mirror \(mirror)")
            }
        } else if let url = baseline?.url {
            if let sum = baseline?.b2sum {
                tarball = Tarball(name: name, b2sum: sum, file: nil, url: url, unpinnedReason: nil)
            } else {
                tarball = Tarball(name: name, b2sum: nil, file: nil, url: url, unpinnedReason: "baseline.url has no b2sum in KA_CONFIG")
            }
        } else {
            tarball = Tarball(name: name, b2sum: nil, file: nil, url: nil, unpinnedReason: "KA_CONFIG has no baseline mirror or url")
        }
        return BuildInputs(config: config, tarball: tarball)
    }

    package var pins: [Plan.Pin] {
        [.init("config", config.map { "\($0.path) b2:\($0.b2sum)" } ?? "(none)"),
         .init("baseline tarball", tarball.b2sum.map { "\(tarball.name) b2:\($0)" } ?? "\(tarball.name) unpinned")]
    }

    /// The lock's lines for these inputs (lock v3), after `baseline:`'s own.
    func lockBaselineLines(quote q: (String) -> String) -> String {
        var o = "  tarball: \(q(tarball.name))\n  tarball_b2sum: \(tarball.b2sum.map(q) ?? "null")\n"
        if let r = tarball.unpinnedReason { o += "  unpinned: \(q(r))\n" }
        return o
    }

    func lockConfigLines(quote q: (String) -> String) -> String {
        guard let c = config else { return "config: null\n" }
        return "config:\n  path: \(q(c.path))\n  b2sum: \(q(c.b2sum))\n  olddefconfig: \(c.olddefconfig)\n"
    }
}

/// `manifest.lock` as `ka build` reads it back (lock v3, the ka layout).
package struct LockFile: Sendable {
    package struct Patch: Sendable, Equatable {
        package let path: String; package let b2sum: String
        /// The file's sha256 (what the user's recipe-side copies are checked against) and its content hash.
        package var sha256: String? = nil
        package var contentHash: String? = nil
    }
    package let file: String
    package let host: String
    package let manifestPath: String
    package let manifestB2sum: String
    package let kernelSuffix: String
    package let baselineRef: String
    package let tarballName: String
    package let tarballB2sum: String?
    package let unpinned: String?
    package let config: BuildInputs.Config?
    package let patches: [Patch]
    package let cumulativeB2sum: String
    package let bytes: Data

    package var b2sum: String { Blake2b.hex(bytes) }

    package static func load(_ url: URL, shown: String) throws -> LockFile {
        guard FS.exists(url) else {
            throw KAError.refusal(shown, "no lock", hint: "run ka promote first")
        }
        let data = try FS.read(url, display: shown, limit: 64 << 20)
        guard let text = String(data: data, encoding: .utf8) else { throw KAError.refusal("\(shown):1:1", "not UTF-8 text") }
        let doc = try YAMLValue.parse(text, file: shown, budget: .lock)
        let m = try doc.mapping(allowed: ["lock_version", "tool", "host", "manifest", "baseline", "kernel_suffix", "apply_order",
                                          "config", "patches", "cumulative", "apply_check"])
        let versionV = try m.required("lock_version")
        guard try versionV.int() >= 3 else {
            throw versionV.error("lock version \(try versionV.int()) does not pin the config and the baseline tarball",
                                 hint: "run ka promote again: it writes lock version 3")
        }
        let mm = try m.required("manifest").mapping(allowed: ["path", "b2sum"])
        let bm = try m.required("baseline").mapping(allowed: ["repo", "ref", "commit", "tarball", "tarball_b2sum", "unpinned"])
        var config: BuildInputs.Config?
        if let cv = m["config"], !cv.isNull {
            let cm = try cv.mapping(allowed: ["path", "b2sum", "olddefconfig"])
            config = .init(path: try cm.required("path").string(), b2sum: try cm.required("b2sum").string(),
                           olddefconfig: try cm.required("olddefconfig").bool())
        }
        var patches: [Patch] = []
        if let pv = m["patches"], !pv.isNull {
            for item in try pv.sequence() {
                let pm = try item.mapping(allowed: ["path", "scope", "campaign", "b2sum", "sha256", "content_hash", "via"])
                patches.append(Patch(path: try pm.required("path").string(), b2sum: try pm.required("b2sum").string(),
                                     sha256: try pm["sha256"]?.string(), contentHash: try pm["content_hash"]?.string()))
            }
        }
        let cm = try m.required("cumulative").mapping(allowed: ["path", "b2sum", "patch_count"])
        let tarB2 = try bm["tarball_b2sum"].flatMap { $0.isNull ? nil : try $0.string() }
        return LockFile(file: shown, host: try m.required("host").string(), manifestPath: try mm.required("path").string(),
                        manifestB2sum: try mm.required("b2sum").string(), kernelSuffix: try m.required("kernel_suffix").string(),
                        baselineRef: try bm.required("ref").string(), tarballName: try bm.required("tarball").string(),
                        tarballB2sum: tarB2, unpinned: try bm["unpinned"]?.string(), config: config, patches: patches,
                        cumulativeB2sum: try cm.required("b2sum").string(), bytes: data)
    }

    /// Which input moved since the lock was written, or nil when the lock still holds: the manifest, a patch, the
    /// config or the baseline. `current` is a fresh scan of the manifest's series (b2sums only).
    /// Scans the manifest's series as the lock would pin it now: the series and each patch's b2sum.
    package static func currentSeries(_ manifest: Manifest, resolver: Resolver) throws -> (ScannedSeries, [String]) {
        var sums: [String] = []
        let series = try resolver.scan(manifest, into: nil, options: .init(hashes: true, conflicts: false),
                                       prepare: { $0.patch.b2sum }, each: { _, _, sum in sums.append(sum) })
        return (series, sums)
    }

    package func staleness(manifest: Manifest, series: ScannedSeries, patchB2sums: [String], inputs: BuildInputs) -> String? {
        if manifest.b2sum != manifestB2sum { return "the manifest \(manifest.file) changed (b2sum \(manifest.b2sum.prefix(12))…, the lock has \(manifestB2sum.prefix(12))…)" }
        let now: [String] = (0..<series.count).map { String(series.path($0)) }
        let locked = patches.map(\.path)
        if now != locked {
            let added: [String] = Set(now).subtracting(locked).sorted()
            let gone: [String] = Set(locked).subtracting(now).sorted()
            if let a = added.first { return "patch \(a) is new in the series since the lock" }
            if let g = gone.first { return "patch \(g) left the series since the lock" }
            return "the series' order changed since the lock"
        }
        for (i, p) in patches.enumerated() where i < patchB2sums.count && patchB2sums[i] != p.b2sum {
            return "patch \(p.path) changed since the lock (b2sum \(patchB2sums[i].prefix(12))…, the lock has \(p.b2sum.prefix(12))…)"
        }
        if series.cumulativeB2sum != cumulativeB2sum {
            return "a patch changed since the lock (the cumulative's b2sum is \(series.cumulativeB2sum.prefix(12))…, the lock has \(cumulativeB2sum.prefix(12))…)"
        }
        if inputs.config != config {
            return "the config changed: \(inputs.config.map { "\($0.path) b2sum \($0.b2sum.prefix(12))…" } ?? "none") vs the lock's \(config.map { "\($0.path) b2sum \($0.b2sum.prefix(12))…" } ?? "none")"
        }
        if inputs.tarball.name != tarballName || inputs.tarball.b2sum != tarballB2sum {
            return "the baseline changed: \(inputs.tarball.name) \(inputs.tarball.b2sum.map { "b2sum \($0.prefix(12))…" } ?? "unpinned") vs the lock's \(tarballName) \(tarballB2sum.map { "b2sum \($0.prefix(12))…" } ?? "unpinned")"
        }
        return nil
    }
}

extension YAMLBudget {
    /// A lock is machine-written, one entry a patch: large, flat, and without aliases.
    static var lock: YAMLBudget {
        var b = YAMLBudget()
        b.maxBytes = 64 << 20; b.maxDepth = 8; b.maxAliases = 0; b.maxExpandedNodes = 50_000_000
        return b
    }
}
