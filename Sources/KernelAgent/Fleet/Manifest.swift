import Foundation

/// `fleet/<host>.yaml`: what one host's kernel is made of. Schema in fleet/README.md.
package struct Manifest: Sendable {
    package struct Baseline: Sendable {
        package let repo: String
        package let ref: String
        package let commit: String?
        package let authoringContext: String?
    }

    package enum InstallMode: String, Sendable { case alongside, replace }

    /// One selector from `scopes:` or `include:`/`includes:`, with where it was written (for refusal chains).
    package struct Selector: Sendable {
        package enum Kind: String, Sendable { case scope, include }
        package let kind: Kind
        /// The path as written, less a trailing `/` (the upstream spelling of a series dir).
        package let raw: String
        package let line: Int
        package let column: Int
        /// The entry's `apply_order: N`, when the include is written as a mapping.
        package var applyOrder: Int? = nil
        /// The lines the entry spans (a mapping entry spans several); a rewrite that drops it drops them all.
        package var lines: ClosedRange<Int>
        /// The value is the single item on its line (`- path`), so dropping the entry may drop the line.
        package var ownsLine: Bool = true

        package init(kind: Kind, raw: String, line: Int, column: Int, applyOrder: Int? = nil, lines: ClosedRange<Int>? = nil, ownsLine: Bool = true) {
            self.kind = kind; self.raw = raw; self.line = line; self.column = column; self.applyOrder = applyOrder
            self.lines = lines ?? line...line
            self.ownsLine = ownsLine
        }
    }


    /// `package:` — the recipe in the packages repo (informational until ka build reads it).
    package struct Package: Sendable {
        package let name: String
        package let templateAt: String?
    }

    /// `config: {file, olddefconfig}`: the config a build starts from, and where the manifest names it.
    package struct ConfigFile: Sendable {
        package let path: String
        package let olddefconfig: Bool
        /// `file:line:column` of the `file:` value, for a refusal when it is missing.
        package let location: String
    }

    /// `build_host:` — this host's own routing, ahead of the fleet default.
    package struct BuildHosts: Sendable {
        package let primary: String
        package let fallback: [String]
    }

    package let host: HostName
    package let file: String          // display path, e.g. fleet/ohm.yaml
    package let bytes: Data
    package let baseline: Baseline
    package let kernelSuffix: String
    /// Where the suffix came from, for the plan: `kernel_suffix:` or `package.name`.
    package var kernelSuffixSource: String = "kernel_suffix"
    package let installMode: InstallMode
    package let installAlongside: String?
    package let configSource: String?
    /// `config.file`: the kernel config in the repo (e.g. fleet/config/fresnel.config), pinned in the lock.
    package var configFile: ConfigFile? = nil
    package let selectors: [Selector]
    package let infraOptIn: Bool
    package let sourceDir: String?
    /// Whether the manifest orders its includes itself (`apply_order`); then the cumulative follows that order.
    package var hasExplicitOrder: Bool = false
    /// Series deliberately left out (`excluded:`); the reason is usually an inline comment.
    package var excluded: [Selector] = []
    /// The items of a top-level `apply_order:` list (rewritten with the includes they name).
    package var orderList: [Selector] = []

    /// Every place the manifest names a patch path: selectors, the apply_order list, exclusions, verify probes.
    package var pathMentions: [Selector] { selectors + orderList + excluded + (verify?.probes.map(\.mention) ?? []) }
    package var package: Package? = nil
    package var buildHosts: BuildHosts? = nil
    /// `verify:`: Bars 3–5's probes and burn-in (nil when the manifest has none).
    package var verify: VerifySpec? = nil
    /// Bar 0, during the build: `verify.bar0`, else the standard boot.
    package var bar0: Bar0Spec { verify?.bar0 ?? .standard }

    package var b2sum: String { Blake2b.hex(bytes) }

    package static func load(_ host: HostName, in ws: Workspace) throws -> Manifest {
        let url = ws.manifestFile(host)
        let display = ws.display(url)
        guard FS.exists(url) else {
            throw KAError.refusal(display, "no manifest for host '\(host)'", hint: "create \(display) (its keys: ka help fleet)")
        }
        try ws.confine(url, within: ws.fleetDir)
        let data = try FS.read(url, display: display, limit: YAMLValue.maxFileBytes)
        return try parse(data, host: host, file: display)
    }

    /// Keys this reader accepts. `includes` is the upstream spelling of `include`, `baseline.tree` of
    /// `baseline.repo` (fleet/README.md lists the aliases).
    static let topKeys: Set<String> = ["host", "baseline", "kernel_suffix", "install", "config", "scopes", "include", "includes",
                                       "apply_order", "excluded", "package", "build_host", "infra_opt_in", "source_dir", "notes",
                                       "verify", "patch_authoring_context"]

    package static func parse(_ data: Data, host: HostName, file: String) throws -> Manifest {
        guard let text = String(data: data, encoding: .utf8) else {
            throw KAError.refusal("\(file):1:1: not UTF-8 text")
        }
        let doc = try YAMLValue.parse(text, file: file)
        let m = try doc.mapping(allowed: topKeys)
        // The file's name is the host; `host:` is optional (the user's manifests leave it out), but a mismatch is an error.
        if let hostV = m["host"], try hostV.string() != host.value {
            throw hostV.error("names host '\(try hostV.string())' but the file is for '\(host)'",
                              hint: "set host: \(host) (or leave host: out), or rename the file")
        }
        let bm = try m.required("baseline").mapping(allowed: ["repo", "tree", "ref", "commit", "patch_authoring_context"])
        var commit: String?
        if let c = bm["commit"] {
            let s = try c.string()
            guard s.count == 40, s.allSatisfy(\.isHexDigit) else { throw c.error("commit must be 40 hex digits") }
            commit = s.lowercased()
        }
        if bm["repo"] != nil, let t = bm["tree"] {
            throw t.error("baseline has both 'repo' and 'tree'", hint: "they are the same key in two spellings; keep one")
        }
        guard let repoV = bm["repo"] ?? bm["tree"] else { throw bm.owner.error("missing required key 'repo' (or 'tree')") }
        // `patch_authoring_context` is informational; the user's manifests keep it at the top level, the seed's under baseline.
        if let inner = bm["patch_authoring_context"], let outer = m["patch_authoring_context"] {
            throw outer.error("patch_authoring_context is given twice (also at line \(inner.location.line))", hint: "keep one")
        }
        let context = try (bm["patch_authoring_context"] ?? m["patch_authoring_context"])?.string()
        let baseline = Baseline(repo: try repoV.string(), ref: try bm.required("ref").string(),
                                commit: commit, authoringContext: context)
        var package: Package?
        var packageNameV: YAMLValue?
        if let pv = m["package"] {
            let pm = try pv.mapping(allowed: ["name", "template_at"])
            let nameV = try pm.required("name")
            packageNameV = nameV
            package = Package(name: try nameV.string(), templateAt: try pm["template_at"]?.string())
        }
        // The suffix defaults to what package.name already says: linux-fresnel-fourier → fresnel-fourier.
        let suffix: String, suffixSource: String
        let suffixV: YAMLValue
        if let v = m["kernel_suffix"] {
            suffixV = v; suffix = try v.string(); suffixSource = "kernel_suffix"
        } else if let nameV = packageNameV, let name = package?.name {
            suffixV = nameV
            suffix = name.hasPrefix("linux-") ? String(name.dropFirst("linux-".count)) : name
            suffixSource = "package.name \(name) without its linux- prefix"
        } else {
            throw m.owner.error("missing required key 'kernel_suffix'",
                                hint: "add kernel_suffix: <suffix> (it becomes /boot/Image-<suffix>), or package: {name: linux-<suffix>}")
        }
        guard !suffix.isEmpty, suffix.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }), !suffix.hasPrefix("-") else {
            throw suffixV.error("kernel suffix '\(suffix)' (from \(suffixSource)) must be letters, digits, '-' or '_' without a leading '-'",
                                hint: "it becomes /boot/Image-<suffix>; e.g. fresnel-fourier")
        }
        var mode = InstallMode.replace
        var alongside: String?
        if let iv = m["install"] {
            let im = try iv.mapping(allowed: ["mode", "alongside"])
            let modeV = try im.required("mode")
            guard let md = InstallMode(rawValue: try modeV.string()) else {
                throw modeV.error("unknown install mode", hint: "use alongside or replace")
            }
            mode = md
            alongside = try im["alongside"]?.string()
            if mode == .alongside && alongside == nil { throw iv.error("mode alongside needs 'alongside: <package>'") }
        }
        var configSource: String?
        var configFile: ConfigFile?
        if let cv = m["config"] {
            let cm = try cv.mapping(allowed: ["source", "file", "olddefconfig"])
            configSource = try cm["source"]?.string()
            let olddefconfig = try cm["olddefconfig"]?.bool() ?? true
            if let fv = cm["file"] {
                let path = try fv.string()
                let parts = path.split(separator: "/", omittingEmptySubsequences: false)
                guard path.hasPrefix("fleet/config/"), !parts.contains(".."), !parts.contains(""), parts.count == 3, path.hasSuffix(".config") else {
                    throw fv.error("config file '\(path)' must be fleet/config/<name>.config", hint: "keep the host's kernel config at fleet/config/\(host).config")
                }
                configFile = ConfigFile(path: path, olddefconfig: olddefconfig, location: fv.location.description)
            } else if configSource == nil {
                throw cv.error("config needs 'file: fleet/config/\(host).config' (or the informational 'source:')")
            }
        }
        if m["include"] != nil, let second = m["includes"] {
            throw second.error("both 'include' and 'includes'", hint: "they are the same key in two spellings; merge them into one")
        }
        var selectors: [Selector] = []
        if let list = m["scopes"], !list.isNull {
            for item in try list.sequence() { selectors.append(try selector(item, kind: .scope, text: text)) }
        }
        if let list = m["include"] ?? m["includes"], !list.isNull {
            for item in try list.sequence() { selectors.append(try selector(item, kind: .include, text: text)) }
        }
        // Two spellings of the same path on two lines: the upstream "dup-include" refusal.
        var firstLine: [String: Selector] = [:]
        for sel in selectors {
            if let prior = firstLine[sel.raw] {
                throw KAError.refusal("\(file):\(sel.line):\(sel.column): '\(sel.raw)' is listed twice (first at line \(prior.line))",
                                      hint: "keep one of the two entries")
            }
            firstLine[sel.raw] = sel
        }
        let explicitOrder = try applyOrder(m, selectors: &selectors, file: file)
        var orderList: [Selector] = []
        if let top = m["apply_order"] {
            for item in try top.sequence() { orderList.append(try selector(item, kind: .include, text: text)) }
        }
        var excluded: [Selector] = []
        if let list = m["excluded"], !list.isNull {
            for item in try list.sequence() {
                if case .mapping = item.node {
                    let em = try item.mapping(allowed: ["path", "reason"])
                    let path = try em.required("path")
                    excluded.append(Selector(kind: .include, raw: try normalisedPath(path), line: path.location.line,
                                             column: path.location.column, ownsLine: false))
                } else {
                    excluded.append(try selector(item, kind: .include, text: text))
                }
            }
        }
        // An include that is also excluded: which one the person meant is theirs to say. An exclude strictly inside a
        // selected dir is a carve-out (ka yank): the resolver leaves those patches out of the dir.
        for sel in selectors {
            for ex in excluded where sel.raw == ex.raw || sel.raw.hasPrefix(ex.raw + "/") {
                throw KAError.refusal("\(file):\(sel.line):\(sel.column): \(sel.kind.rawValue) '\(sel.raw)' is also excluded at line \(ex.line) ('\(ex.raw)')",
                                      hint: "remove it from one of the two lists")
            }
        }
        var buildHosts: BuildHosts?
        if let bv = m["build_host"] {
            let bmap = try bv.mapping(allowed: ["primary", "fallback", "fallbacks"])
            var fallback: [String] = []
            if let f = bmap["fallback"] ?? bmap["fallbacks"] {
                if case .sequence = f.node { fallback = try f.stringList() } else { fallback = [try f.string()] }
            }
            let primary = try bmap.required("primary")
            for name in [try primary.string()] + fallback {
                do { _ = try HostName(name) } catch { throw primary.error("build_host names '\(name)', not a host name") }
            }
            buildHosts = BuildHosts(primary: try primary.string(), fallback: fallback)
        }
        var verify: VerifySpec?
        if let vv = m["verify"], !vv.isNull {
            verify = try VerifySpec.parse(vv, selectors: selectors, excluded: excluded, text: text)
        }
        var manifest = Manifest(host: host, file: file, bytes: data, baseline: baseline, kernelSuffix: suffix,
                                installMode: mode, installAlongside: alongside, configSource: configSource,
                                selectors: selectors, infraOptIn: try m["infra_opt_in"]?.bool() ?? false,
                                sourceDir: try m["source_dir"]?.string())
        manifest.kernelSuffixSource = suffixSource
        manifest.hasExplicitOrder = explicitOrder
        manifest.excluded = excluded
        manifest.orderList = orderList
        manifest.package = package
        manifest.buildHosts = buildHosts
        manifest.configFile = configFile
        manifest.verify = verify
        return manifest
    }

    /// A path as written in a list: a string, less the trailing `/` that marks a series dir upstream.
    static func normalisedPath(_ v: YAMLValue) throws -> String {
        var s = try v.string()
        while s.count > 1 && s.hasSuffix("/") { s.removeLast() }
        return s
    }

    /// One list item: a path string, or (upstream) a mapping `{path, apply_order}`.
    static func selector(_ item: YAMLValue, kind: Selector.Kind, text: String) throws -> Selector {
        if case let .mapping(map) = item.node {
            guard kind == .include else { throw item.error("a scope tag is a plain path", hint: "write - board/x") }
            let im = try item.mapping(allowed: ["path", "apply_order"])
            let pathV = try im.required("path")
            var order: Int?
            if let o = im["apply_order"] {
                let n = try o.int()
                guard n >= 0 && n <= 1_000_000 else { throw o.error("apply_order must be between 0 and 1000000") }
                order = n
            }
            let lines = map.compactMap { $0.key.mark?.line } + map.compactMap { $0.value.mark?.line }
            let lo = min(item.location.line, lines.min() ?? item.location.line), hi = max(item.location.line, lines.max() ?? item.location.line)
            // `- {path: x, apply_order: 1}` on a line of its own is dropped with its line
            let lineText = text.split(separator: "\n", omittingEmptySubsequences: false)
            let own = lo == hi && lineText.indices.contains(lo - 1) && lineText[lo - 1].trimmingCharacters(in: .whitespaces).hasPrefix("-")
            return Selector(kind: kind, raw: try normalisedPath(pathV), line: pathV.location.line, column: pathV.location.column,
                            applyOrder: order, lines: lo...hi, ownsLine: own)
        }
        let raw = try normalisedPath(item)
        // A flow list (`[a, b]`) shares its line with its neighbours: a rewrite may touch only the value.
        let lineText = text.split(separator: "\n", omittingEmptySubsequences: false)
        let own = lineText.indices.contains(item.location.line - 1)
            && lineText[item.location.line - 1].trimmingCharacters(in: .whitespaces).hasPrefix("-")
        return Selector(kind: kind, raw: raw, line: item.location.line, column: item.location.column, ownsLine: own)
    }

    /// Applies `apply_order` (a top-level list of include paths, or an integer on every include entry) to the
    /// selectors. Returns whether the manifest gives an explicit order.
    static func applyOrder(_ m: YAMLMap, selectors: inout [Selector], file: String) throws -> Bool {
        let includes = selectors.filter { $0.kind == .include }
        let numbered = includes.filter { $0.applyOrder != nil }
        let top = m["apply_order"]
        if top == nil && numbered.isEmpty { return false }
        if let scope = selectors.first(where: { $0.kind == .scope }) {
            throw KAError.refusal("\(file):\(scope.line):\(scope.column): scope tags cannot be mixed with apply_order",
                                  hint: "with an explicit apply_order, name every series dir or patch under includes")
        }
        var rank: [String: Int] = [:]
        if let top {
            if let first = numbered.first {
                throw KAError.refusal("\(file):\(first.line):\(first.column): apply_order is given twice (top-level list and per entry)",
                                      hint: "use one form")
            }
            for (i, item) in try top.sequence().enumerated() {
                let raw = try normalisedPath(item)
                guard includes.contains(where: { $0.raw == raw }) else {
                    throw item.error("apply_order names '\(raw)', which is not an include", hint: "add it to includes, or drop it here")
                }
                if rank[raw] != nil { throw item.error("apply_order names '\(raw)' twice") }
                rank[raw] = i
            }
        } else {
            for sel in numbered {
                if let other = numbered.first(where: { $0.raw != sel.raw && $0.applyOrder == sel.applyOrder }) {
                    throw KAError.refusal("\(file):\(sel.line):\(sel.column): apply_order \(sel.applyOrder ?? 0) is also given to '\(other.raw)' (line \(other.line))",
                                          hint: "give each include its own position")
                }
                rank[sel.raw] = sel.applyOrder
            }
        }
        if let missing = includes.first(where: { rank[$0.raw] == nil }) {
            throw KAError.refusal("\(file):\(missing.line):\(missing.column): include '\(missing.raw)' has no place in apply_order",
                                  hint: "every include needs a position once apply_order is used")
        }
        selectors.sort { (rank[$0.raw] ?? 0) < (rank[$1.raw] ?? 0) }
        return true
    }
}
