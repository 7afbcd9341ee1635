import Foundation
import Yams

/// Bar 0: the built kernel boots in qemu before anything is signed (`verify.bar0`).
package enum Bar0Spec: Sendable, Equatable {
    /// Boot it within `timeout` seconds and load `modules` (none named: the first of the package's modules.order).
    case run(timeout: Int, modules: [String])
    /// Not booted; the manifest says why.
    case skip(reason: String)

    package static let defaultTimeout = 180
    package static let timeouts = 10...3600
    package static let standard = Bar0Spec.run(timeout: defaultTimeout, modules: [])

    /// The kernel is booted (not skipped).
    package var boots: Bool { if case .run = self { return true } else { return false } }

    /// A module's name as modinfo shows it: letters, digits, `_` and `-`.
    static func isModuleName(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 64 && s.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "_" || $0 == "-") }
    }

    /// `bar0: {timeout: 180, modules: [pl330]}` or `bar0: {skip: "<why>"}`.
    static func parse(_ v: YAMLValue) throws -> Bar0Spec {
        if case .scalar = v.node {
            throw v.error("bar0 takes a mapping", hint: "bar0: {timeout: 180, modules: [<module>]}, or bar0: {skip: \"<why>\"} to leave the boot out")
        }
        let m = try v.mapping(allowed: ["timeout", "modules", "skip"])
        if let skip = m["skip"] {
            guard m["timeout"] == nil, m["modules"] == nil else {
                throw skip.error("bar0: skip goes alone", hint: "drop timeout and modules, or drop skip to boot the kernel")
            }
            let reason = try skip.string().trimmingCharacters(in: .whitespacesAndNewlines)
            guard !reason.isEmpty else { throw skip.error("bar0: skip needs its reason", hint: "e.g. bar0: {skip: \"no qemu for this arch\"}") }
            return .skip(reason: reason)
        }
        var timeout = defaultTimeout
        if let t = m["timeout"] {
            timeout = try t.int()
            guard timeouts.contains(timeout) else {
                throw t.error("bar0 timeout must be \(timeouts.lowerBound) to \(timeouts.upperBound) seconds, got \(timeout)", hint: "the default is \(defaultTimeout)")
            }
        }
        var modules: [String] = []
        if let list = m["modules"], !list.isNull {
            for item in try list.sequence() {
                let name = try item.string()
                guard isModuleName(name) else {
                    throw item.error("'\(name)' is not a module name", hint: "name it as modinfo does, e.g. pl330 (no path, no .ko)")
                }
                modules.append(name)
            }
        }
        return .run(timeout: timeout, modules: modules)
    }
}

