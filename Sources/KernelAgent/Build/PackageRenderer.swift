import Foundation

/// Fills a packaging template dir (`packaging/arch/`, `packaging/debian/`) for one host: every file's
/// `@@NAME@@` placeholders (file names too), the inputs copied under the names its source list uses, then
/// `@@B2SUM:<file>@@` from the rendered files themselves. The rules are packaging/README.md's; the same as
/// `scripts/render-pkgbuild`, which the packaging tests run.
package struct PackageRenderer: Sendable {
    package enum Flavour: String, Sendable { case arch, debian }

    package struct Inputs: Sendable {
        package var host: HostName
        package var suffix: String
        package var pkgrel: String = "1"
        /// The tarball as a local file (copied in), or nil with `tarballURL` (makepkg fetches it).
        package var tarballFile: URL?
        package var tarballName: String
        package var tarballURL: String?
        package var tarballB2sum: String
        package var patch: URL
        package var config: URL
        package var olddefconfig: Bool
        package var installMode: Manifest.InstallMode
        /// With `replace`: the stock package it replaces.
        package var replaces: String?
        /// The tarball's top dir (`baseline.top_dir`); nil: `linux-<pkgver>`, as kernel.org's tarballs have it.
        package var srcname: String? = nil

        package init(host: HostName, suffix: String, tarballFile: URL?, tarballName: String, tarballURL: String? = nil, tarballB2sum: String,
                    patch: URL, config: URL, olddefconfig: Bool, installMode: Manifest.InstallMode, replaces: String? = nil) {
            self.host = host; self.suffix = suffix; self.tarballFile = tarballFile; self.tarballName = tarballName
            self.tarballURL = tarballURL; self.tarballB2sum = tarballB2sum; self.patch = patch; self.config = config
            self.olddefconfig = olddefconfig; self.installMode = installMode; self.replaces = replaces
        }
    }

    package struct Rendered: Sendable {
        package let dir: URL
        package let flavour: Flavour
        package let pkgbase: String
        package let pkgver: String
        package let pkgrel: String
        /// Every file in the dir, sorted.
        package let files: [String]
    }

    package let template: URL
    package let shownTemplate: String

    package init(template: URL, shown: String) { self.template = template; self.shownTemplate = shown }

    /// pacman's package-name rules, kept strict: lower case, digits and @._+-, not starting with - or .
    package static func isPackageName(_ s: String) -> Bool {
        guard let first = s.utf8.first, !s.isEmpty, s.utf8.count <= 120 else { return false }
        let ok: (UInt8) -> Bool = { NameBytes.isLower($0) || NameBytes.isDigit($0) || "@._+-".utf8.contains($0) }
        return s.utf8.allSatisfy(ok) && first != UInt8(ascii: "-") && first != UInt8(ascii: ".")
    }

    static func isPkgver(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.allSatisfy { NameBytes.isLower($0) || NameBytes.isUpper($0) || NameBytes.isDigit($0) || "._+".utf8.contains($0) }
    }

    static func isPkgrel(_ s: String) -> Bool {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        return (1...2).contains(parts.count) && parts.allSatisfy { !$0.isEmpty && $0.utf8.allSatisfy(NameBytes.isDigit) }
    }

    /// Renders into `out`, which must not exist; a failure leaves nothing there.
    package func render(_ input: Inputs, into out: URL) throws -> Rendered {
        let fm = FileManager.default
        let names = try fm.contentsOfDirectory(atPath: template.path).sorted()
        let flavour: Flavour
        if names.contains("PKGBUILD") { flavour = .arch } else if names.contains("control") { flavour = .debian } else {
            throw KAError.refusal(shownTemplate, "has neither a PKGBUILD nor a control file", hint: "restore packaging/arch or packaging/debian from git")
        }
        guard Self.isPackageName(input.suffix) else {
            throw KAError.refusal("kernel_suffix '\(input.suffix)'", "is not valid in a package name", hint: "lower-case letters, digits and . _ + -")
        }
        let pkgbase = "linux-\(input.suffix)"
        guard let pkgver = BaselineTarball.version(ofName: input.tarballName), Self.isPkgver(pkgver) else {
            throw KAError.refusal("tarball '\(input.tarballName)'", "cannot tell the version from its name", hint: "name it linux-<version>.tar.xz")
        }
        guard Self.isPkgrel(input.pkgrel) else { throw KAError.refusal("pkgrel '\(input.pkgrel)'", "not a number like 1 or 2.1") }
        guard Hex.isLowerHex(input.tarballB2sum, count: 128) else { throw KAError.refusal("tarball b2sum", "not 128 hex digits") }
        if input.installMode == .replace {
            guard let r = input.replaces, Self.isPackageName(r) else {
                throw KAError.refusal("install.mode replace", "needs the stock kernel package it replaces", hint: "set hosts.\(input.host).stock_kernel in KA_CONFIG")
            }
        }
        let source: String
        if let url = input.tarballURL, input.tarballFile == nil { source = "\(input.tarballName)::\(url)" } else { source = input.tarballName }
        func words(_ items: [String]) -> String {
            flavour == .arch ? items.map { "'\($0)'" }.joined(separator: " ") : items.joined(separator: ", ")
        }
        var kp: [String] = [], kc: [String] = [], hp: [String] = [], hc: [String] = []
        if input.installMode == .replace, let r = input.replaces {
            kp = flavour == .arch ? ["linux=\(pkgver)"] : ["linux-image"]
            hp = flavour == .arch ? ["linux-headers=\(pkgver)"] : ["linux-headers"]
            kc = [r]; hc = ["\(r)-headers"]
        }
        let values: [String: String] = [
            "HOST": input.host.value, "PKGBASE": pkgbase, "SUFFIX": input.suffix, "SRCNAME": input.srcname ?? "linux-\(pkgver)",
            "DESC": "fleet host \(input.host) (kernel-agent)", "OLDDEFCONFIG": input.olddefconfig ? "1" : "0",
            "PKGVER": pkgver, "PKGREL": input.pkgrel, "TARBALL": source, "TARBALL_NAME": input.tarballName,
            "TARBALL_B2SUM": input.tarballB2sum, "PATCH_B2SUM": try Self.b2sum(input.patch), "CONFIG_B2SUM": try Self.b2sum(input.config),
            "KERNEL_PROVIDES": words(kp), "KERNEL_CONFLICTS": words(kc), "HEADERS_PROVIDES": words(hp), "HEADERS_CONFLICTS": words(hc),
            "INSTALL_MODE": input.installMode.rawValue,
        ]
        guard !FS.exists(out) else { throw KAError.failure(out.path, "already exists; a render needs a fresh dir") }
        let stage = out.deletingLastPathComponent().appendingPathComponent(".render-\(out.lastPathComponent)-\(getpid())")
        if FS.exists(stage) { try fm.removeItem(at: stage) }
        try fm.createDirectory(at: stage, withIntermediateDirectories: true)
        do {
            var rendered: [(name: String, src: String, lines: [String])] = []
            for name in names where name != "README.md" {
                let src = template.appendingPathComponent(name)
                guard FS.isRegularFile(src) else { continue }
                let shownSrc = "\(shownTemplate)/\(name)"
                let outName = try Self.fill(name, values, where: "\(shownSrc) (file name)", b2sums: nil)
                let data = try FS.read(src, display: shownSrc, limit: 1 << 20)
                guard let text = String(data: data, encoding: .utf8) else { throw KAError.refusal(shownSrc, "not UTF-8 text") }
                let lines = try text.split(separator: "\n", omittingEmptySubsequences: false).enumerated().map { i, line in
                    try Self.fill(String(line), values, where: "\(shownSrc):\(i + 1)", b2sums: nil)
                }
                let executable = (try fm.attributesOfItem(atPath: src.path)[.posixPermissions] as? Int ?? 0o644) & 0o100 != 0
                let dest = stage.appendingPathComponent(outName)
                try Data(lines.joined(separator: "\n").utf8).write(to: dest)
                try fm.setAttributes([.posixPermissions: executable ? 0o755 : 0o644], ofItemAtPath: dest.path)
                rendered.append((outName, shownSrc, lines))
            }
            if let file = input.tarballFile { try fm.copyItem(at: file, to: stage.appendingPathComponent(input.tarballName)) }
            try fm.copyItem(at: input.patch, to: stage.appendingPathComponent("cumulative.patch"))
            try fm.copyItem(at: input.config, to: stage.appendingPathComponent("config"))
            var sums: [String: String] = [:]
            for n in try fm.contentsOfDirectory(atPath: stage.path) { sums[n] = try Self.b2sum(stage.appendingPathComponent(n)) }
            for r in rendered where r.lines.contains(where: { $0.contains("@@B2SUM:") }) {
                let lines = try r.lines.enumerated().map { i, line in try Self.fill(line, values, where: "\(r.src):\(i + 1)", b2sums: sums) }
                try Data(lines.joined(separator: "\n").utf8).write(to: stage.appendingPathComponent(r.name))
            }
            for r in rendered {
                let text = String(decoding: try Data(contentsOf: stage.appendingPathComponent(r.name)), as: UTF8.self)
                if let left = Self.firstPlaceholder(in: text) {
                    throw KAError.refusal("\(r.src)", "placeholder \(left) is still unfilled in the rendered \(r.name)")
                }
            }
            try fm.moveItem(at: stage, to: out)
        } catch {
            try? fm.removeItem(at: stage)   // our own scratch dir; the error that matters is rethrown
            throw error
        }
        return Rendered(dir: out, flavour: flavour, pkgbase: pkgbase, pkgver: pkgver, pkgrel: input.pkgrel,
                        files: try fm.contentsOfDirectory(atPath: out.path).sorted())
    }

    /// The BLAKE2b-512 of a file, streamed.
    package static func b2sum(_ url: URL) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: url.path) else { throw KAError.failure(url.path, "cannot open for reading") }
        defer { try? handle.close() }   // read-only handle: a failed close loses nothing
        var hasher = Blake2b()
        while true {
            let chunk = try handle.read(upToCount: 1 << 20) ?? Data()
            if chunk.isEmpty { break }
            hasher.update(chunk)
        }
        return hasher.hexDigest()
    }

    /// Fills `@@NAME@@`; `@@B2SUM:<file>@@` only when `b2sums` is given (the second pass).
    static func fill(_ line: String, _ values: [String: String], where shown: String, b2sums: [String: String]?) throws -> String {
        guard line.contains("@@") else { return line }
        var out = ""
        var rest = Substring(line)
        while let open = rest.range(of: "@@") {
            out += rest[..<open.lowerBound]
            let after = rest[open.upperBound...]
            guard let close = after.range(of: "@@") else { out += rest[open.lowerBound...]; rest = ""; break }
            let key = String(after[..<close.lowerBound])
            let isName = !key.isEmpty && key.utf8.allSatisfy { NameBytes.isUpper($0) || NameBytes.isDigit($0) || $0 == UInt8(ascii: "_") }
            if key.hasPrefix("B2SUM:") {
                if let b2sums {
                    let file = String(key.dropFirst("B2SUM:".count))
                    guard let sum = b2sums[file] else { throw KAError.refusal(shown, "@@\(key)@@ names \(file), which the rendered dir does not have") }
                    out += sum
                } else {
                    out += "@@\(key)@@"
                }
            } else if isName {
                guard let v = values[key] else {
                    throw KAError.refusal(shown, "unknown placeholder @@\(key)@@", hint: "packaging/README.md lists the placeholders")
                }
                out += v
            } else {
                out += "@@"
                rest = after
                continue
            }
            rest = after[close.upperBound...]
        }
        return out + rest
    }

    static func firstPlaceholder(in text: String) -> String? {
        var rest = Substring(text)
        while let open = rest.range(of: "@@") {
            let after = rest[open.upperBound...]
            guard let close = after.range(of: "@@") else { return nil }
            let key = after[..<close.lowerBound]
            if !key.isEmpty, !key.contains(where: { $0 == "@" || $0.isWhitespace }) { return "@@\(key)@@" }
            rest = after
        }
        return nil
    }
}

extension FS {
    static func isRegularFile(_ url: URL) -> Bool {
        var st = stat()
        return lstat(url.path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }
}
