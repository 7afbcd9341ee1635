import Foundation

/// The pipeline's sections of the agent's config file (`KA_CONFIG`): where the baseline tarball comes from, how
/// builds are bounded, and how packages are signed and published.
///
/// ```yaml
/// baseline:
///   mirror: /srv/mirror/linux          # a dir holding the tarball (or url: https://…/linux-7.0.tar.xz)
///   tarball: linux-7.0.tar.xz          # default linux-<ref without v>.tar.xz
///   b2sum: <128 hex>                   # the expected pin; a mirror file that differs is refused
/// build:
///   wall_clock_cap: 4h                 # the build is killed after this, remote processes included
///   stall_warn: 20m                    # no new log line for this long: a warning on the job
///   stall_fail: 60m                    # … for this long: the build fails
/// signing:
///   host: hertz
///   key: <40 hex fingerprint>
///   gnupg_home: /srv/kernel-agent/gnupg
///   staging_dir: /srv/kernel-agent/staging
///   repo: {name: marfrit, dir: /srv/packages/arch/aarch64, url: http://hertz:8080/arch/aarch64}
///   backups_dir: /sparfuxdata/kernel-agent-backups   # <dir>/<host>/<version>/, kept 7 days (the newest always)
///   archive_dir: /sparfuxdata/kernel-agent-archive   # <dir>/<job-id>/, kept 1 year
/// logs:                                # where finished jobs' logs are published (a web server's dir)
///   host: hertz
///   dir: /srv/packages/logs            # <dir>/<host>/<job-id>/log
///   url: http://hertz:8080/logs        # <url>/<host>/<job-id>/ is linked from the job's status comment
/// ```
package struct PipelineConfig: Sendable {
    package struct Baseline: Sendable, Equatable {
        package var mirror: String?
        package var url: String?
        package var tarball: String?
        package var b2sum: String?
        /// The tarball's top dir when it is not `linux-<version>` (Debian's linux-source tarball: linux-source-6.12).
        package var topDir: String?
        package var origin: String
    }

    package struct Build: Sendable, Equatable {
        package var wallClockCap: Int = 4 * 3600
        package var stallWarn: Int = 20 * 60
        package var stallFail: Int = 60 * 60
        /// The user's packages checkout (marfrit-packages), where a manifest's `package.template_at` recipe lives.
        package var packagesCheckout: String? = nil
        /// `bar0: {skip: "<why>"}`: no build of this agent boots its kernel before signing (a site whose build hosts
        /// have no qemu yet, or the fleet-in-a-box, whose miniature tree makes no bootable Image). A manifest's own
        /// `verify.bar0` skip wins.
        package var bar0Skip: String? = nil
    }

    package struct Signing: Sendable, Equatable {
        package var host: HostName
        /// The fingerprint as written; checked (40 hex) when a build reaches signing, so a bad one fails closed.
        package var key: String?
        package var gnupgHome: String
        package var stagingDir: String
        package var repoName: String
        package var repoDir: String
        package var repoURL: String?
        /// The apt repo for Debian targets: `debian_repo: {dir, codename}`.
        package var debianRepo: DebianRepo?
        /// Install backups, `<dir>/<host>/<version>/` (seed: 7 days).
        package var backupsDir: String = Signing.defaultBackupsDir
        /// Archived build jobs, `<dir>/<job-id>/` (seed: 1 year).
        package var archiveDir: String = Signing.defaultArchiveDir
        /// `publish_command: [argv…]`: the user's own publish on the signing host (sign, repo-add, sync), run with the
        /// staged package paths appended, instead of ka's gpg + repo-add. ka still verifies what it published.
        package var publishCommand: [String]? = nil
        package var origin: String
        package static let defaultBackupsDir = "/sparfuxdata/kernel-agent-backups"
        package static let defaultArchiveDir = "/sparfuxdata/kernel-agent-archive"
    }

    /// The log host: a web server's dir where each job's log is published for a year, and the URL it is served at.
    package struct Logs: Sendable, Equatable {
        package var host: HostName
        package var dir: String
        package var url: String
        package var origin: String

        /// `<url>/<host>/<job-id>/`: where the log of a job about `subject` is read.
        package func link(subject: String, job: JobID) -> String { "\(url)/\(subject)/\(job)/" }
        package func dir(subject: String, job: JobID) -> String { "\(dir)/\(subject)/\(job)" }
    }

    /// `install:`: how `ka install` and `ka verify` wait for a rebooted target.
    package struct Install: Sendable, Equatable {
        /// How often the SSH heartbeat is tried while a target reboots (Bar 1's verdict comes within one of these).
        package var heartbeatInterval: Int = 10
        /// Bar 1: the target must answer within this long after the reboot (seed: 10 min).
        package var heartbeatTimeout: Int = 600
        /// How often a probe that ended in an infra error is tried again (Bar 4).
        package var probeRetries: Int = 2
        /// Where the install stages packages on the target.
        package var cacheDir: String = "/var/cache/kernel-agent"
    }

    package struct DebianRepo: Sendable, Equatable {
        package var dir: String
        package var codename: String
    }

    package let file: String?
    package var baseline: Baseline?
    package var build = Build()
    package var signing: Signing?
    package var install = Install()
    package var logs: Logs?

    package static let none = PipelineConfig(file: nil)

    package static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws -> PipelineConfig {
        guard let path = env["KA_CONFIG"], !path.isEmpty else { return .none }
        let text = try AgentConfig.readText(path, via: "KA_CONFIG")
        return try parse(text, file: path)
    }

    package static func parse(_ text: String, file: String) throws -> PipelineConfig {
        let doc = try YAMLValue.parse(text, file: file)
        let top = try doc.mapping(allowed: AgentConfig.topLevelKeys)
        var config = PipelineConfig(file: file)
        if let b = top["baseline"] { config.baseline = try parseBaseline(b) }
        if let b = top["build"] { config.build = try parseBuild(b) }
        if let s = top["signing"] { config.signing = try parseSigning(s) }
        if let i = top["install"] { config.install = try parseInstall(i) }
        if let l = top["logs"] { config.logs = try parseLogs(l) }
        return config
    }

    static func absolutePath(_ v: YAMLValue) throws -> String {
        let text = try v.string()
        guard text.hasPrefix("/"), !text.split(separator: "/").contains(".."), !text.utf8.contains(0) else {
            throw v.error("'\(text)' is not an absolute path without '..'", hint: "write the full path, e.g. /srv/kernel-agent/staging")
        }
        return text
    }

    static func b2sum(_ v: YAMLValue) throws -> String {
        let text = try v.string()
        guard Hex.isLowerHex(text, count: 128) else { throw v.error("a b2sum is 128 lower-case hex digits", hint: "b2sum <file> prints it") }
        return text
    }

    static func parseBaseline(_ value: YAMLValue) throws -> Baseline {
        let m = try value.mapping(allowed: ["mirror", "url", "tarball", "b2sum", "top_dir"])
        var b = Baseline(origin: value.location.description)
        if let v = m["mirror"] { b.mirror = try absolutePath(v) }
        if let v = m["url"] {
            let text = try v.string()
            // the URL lands in the PKGBUILD's source=("…"): only characters that are inert inside bash's double quotes
            let safe = text.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || ":/._~%+-=?&@,".unicodeScalars.contains($0)) }
            guard text.hasPrefix("https://") || text.hasPrefix("http://"), safe else {
                throw v.error("'\(text)' is not an http(s) URL", hint: "e.g. https://cdn.kernel.org/pub/linux/kernel/v7.x/linux-7.0.tar.xz")
            }
            b.url = text
        }
        if b.mirror != nil && b.url != nil { throw value.error("baseline has both mirror and url", hint: "keep one") }
        if let v = m["tarball"] {
            let name = try v.string()
            guard BaselineTarball.isValidName(name) else {
                throw v.error("'\(name)' is not a tarball name like linux-7.0.tar.xz", hint: "linux-<version>.tar.{xz,gz,zst,bz2}")
            }
            b.tarball = name
        }
        if let v = m["b2sum"] { b.b2sum = try b2sum(v) }
        if let v = m["top_dir"] {
            let dir = try v.string()
            // it becomes the recipe's _srcname, which the build cds into: one plain path component
            guard PackageRenderer.isPackageName(dir.lowercased()), !dir.contains("/"), dir != ".", dir != ".." else {
                throw v.error("'\(dir)' is not a tarball's top dir", hint: "one directory name, e.g. linux-source-6.12")
            }
            b.topDir = dir
        }
        return b
    }

    static func parseBuild(_ value: YAMLValue) throws -> Build {
        let m = try value.mapping(allowed: ["wall_clock_cap", "stall_warn", "stall_fail", "packages_checkout", "bar0"])
        var b = Build()
        func seconds(_ key: String) throws -> Int? {
            guard let v = m[key] else { return nil }
            let text = try v.string()
            guard let n = text.utf8.allSatisfy(NameBytes.isDigit) ? Int(text) : Duration.parseSeconds(text), n >= 1, n <= 7 * 86400 else {
                throw v.error("expected a duration up to 7d, found '\(text)'", hint: "e.g. 4h, 20m or 90s")
            }
            return n
        }
        if let n = try seconds("wall_clock_cap") { b.wallClockCap = n }
        if let n = try seconds("stall_warn") { b.stallWarn = n }
        if let n = try seconds("stall_fail") { b.stallFail = n }
        if let v = m["packages_checkout"] { b.packagesCheckout = try absolutePath(v) }
        if let v = m["bar0"] {
            // the agent-wide switch only turns Bar 0 off, with a reason; how a kernel boots is the manifest's
            let bar = try v.mapping(allowed: ["skip"])
            let reason = try bar.required("skip").string().trimmingCharacters(in: .whitespacesAndNewlines)
            guard !reason.isEmpty else { throw v.error("build.bar0.skip needs its reason", hint: "e.g. bar0: {skip: \"the build hosts have no qemu yet\"}") }
            b.bar0Skip = reason
        }
        guard b.stallWarn < b.stallFail else {
            throw value.error("stall_warn (\(b.stallWarn) s) must be shorter than stall_fail (\(b.stallFail) s)")
        }
        return b
    }

    static func parseInstall(_ value: YAMLValue) throws -> Install {
        let m = try value.mapping(allowed: ["heartbeat_interval", "heartbeat_timeout", "probe_retries", "cache_dir"])
        var i = Install()
        func seconds(_ key: String, max: Int) throws -> Int? {
            guard let v = m[key] else { return nil }
            let text = try v.string()
            guard let n = text.utf8.allSatisfy(NameBytes.isDigit) ? Int(text) : Duration.parseSeconds(text), n >= 1, n <= max else {
                throw v.error("\(key): '\(text)' is not a duration from 1 s to \(max) s", hint: "write e.g. 10s, 2m or 600")
            }
            return n
        }
        if let n = try seconds("heartbeat_interval", max: 600) { i.heartbeatInterval = n }
        if let n = try seconds("heartbeat_timeout", max: 6 * 3600) { i.heartbeatTimeout = n }
        if let v = m["probe_retries"] {
            guard let n = Int(try v.string()), (0...10).contains(n) else { throw v.error("probe_retries must be 0…10") }
            i.probeRetries = n
        }
        if let v = m["cache_dir"] { i.cacheDir = try absolutePath(v) }
        return i
    }

    static func parseSigning(_ value: YAMLValue) throws -> Signing {
        let m = try value.mapping(allowed: ["host", "key", "gnupg_home", "staging_dir", "repo", "backups_dir", "archive_dir", "debian_repo",
                                            "publish_command"])
        let hostV = try m.required("host")
        let host: HostName
        do { host = try HostName(try hostV.string()) } catch let e as KAError { throw hostV.error(e.message, hint: e.hint) }
        let repoV = try m.required("repo")
        let rm = try repoV.mapping(allowed: ["name", "dir", "url"])
        let nameV = try rm.required("name")
        let name = try nameV.string()
        guard PackageRenderer.isPackageName(name) else { throw nameV.error("'\(name)' is not a pacman repo name", hint: "lower-case letters, digits, - and _") }
        var debian: DebianRepo?
        if let dv = m["debian_repo"] {
            let dm = try dv.mapping(allowed: ["dir", "codename", "url"])
            let cv = try dm.required("codename")
            let codename = try cv.string()
            guard PackageRenderer.isPackageName(codename), !codename.contains("/") else {
                throw cv.error("'\(codename)' is not a codename", hint: "lower-case letters, digits, - and _, e.g. fleet")
            }
            debian = DebianRepo(dir: try absolutePath(try dm.required("dir")), codename: codename)
        }
        var signing = Signing(host: host, key: try m["key"]?.string(),
                       gnupgHome: try m["gnupg_home"].map(absolutePath) ?? "/srv/kernel-agent/gnupg",
                       stagingDir: try m["staging_dir"].map(absolutePath) ?? "/srv/kernel-agent/staging",
                       repoName: name, repoDir: try absolutePath(try rm.required("dir")), repoURL: try rm["url"]?.string(),
                       debianRepo: debian, origin: value.location.description)
        if let v = m["backups_dir"] { signing.backupsDir = try remoteDir(v) }
        if let v = m["archive_dir"] { signing.archiveDir = try remoteDir(v) }
        if let v = m["publish_command"] {
            let argv = try v.stringList()
            guard let first = argv.first, !argv.contains(where: \.isEmpty), first.hasPrefix("/") || !first.contains("/") else {
                throw v.error("publish_command must be an argv whose first word is a command name or an absolute path",
                              hint: "e.g. [sudo, -n, /opt/herding/bin/marfrit-publish-arch, aarch64]; the package paths are appended")
            }
            signing.publishCommand = argv
        }
        return signing
    }

    /// An absolute path the agent may write on a remote host (RemotePath's roots), for dirs that prune removes from.
    static func remoteDir(_ v: YAMLValue) throws -> String {
        let text = try absolutePath(v)
        do { return try RemotePath(text).value } catch let e as KAError { throw v.error(e.message, hint: e.hint) }
    }

    static func parseLogs(_ value: YAMLValue) throws -> Logs {
        let m = try value.mapping(allowed: ["host", "dir", "url"])
        let hostV = try m.required("host")
        let host: HostName
        do { host = try HostName(try hostV.string()) } catch let e as KAError { throw hostV.error(e.message, hint: e.hint) }
        let urlV = try m.required("url")
        var url = try urlV.string()
        guard url.hasPrefix("https://") || url.hasPrefix("http://"), !url.contains(where: { $0.isWhitespace || $0 == "<" || $0 == ">" || $0 == "`" }) else {
            throw urlV.error("'\(url)' is not an http(s) URL", hint: "e.g. https://logs.reauktion.de")
        }
        while url.hasSuffix("/") { url.removeLast() }
        return Logs(host: host, dir: try remoteDir(try m.required("dir")), url: url, origin: value.location.description)
    }
}

