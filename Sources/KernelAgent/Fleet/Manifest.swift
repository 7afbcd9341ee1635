import Foundation

/// `fleet/<host>.yaml`: what one host's kernel is made of. Schema in fleet/README.md.
public struct Manifest: Sendable {
    public struct Baseline: Sendable {
        public let repo: String
        public let ref: String
        public let commit: String?
        public let authoringContext: String?
    }

    public enum InstallMode: String, Sendable { case alongside, replace }

    /// One selector from `scopes:` or `include:`, with where it was written (for refusal chains).
    public struct Selector: Sendable {
        public enum Kind: String, Sendable { case scope, include }
        public let kind: Kind
        public let raw: String
        public let line: Int
        public let column: Int
    }

    public let host: HostName
    public let file: String          // display path, e.g. fleet/ohm.yaml
    public let bytes: Data
    public let baseline: Baseline
    public let kernelSuffix: String
    public let installMode: InstallMode
    public let installAlongside: String?
    public let configSource: String?
    public let selectors: [Selector]
    public let infraOptIn: Bool
    public let sourceDir: String?

    public var b2sum: String { Blake2b.hex(bytes) }

    public static func load(_ host: HostName, in ws: Workspace) throws -> Manifest {
        let url = ws.manifestFile(host)
        let display = ws.display(url)
        guard FS.exists(url) else {
            throw KAError.refusal(display, "no manifest for host '\(host)'", hint: "create \(display) (schema in fleet/README.md)")
        }
        let data = try FS.read(url, display: display)
        return try parse(data, host: host, file: display)
    }

    public static func parse(_ data: Data, host: HostName, file: String) throws -> Manifest {
        guard let text = String(data: data, encoding: .utf8) else {
            throw KAError.refusal("\(file):1:1: not UTF-8 text")
        }
        let doc = try YAMLValue.parse(text, file: file)
        let m = try doc.mapping(allowed: ["host", "baseline", "kernel_suffix", "install", "config", "scopes", "include",
                                          "infra_opt_in", "source_dir", "notes"])
        let hostV = try m.required("host")
        guard try hostV.string() == host.value else {
            throw hostV.error("names host '\(try hostV.string())' but the file is for '\(host)'",
                              hint: "set host: \(host) or rename the file")
        }
        let bm = try m.required("baseline").mapping(allowed: ["repo", "ref", "commit", "patch_authoring_context"])
        var commit: String?
        if let c = bm["commit"] {
            let s = try c.string()
            guard s.count == 40, s.allSatisfy(\.isHexDigit) else { throw c.error("commit must be 40 hex digits") }
            commit = s.lowercased()
        }
        let baseline = Baseline(repo: try bm.required("repo").string(), ref: try bm.required("ref").string(),
                                commit: commit, authoringContext: try bm["patch_authoring_context"]?.string())
        let suffixV = try m.required("kernel_suffix")
        let suffix = try suffixV.string()
        guard !suffix.isEmpty, suffix.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }), !suffix.hasPrefix("-") else {
            throw suffixV.error("kernel_suffix must be letters, digits, '-' or '_' without a leading '-'",
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
        if let cv = m["config"] {
            let cm = try cv.mapping(allowed: ["source", "olddefconfig"])
            configSource = try cm.required("source").string()
            _ = try cm["olddefconfig"]?.bool()
        }
        var selectors: [Selector] = []
        for (key, kind) in [("scopes", Selector.Kind.scope), ("include", .include)] {
            guard let list = m[key], !list.isNull else { continue }
            for item in try list.sequence() {
                selectors.append(Selector(kind: kind, raw: try item.string(), line: item.location.line, column: item.location.column))
            }
        }
        return Manifest(host: host, file: file, bytes: data, baseline: baseline, kernelSuffix: suffix,
                        installMode: mode, installAlongside: alongside, configSource: configSource,
                        selectors: selectors, infraOptIn: try m["infra_opt_in"]?.bool() ?? false,
                        sourceDir: try m["source_dir"]?.string())
    }
}
