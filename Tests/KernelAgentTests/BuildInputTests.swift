import Foundation
import KATestSupport
import Testing
@testable import KernelAgent

/// Issue 8 §1 and §3.1 without a box: the pins (config, baseline tarball) in the lock and what makes a lock stale,
/// the pipeline's config sections, and the Swift renderer of packaging/ against scripts/render-pkgbuild.
@Suite struct BuildInputTests {
    /// A sandbox with the shipped fleet/ and patches/, a mirror dir with a tarball, and a pipeline config naming it.
    final class Pinned {
        let s: Sandbox
        let mirror: URL
        var pipeline: PipelineConfig
        init() throws {
            s = try Sandbox()
            mirror = s.url("mirror")
            try FileManager.default.createDirectory(at: mirror, withIntermediateDirectories: true)
            try Data("not really a tarball".utf8).write(to: mirror.appendingPathComponent("linux-7.0.tar.xz"))
            pipeline = try PipelineConfig.parse("baseline:\n  mirror: \(mirror.path)\n", file: "ka.yaml")
        }
        var manifest: Manifest { get throws { try Manifest.load(HostName("fresnel"), in: s.ws) } }
        func inputs() throws -> BuildInputs { try BuildInputs.resolve(try manifest, ws: s.ws, pipeline: pipeline) }

        /// Promotes fresnel with these pins; returns the lock as `ka build` reads it.
        func promote() async throws -> LockFile {
            let m = try manifest
            let out = try s.ws.promoteDir(m.host, ref: m.baseline.ref, manifest: m.file)
            let promotion = try Promotion.stream(m, resolver: Resolver(workspace: s.ws, policy: try s.ctx.policy()),
                                                 out: out, shown: "build/fresnel/v7.0", inputs: try inputs())
            let file = try StagedFile.create(for: out, shown: "build/fresnel/v7.0/manifest.lock")
            var sink = FileSink(file)
            try promotion.writeLock(applyCheck: "skipped", to: &sink)
            _ = try sink.finish()
            try PromoteOutput.publish([("manifest.lock", file), (Promotion.cumulativeName(m.host), promotion.cumulative)], to: out)
            return try LockFile.load(out.appendingPathComponent("manifest.lock"), shown: "build/fresnel/v7.0/manifest.lock")
        }

        func staleness(_ lock: LockFile) throws -> String? {
            let m = try manifest
            let (series, sums) = try LockFile.currentSeries(m, resolver: Resolver(workspace: s.ws, policy: try s.ctx.policy()))
            return lock.staleness(manifest: m, series: series, patchB2sums: sums, inputs: try inputs())
        }
    }

    @Test func theLockPinsTheConfigAndTheTarballAndNamesEachInputThatMoves() async throws {
        let p = try Pinned()
        let lock = try await p.promote()
        #expect(lock.config?.path == "fleet/config/fresnel.config" && lock.config?.olddefconfig == true)
        #expect(lock.config?.b2sum == Blake2b.hex(try Data(contentsOf: p.s.url("fleet/config/fresnel.config"))))
        #expect(lock.tarballName == "linux-7.0.tar.xz" && lock.tarballB2sum == Blake2b.hex(Data("not really a tarball".utf8)))
        #expect(try p.staleness(lock) == nil)

        // each input, changed on its own, is named; put back, the lock holds again
        func check(_ rel: String, append: String, expect: String) throws {
            let before = try p.s.read(rel)
            try p.s.write(rel, before + append)
            let why = try p.staleness(lock)
            #expect(why?.contains(expect) == true, "\(rel): \(why ?? "nil")")
            try p.s.write(rel, before)
            #expect(try p.staleness(lock) == nil)
        }
        try check("fleet/fresnel.yaml", append: "# a comment\n", expect: "the manifest fleet/fresnel.yaml changed")
        try check("fleet/config/fresnel.config", append: "CONFIG_X=y\n", expect: "the config changed")
        try check("mirror/linux-7.0.tar.xz", append: "!", expect: "the baseline changed")
        let patch = try #require(FS.regularFiles(under: p.s.url("patches/board/pinebook-pro")).first { $0.hasSuffix(".patch") })
        try check("patches/board/pinebook-pro/\(patch)", append: "\n", expect: "changed since the lock (b2sum")
    }

    @Test func aMissingConfigFileIsRefusedAtItsManifestLine() throws {
        let p = try Pinned()
        try FileManager.default.removeItem(at: p.s.url("fleet/config/fresnel.config"))
        let e = try #require(throws: KAError.self) { try p.inputs() }
        #expect(e.description.contains("fleet/fresnel.yaml:13:9") && e.description.contains("fleet/config/fresnel.config does not exist"), "\(e)")
        #expect(e.hint?.contains("/proc/config.gz") == true)
        // a path out of fleet/config/ is refused where it is written
        try p.s.write("fleet/fresnel.yaml", try p.s.read("fleet/fresnel.yaml").replacingOccurrences(of: "file: fleet/config/fresnel.config", with: "file: ../../etc/passwd"))
        let bad = try #require(throws: KAError.self) { try p.manifest }
        #expect(bad.description.contains("fleet/fresnel.yaml:13:") && bad.description.contains("must be fleet/config/<name>.config"), "\(bad)")
    }