/// The baseline tarball of a manifest: its name, and where the agent finds it.
package enum BaselineTarball {
    package static func isValidName(_ name: String) -> Bool {
        guard name.hasPrefix("linux-"), name.utf8.count <= 200 else { return false }
        for ext in [".tar.xz", ".tar.gz", ".tar.zst", ".tar.bz2"] where name.hasSuffix(ext) {
            let version = name.dropFirst("linux-".count).dropLast(ext.count)
            return !version.isEmpty && version.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "_" || $0 == "+") }
        }
        return false
    }

    /// `v7.0` → `7.0`: the version a tarball of the ref carries.
    package static func version(ofRef ref: String) -> String { ref.hasPrefix("v") ? String(ref.dropFirst()) : ref }

    /// The version a tarball name spells (`linux-7.0.tar.xz` → `7.0`).
    package static func version(ofName name: String) -> String? {
        guard isValidName(name) else { return nil }
        let noExt = name.components(separatedBy: ".tar.").first ?? name
        return String(noExt.dropFirst("linux-".count))
    }

    package static func defaultName(ref: String) -> String { "linux-\(version(ofRef: ref)).tar.xz" }
}

extension Hex {
    static func isLowerHex(_ s: String, count: Int) -> Bool {
        s.utf8.count == count && s.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }
}