/// A manifest's `verify:` section: what Bars 0 and 3–5 check (fleet/README.md). Bar 0 runs during the build,
/// before signing; Bars 3–5 on the host after an install.
///
/// ```yaml
/// verify:
///   bar0: {timeout: 180, modules: [pl330]}   # default: boot in 180 s, load the first module of modules.order
///   dt:                 # Bar 3: device-tree probes (custom-DTB hosts)
///     - dt /opp-table-1/opp-2184000000 exists
///   probes:             # Bar 4: per patch
///     - patch: board/pinebook-pro/0001-….patch
///       probe: file /sys/devices/system/cpu/cpufreq/policy4/cpuinfo_max_freq == 2184000
///       required: true  # default
///   burn_in_hours: 24   # Bar 5, opt-in
/// ```
package struct VerifySpec: Sendable {
    /// One Bar 4 probe and the patch (or scope) it checks.
    package struct PatchProbe: Sendable {
        /// A patch path or a scope dir under patches/, as in `include:` / `scopes:`; the manifest reaches it.
        package let patch: TreePath
        package let probe: Probe
        /// A required probe that does not pass stops the bars; an optional one is reported only.
        package let required: Bool
        /// Where the entry is written.
        package let location: YAMLLocation
        /// The `patch:` value as a path mention: migrate-tree rewrites it with the selectors, and abandon drops
        /// the entry (its lines) with the patches it names.
        package let mention: Manifest.Selector
    }

    /// Bar 3: device-tree probes (`dt …` only), all required.
    package let deviceTree: [Probe]
    /// Bar 4: per-patch probes, in the manifest's order.
    package let probes: [PatchProbe]
    /// Bar 5: hours of burn-in; nil when the host does not opt in.
    package let burnInHours: Int?
    /// Bar 0, during the build.
    package var bar0: Bar0Spec = .standard

    package static let maxBurnInHours = 720

    /// Reads the section; errors name the manifest file and line, and a probe's column.
    static func parse(_ value: YAMLValue, selectors: [Manifest.Selector], excluded: [Manifest.Selector], text: String) throws -> VerifySpec {
        let m = try value.mapping(allowed: ["bar0", "dt", "probes", "burn_in_hours"])
        var deviceTree: [Probe] = []
        if let list = m["dt"], !list.isNull {
            for item in try list.sequence() {
                let probe = try parseProbe(item)
                guard case .deviceTree = probe.subject else {
                    throw item.error("'\(probe.text)' is not a device-tree probe",
                                     hint: "verify.dt holds dt probes (dt /node[:property] …); put other probes under verify.probes with their patch")
                }
                deviceTree.append(probe)
            }
        }
        var probes: [PatchProbe] = []
        // split once: per probe it made 3,000 probes (250 KB) take 54 s to promote
        let lineText = m["probes"] == nil ? [] : text.split(separator: "\n", omittingEmptySubsequences: false)
        if let list = m["probes"], !list.isNull {
            for item in try list.sequence() {
                let entry = try item.mapping(allowed: ["patch", "probe", "required"])
                let patchV = try entry.required("patch")
                let patch: TreePath
                do { patch = try TreePath(try patchV.string()) } catch let e as KAError {
                    throw KAError(.refusal, ["\(patchV.location): \(patchV.keyPath)"] + e.chain, hint: e.hint)
                }
                try checkReached(patch, at: patchV, selectors: selectors, excluded: excluded)
                let probe = try parseProbe(try entry.required("probe"))
                let lines = [item.location.line] + entry.keys.compactMap { entry[$0]?.location.line }
                let lo = lines.min() ?? item.location.line, hi = lines.max() ?? item.location.line
                let ownsLine = lo == hi && lineText.indices.contains(lo - 1) && lineText[lo - 1].trimmingCharacters(in: .whitespaces).hasPrefix("-")
                let mention = Manifest.Selector(kind: .include, raw: try Manifest.normalisedPath(patchV), line: patchV.location.line,
                                                column: patchV.location.column, lines: lo...hi, ownsLine: ownsLine)
                probes.append(PatchProbe(patch: patch, probe: probe, required: try entry["required"]?.bool() ?? true,
                                         location: item.location, mention: mention))
            }
        }
        var burnIn: Int?
        if let hoursV = m["burn_in_hours"] {
            let hours = try hoursV.int()
            guard (1...maxBurnInHours).contains(hours) else {
                throw hoursV.error("burn_in_hours must be between 1 and \(maxBurnInHours)", hint: "leave it out for no burn-in")
            }
            burnIn = hours
        }
        var spec = VerifySpec(deviceTree: deviceTree, probes: probes, burnInHours: burnIn)
        if let b = m["bar0"], !b.isNull { spec.bar0 = try Bar0Spec.parse(b) }
        return spec
    }

    /// A probe's text from a YAML scalar, placed where its first character is in the file.
    static func parseProbe(_ item: YAMLValue) throws -> Probe {
        guard case let .scalar(scalar) = item.node else { throw item.error("expected a probe (one line of text), found \(item.node.kindName)") }
        var line = item.location.line, column = item.location.column
        switch scalar.style {
        case .singleQuoted, .doubleQuoted: column += 1
        case .literal, .folded: line += 1; column = 1
        default: break
        }
        let origin = ProbeOrigin(file: item.file, line: line, column: column, field: item.keyPath)
        do throws(ProbeParseError) {
            return try ProbeParser.parse(scalar.string, origin: origin)
        } catch {
            throw error.asKAError
        }
    }

    /// The probe's patch must be one the manifest applies: under a scope or include (or holding one), and not
    /// excluded.
    static func checkReached(_ patch: TreePath, at v: YAMLValue, selectors: [Manifest.Selector], excluded: [Manifest.Selector]) throws {
        func related(_ a: String, _ b: String) -> Bool { a == b || a.hasPrefix(b + "/") || b.hasPrefix(a + "/") }
        if let ex = excluded.first(where: { patch.value == $0.raw || patch.value.hasPrefix($0.raw + "/") }) {
            throw v.error("'\(patch)' is excluded at line \(ex.line) ('\(ex.raw)')", hint: "a probe checks a patch the host gets; drop the probe or the exclusion")
        }
        guard selectors.contains(where: { related(patch.value, $0.raw) }) else {
            let listed = selectors.map(\.raw).joined(separator: ", ")
            throw v.error("'\(patch)' is not among this manifest's scopes or includes (\(listed.isEmpty ? "none" : listed))",
                          hint: "name a patch or scope the manifest applies, as written under scopes: or include:")
        }
    }
}