    @Test func aTarballThatIsNotTheConfiguredPinIsRefusedAndAMissingOneIsUnpinned() throws {
        let p = try Pinned()
        p.pipeline.baseline?.b2sum = String(repeating: "0", count: 128)
        let e = try #require(throws: KAError.self) { try p.inputs() }
        #expect(e.description.contains("baseline.b2sum") && e.description.contains("not the pinned 0000"), "\(e)")
        p.pipeline.baseline?.b2sum = nil
        p.pipeline.baseline?.tarball = "linux-7.1.tar.xz"
        let unpinned = try p.inputs().tarball
        #expect(unpinned.b2sum == nil && unpinned.unpinnedReason?.contains("linux-7.1.tar.xz is not in the mirror") == true)
        #expect(try BuildInputs.resolve(try p.manifest, ws: p.s.ws, pipeline: .none).tarball.unpinnedReason == "KA_CONFIG has no baseline mirror or url")
    }

    @Test func anOldLockIsRefusedWithTheCommandThatRewritesIt() throws {
        let s = try Sandbox()
        try s.write("build/fresnel/v7.0/manifest.lock", "lock_version: 2\nhost: \"fresnel\"\n")
        let e = try #require(throws: KAError.self) { try LockFile.load(s.url("build/fresnel/v7.0/manifest.lock"), shown: "build/fresnel/v7.0/manifest.lock") }
        #expect(e.description.contains("build/fresnel/v7.0/manifest.lock:1:") && e.description.contains("does not pin the config") && e.hint?.contains("ka promote") == true, "\(e)")
    }

    @Test func thePipelineSectionsParseAndRefuseBadValuesAtTheirLine() throws {
        let ok = try PipelineConfig.parse("""
        baseline: {mirror: /srv/mirror, tarball: linux-7.0.tar.xz}
        build: {wall_clock_cap: 2h, stall_warn: 5m, stall_fail: 10m}
        signing:
          host: hertz
          key: 6FC85C72BF58337DAB0E2A91CDD8553BCE959B82
          repo: {name: marfrit, dir: /srv/packages/arch/aarch64}
        """, file: "ka.yaml")
        #expect(ok.build.wallClockCap == 7200 && ok.build.stallWarn == 300 && ok.build.stallFail == 600)
        #expect(ok.signing?.host.value == "hertz" && ok.signing?.gnupgHome == "/srv/kernel-agent/gnupg" && ok.signing?.repoName == "marfrit")
        let cases: [(String, String)] = [
            ("baseline: {mirror: relative/dir}", "ka.yaml:1:20"),
            ("build: {stall_warn: 10m, stall_fail: 5m}", "must be shorter"),
            ("build: {wall_clock_cap: forever}", "expected a duration"),
            ("signing: {host: hertz, repo: {name: Bad Name, dir: /srv/x}}", "not a pacman repo name"),
            ("baseline: {mirror: /a, url: https://x/linux-7.0.tar.xz}", "both mirror and url"),
            ("baseline: {tarball: kernel.tgz}", "not a tarball name"),
            ("bulid: {}", "bulid"),
        ]
        for (text, expected) in cases {
            let e = try #require(throws: KAError.self) { try PipelineConfig.parse(text, file: "ka.yaml") }
            #expect(e.description.contains(expected), "\(text) → \(e)")
        }
    }

    @Test func theSwiftRendererMatchesScriptsRenderPkgbuildByteForByte() async throws {
        let s = try Sandbox()
        let tarball = s.url("in/linux-7.0.tar.xz"), patch = s.url("in/cumulative.patch"), config = s.url("in/config")
        try s.write("in/linux-7.0.tar.xz", "tarball bytes")
        try s.write("in/cumulative.patch", "a patch\n")
        try s.write("in/config", "CONFIG_X=y\n")
        for (flavour, mode) in [("arch", Manifest.InstallMode.alongside), ("arch", .replace), ("debian", .alongside)] {
            let ours = s.url("ours-\(flavour)-\(mode)"), theirs = s.url("theirs-\(flavour)-\(mode)")
            let template = TestEnv.projectRoot.appendingPathComponent("packaging/\(flavour)")
            var input = PackageRenderer.Inputs(host: try HostName("fresnel"), suffix: "fresnel-fourier", tarballFile: tarball,
                                               tarballName: "linux-7.0.tar.xz", tarballB2sum: try PackageRenderer.b2sum(tarball),
                                               patch: patch, config: config, olddefconfig: true, installMode: mode,
                                               replaces: mode == .replace ? "linux-aarch64" : nil)
            input.pkgrel = "3"
            _ = try PackageRenderer(template: template, shown: "packaging/\(flavour)").render(input, into: ours)
            var argv = [TestEnv.projectRoot.appendingPathComponent("scripts/render-pkgbuild").path, "--template", template.path,
                        "--host", "fresnel", "--suffix", "fresnel-fourier", "--pkgrel", "3", "--tarball", tarball.path,
                        "--patch", patch.path, "--config", config.path, "--out", theirs.path, "--install-mode", mode.rawValue]
            if mode == .replace { argv += ["--replaces", "linux-aarch64"] }
            let r = try await TestCommand.run(argv)
            #expect(r.status == 0, "\(r.stderrText)")
            let names = try FileManager.default.contentsOfDirectory(atPath: theirs.path).sorted()
            #expect(try FileManager.default.contentsOfDirectory(atPath: ours.path).sorted() == names)
            for n in names {
                #expect(try Data(contentsOf: ours.appendingPathComponent(n)) == Data(contentsOf: theirs.appendingPathComponent(n)), "\(flavour)/\(mode): \(n) differs")
                let mine = try FileManager.default.attributesOfItem(atPath: ours.appendingPathComponent(n).path)[.posixPermissions] as? Int
                let other = try FileManager.default.attributesOfItem(atPath: theirs.appendingPathComponent(n).path)[.posixPermissions] as? Int
                #expect(mine.map { $0 & 0o111 != 0 } == other.map { $0 & 0o111 != 0 }, "\(n): executable bit")
            }
        }
    }

    @Test func anUnknownPlaceholderIsAnErrorNamingTheTemplateLineAndLeavesNothing() throws {
        let s = try Sandbox()
        let template = s.url("tpl")
        try FileManager.default.copyItem(at: TestEnv.projectRoot.appendingPathComponent("packaging/arch"), to: template)
        let pkgbuild = template.appendingPathComponent("PKGBUILD")
        try (try String(contentsOf: pkgbuild, encoding: .utf8) + "# @@NOT_A_PLACEHOLDER@@\n").write(to: pkgbuild, atomically: true, encoding: .utf8)
        let lines = try String(contentsOf: pkgbuild, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).count - 1
        try s.write("in/linux-7.0.tar.xz", "t"); try s.write("in/p", ""); try s.write("in/c", "")
        let input = PackageRenderer.Inputs(host: try HostName("fresnel"), suffix: "x", tarballFile: s.url("in/linux-7.0.tar.xz"),
                                           tarballName: "linux-7.0.tar.xz", tarballB2sum: try PackageRenderer.b2sum(s.url("in/linux-7.0.tar.xz")),
                                           patch: s.url("in/p"), config: s.url("in/c"), olddefconfig: true, installMode: .alongside)
        let out = s.url("out")
        let e = try #require(throws: KAError.self) { try PackageRenderer(template: template, shown: "tpl").render(input, into: out) }
        #expect(e.description.contains("tpl/PKGBUILD:\(lines)") && e.description.contains("@@NOT_A_PLACEHOLDER@@"), "\(e)")
        #expect(!FileManager.default.fileExists(atPath: out.path))
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.root.path).allSatisfy { !$0.hasPrefix(".render-") })
    }

    @Test func releasesListingsAndB2sumLinesAreReadStrictly() throws {
        let listing = "linux-x-7.0-1-aarch64.pkg.tar.zst\nlinux-x-7.0-1-aarch64.pkg.tar.zst.sig\nlinux-x-7.0-4-aarch64.pkg.tar.zst\n"
            + "linux-x-headers-7.0-9-aarch64.pkg.tar.zst\nlinux-x-7.1-7-aarch64.pkg.tar.zst\nmarfrit.db\n"
        #expect(BuildSteps.newestRelease(in: listing, pkgbase: "linux-x", pkgver: "7.0") == 4)
        #expect(BuildSteps.newestRelease(in: "", pkgbase: "linux-x", pkgver: "7.0") == 0)
        #expect(BuildSteps.dbEntry("linux-x-headers-7.0-2-aarch64.pkg.tar.zst") == "linux-x-headers-7.0-2")
        let sum = String(repeating: "a", count: 128)
        #expect(try BuildSteps.parseB2sums("\(sum)  linux-x-7.0-1-aarch64.pkg.tar.zst\n", from: "t").map(\.name) == ["linux-x-7.0-1-aarch64.pkg.tar.zst"])
        for bad in ["", "\(sum)  ../evil.pkg.tar.zst", "short  linux.pkg.tar.zst", "\(sum)  notes.txt"] {
            #expect(throws: KAError.self, "\(bad)") { try BuildSteps.parseB2sums(bad, from: "t") }
        }
    }
}
