import Foundation
import GRDB
import KATestSupport
import KernelAgent
import Testing

/// `ka build` on the fleet-in-a-box (issue 8): real makepkg as kbuild on a build host, a real gpg key and
/// repo-add on hertz, over real ssh. Each test works in a Harness root of its own (fleet/, patches/, packaging/
/// copied) and its own state dir; the box's hosts are shared, so the tests run one at a time.
@Suite(.serialized, .holdsBoxHosts("fresnel")) struct BuildBoxTests {
    static var boxDir: URL { URL(fileURLWithPath: ProcessInfo.processInfo.environment["KA_BOX_DIR"] ?? "/nonexistent") }
    static var repoDir: URL { boxDir.appendingPathComponent("hosts/hertz/fs/srv/packages/arch/aarch64") }

    static func ka(_ h: Harness, _ args: [String], config: URL? = nil) async throws -> TestCommand.Result {
        var env = try JobBoxTests.boxEnvironment()
        env["KA_ROOT"] = h.root.path
        env["KA_STATE_DIR"] = h.root.appendingPathComponent(".ka").path
        if let config { env["KA_CONFIG"] = config.path }
        return try await Harness.runOffPool([ChaosTests.kaBinary] + args, cwd: h.root, environment: env)
    }

    /// The box's ka.yaml with `edit` applied, in the harness root.
    /// The box's KA_CONFIG with `keys` (indented lines) added to its `build:` section, which holds Bar 0's skip.
    static func buildKeys(_ text: String, _ keys: String) -> String {
        guard let r = text.range(of: "\nbuild:\n") else { return text + "build:\n" + keys }
        return text.replacingCharacters(in: r, with: "\nbuild:\n" + keys)
    }

    static func config(_ h: Harness, _ name: String, _ edit: (String) -> String) throws -> URL {
        let text = try String(contentsOfFile: try JobBoxTests.boxEnvironment()["KA_CONFIG"] ?? "", encoding: .utf8)
        let url = h.root.appendingPathComponent(name)
        try edit(text).write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    /// Every entry of the published repo dir: name → b2sum (symlinks: their target).
    static func snapshot() throws -> [String: String] {
        var out: [String: String] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: repoDir.path) {
            let url = repoDir.appendingPathComponent(name)
            if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: url.path) { out[name] = "-> \(target)"; continue }
            out[name] = Blake2b.hex(try Data(contentsOf: url))
        }
        return out
    }

    /// A makepkg on boltzmann (first on PATH) that prints one line, counts its call, then prints nothing for 300 s.
    static func installSilentMakepkg() async throws -> String {
        let counter = "/srv/kernel-agent/makepkg-stalls"
        let wrapper = "#!/bin/sh\necho stall >> \(counter)\necho 'makepkg: starting'\nexec sleep 300\n"
        _ = try await JobBoxTests.inHost("boltzmann", ["sh", "-c", "printf '%s' \"$1\" > /usr/local/bin/makepkg && chmod 0755 /usr/local/bin/makepkg", "x", wrapper])
        return counter
    }

    static func removeSilentMakepkg(_ counter: String) {
        // cleanup after the test's own assertions; a failure here shows as the next build test's failure
        _ = try? TestCommand.runBlocking([JobBoxTests.fleetBox, "exec", "boltzmann", "rm", "-f", "/usr/local/bin/makepkg", counter], environment: ProcessInfo.processInfo.environment)
    }

    static func blocks(_ h: Harness) throws -> [Block] {
        try SQLiteStateStore.open(Workspace(root: h.root, stateDir: h.root.appendingPathComponent(".ka"))).openBlocks()
    }

    static func promote(_ h: Harness, config: URL? = nil) async throws {
        let r = try await ka(h, ["promote", "fresnel"], config: config)
        #expect(r.status == 0, "\(r.stdoutText)\n\(r.stderrText)")
    }

    @Test func promoteThenBuildPublishesASignedRepoWhoseDtbCarriesTheBoardPatch() async throws {
        let h = try Harness()
        try await Self.promote(h)
        let r = try await Self.ka(h, ["build", "fresnel"])
        #expect(r.status == 0, "\(r.stdoutText)\n\(r.stderrText)")
        #expect(r.stdoutText.contains("build fresnel: installable 7.0-"), "\(r.stdoutText)")
        // the published db verifies with gpg on hertz, and names both packages
        let verify = try await JobBoxTests.inHost("hertz", ["runuser", "-u", "kbuild", "--", "env", "GNUPGHOME=/srv/kernel-agent/gnupg",
                                                            "gpg", "--batch", "--verify", "/srv/packages/arch/aarch64/marfrit.db.tar.zst.sig",
                                                            "/srv/packages/arch/aarch64/marfrit.db.tar.zst"])
        #expect(verify.status == 0 && verify.stderrText.contains("Good signature"), "\(verify.stderrText)")
        let listing = try Self.snapshot()
        let rels = listing.keys.filter { $0.hasPrefix("linux-fresnel-fourier-7.0-") && $0.hasSuffix(".pkg.tar.zst") }.sorted()
        let pkg = try #require(rels.last, "\(listing.keys.sorted())")
        #expect(listing["\(pkg).sig"] != nil)
        // the package's rk3399-pinebook-pro.dtb has the 1.704 GHz OPP of the board patch
        let x = h.root.appendingPathComponent("x")
        try FileManager.default.createDirectory(at: x, withIntermediateDirectories: true)
        let tar = try await TestCommand.run(["bsdtar", "-xf", Self.repoDir.appendingPathComponent(pkg).path, "-C", x.path])
        #expect(tar.status == 0, "\(tar.stderrText)")
        let dtb = x.appendingPathComponent("boot/dtbs-fresnel-fourier/rockchip/rk3399-pinebook-pro.dtb").path
        let opp = try await TestCommand.run(["fdtget", dtb, "/opp-table-0/opp-1704000000", "opp-hz"])
        #expect(opp.status == 0 && opp.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines) == "0 1704000000", "\(opp.stdoutText) \(opp.stderrText)")
        // ka status shows the host installable, with its version
        let status = try await Self.ka(h, ["status", "--json"])
        #expect(status.stdoutText.contains("\"installable\" : \"7.0-"), "\(status.stdoutText)")
        // a second build of the same lock gets the next release; the first stays, and the previous db is kept as .old
        let again = try await Self.ka(h, ["build", "fresnel"])
        #expect(again.status == 0, "\(again.stdoutText)\n\(again.stderrText)")
        let after = try Self.snapshot()
        #expect(after[pkg] == listing[pkg], "a published package is never replaced")
        #expect(after.keys.filter { $0.hasPrefix("linux-fresnel-fourier-7.0-") && $0.hasSuffix(".pkg.tar.zst") }.count == rels.count + 1)
        #expect(after["marfrit.db.tar.zst.old"] == listing["marfrit.db.tar.zst"], "the previous db is kept as .old")
    }

    @Test func aStaleLockIsRefusedNamingTheInputThatChanged() async throws {
        let h = try Harness()
        try await Self.promote(h)
        let config = h.root.appendingPathComponent("fleet/config/fresnel.config")
        try (try String(contentsOf: config, encoding: .utf8) + "CONFIG_KA_TEST_CHANGE=y\n").write(to: config, atomically: true, encoding: .utf8)
        let r = try await Self.ka(h, ["build", "fresnel"])
        #expect(r.status == 2 && r.stderrText.contains("is stale: the config changed"), "\(r.stderrText)")
        try FileManager.default.removeItem(at: config)
        let gone = try await Self.ka(h, ["promote", "fresnel"])
        #expect(gone.status == 2 && gone.stderrText.contains("fleet/fresnel.yaml:13:") && gone.stderrText.contains("does not exist"), "\(gone.stderrText)")
    }

    /// The box's ka.yaml with boltzmann moved to an address in the box's own /24 where nothing answers.
    static func boltzmannDown(_ h: Harness, _ name: String, _ more: (String) -> String = { $0 }) throws -> URL {
        try Self.config(h, name) { text in
            more(text.replacingOccurrences(of: ".11\n", with: ".99\n").replacingOccurrences(of: "ssh:\n  dir:", with: "ssh:\n  connect_timeout: 3\n  dir:"))
        }
    }

    @Test func primaryDownAndHisUnreachableFallThroughToFermiAndFileHostChanged() async throws {
        let h = try Harness()
        // His on a loopback port where nothing listens: ampere (on demand) cannot be woken, and the note says so
        let closed = ChaosTests.freePort()
        let moved = try Self.boltzmannDown(h, "moved.yaml") { text in
            text.split(separator: "\n", omittingEmptySubsequences: false).map { line in
                line.hasPrefix("  url: http://127.0.0.1:") ? "  url: http://127.0.0.1:\(closed)/mcp" : String(line)
            }.joined(separator: "\n")
        }
        try await Self.promote(h, config: moved)
        let r = try await Self.ka(h, ["build", "fresnel"], config: moved)
        #expect(r.status == 0, "\(r.stdoutText)\n\(r.stderrText)")
        #expect(r.stdoutText.contains("route to a build host") && r.stdoutText.contains(": fermi (skipped boltzmann: pre-flight failed"), "\(r.stdoutText)")
        #expect(r.stdoutText.contains("ampere: His unreachable or failed") && r.stdoutText.contains("127.0.0.1:\(closed)"), "\(r.stdoutText)")
        let filed = try Self.blocks(h).filter { $0.kind == .hostChanged }
        #expect(filed.map(\.scope) == [.buildHost("boltzmann")], "\(filed)")
        // the next build skips boltzmann for its open block, without trying it
        let next = try await Self.ka(h, ["build", "fresnel"], config: moved)
        #expect(next.status == 0 && next.stdoutText.contains("skipped boltzmann: open [ka:host-changed]"), "\(next.stdoutText)")
    }

    @Test func aBuildHostWithoutItsToolchainFilesBootstrapMissingAndTheNextHostBuilds() async throws {
        let h = try Harness()
        // fermi first for this host, and fermi without ccache (hidden in its own /usr overlay, put back after)
        let manifest = h.root.appendingPathComponent("fleet/fresnel.yaml")
        try (try String(contentsOf: manifest, encoding: .utf8) + "build_host:\n  primary: fermi\n  fallback: boltzmann\n")
            .write(to: manifest, atomically: true, encoding: .utf8)
        let hid = try await JobBoxTests.inHost("fermi", ["mv", "/usr/bin/ccache", "/usr/bin/ccache.ka-hidden"])
        #expect(hid.status == 0, "\(hid.stderrText)")
        defer { _ = try? TestCommand.runBlocking([JobBoxTests.fleetBox, "exec", "fermi", "mv", "/usr/bin/ccache.ka-hidden", "/usr/bin/ccache"], environment: ProcessInfo.processInfo.environment) }
        try await Self.promote(h)
        let r = try await Self.ka(h, ["build", "fresnel"])
        #expect(r.status == 0, "\(r.stdoutText)\n\(r.stderrText)")
        #expect(r.stdoutText.contains("route to a build host (fermi → boltzmann)") && r.stdoutText.contains(": boltzmann (skipped fermi: pre-flight failed (tools for build"), "\(r.stdoutText)")
        #expect(r.stdoutText.contains("missing: ccache"), "\(r.stdoutText)")
        let filed = try Self.blocks(h)
        #expect(filed.map(\.kind) == [.bootstrapMissing] && filed.first?.scope == .buildHost("fermi"), "\(filed)")
    }

    @Test func anAsleepAmpereIsWokenThroughHisAndBuildsThere() async throws {
        let h = try Harness()
        _ = try await Harness.runOffPool([JobBoxTests.fleetBox, "sleep", "ampere"], cwd: Harness.projectRoot, environment: try JobBoxTests.boxEnvironment())
        defer { _ = try? TestCommand.runBlocking([JobBoxTests.fleetBox, "sleep", "ampere"], environment: ProcessInfo.processInfo.environment) }
        let moved = try Self.boltzmannDown(h, "moved.yaml")
        try await Self.promote(h, config: moved)
        let r = try await Self.ka(h, ["build", "fresnel"], config: moved)
        #expect(r.status == 0, "\(r.stdoutText)\n\(r.stderrText)")
        #expect(r.stdoutText.contains(": ampere (skipped boltzmann: pre-flight failed"), "\(r.stdoutText)")
        let job = try #require(try JobBoxTests.jobs(h.root.appendingPathComponent(".ka")).first { $0.verb == "build" })
        let log = try String(contentsOf: JobLog.url(Workspace(root: h.root, stateDir: h.root.appendingPathComponent(".ka")), job.id), encoding: .utf8)
        #expect(log.contains("host-status ampere: asleep") && log.contains("wake-host ampere:"), "\(log.suffix(3000))")
        #expect(FileManager.default.fileExists(atPath: Self.boxDir.appendingPathComponent("hosts/ampere/fs/srv/kernel-agent/output/\(job.id)/.ka-built").path))
    }

    @Test func aPatchThatBreaksTheBuildFilesBuildFailWithTheLogTailAndKeepsTheTree() async throws {
        let h = try Harness()
        // applies cleanly (promote's check passes), then dtc rejects the board's tree
        try Self.addPinebookLine(h, patch: "0099-ka-test-break-the-dts.patch", subject: "break the Pinebook Pro DTS", line: "this is not device tree source;")
        let head = try String(contentsOf: TestEnvPaths.pinebookDTS(h), encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        #expect(head.count > 9 && head[7] == "/dts-v1/;" && head[8] == "#include <dt-bindings/input/gpio-keys.h>", "the patch's context moved: \(head.prefix(9))")
        try await Self.promote(h)
        let r = try await Self.ka(h, ["build", "fresnel"])
        #expect(r.status == 1 && r.stdoutText.contains("makepkg exited"), "\(r.stdoutText)\n\(r.stderrText)")
        let job = try #require(try JobBoxTests.jobs(h.root.appendingPathComponent(".ka")).first { $0.verb == "build" })
        let kept = Self.boxDir.appendingPathComponent("hosts/boltzmann/fs/srv/kernel-agent/keep/\(job.id)")
        #expect(FileManager.default.fileExists(atPath: kept.appendingPathComponent("PKGBUILD").path), "the failed tree is in keep/")
        #expect(!FileManager.default.fileExists(atPath: Self.boxDir.appendingPathComponent("hosts/boltzmann/fs/srv/kernel-agent/source/\(job.id)").path))
        let block = try #require(try Self.blocks(h).first { $0.kind == .buildFail })
        #expect(block.scope == .buildHost("boltzmann") && block.title.contains(job.id.value))
        let body = try #require(try Self.blockBodies(h).first { $0.contains("ka debug \(job.id)") })
        #expect(body.contains("Log tail") && body.contains("ERROR"), "\(body)")
        // ka debug names the kept dir on the build host
        let debug = try await Self.ka(h, ["debug", job.id.value])
        #expect(debug.status == 0 && debug.stdoutText.contains("/srv/kernel-agent/keep/\(job.id)") && debug.stdoutText.contains("boltzmann"), "\(debug.stdoutText)\n\(debug.stderrText)")
        let ran = try await Self.ka(h, ["debug", job.id.value, "--exec", "test", "-f", "PKGBUILD"])
        #expect(ran.status == 0, "\(ran.stdoutText)\n\(ran.stderrText)")
    }

    /// A board patch in the harness tree that adds `line` after the Pinebook Pro DTS's `/dts-v1/;` (line 8).
    static func addPinebookLine(_ h: Harness, patch name: String, subject: String, line: String) throws {
        try """
        From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001
        From: Test <test@example.org>
        Subject: [PATCH] ka test: \(subject)

        Scope: board/pinebook-pro
        ---
        diff --git a/arch/arm64/boot/dts/rockchip/rk3399-pinebook-pro.dts b/arch/arm64/boot/dts/rockchip/rk3399-pinebook-pro.dts
        --- a/arch/arm64/boot/dts/rockchip/rk3399-pinebook-pro.dts
        +++ b/arch/arm64/boot/dts/rockchip/rk3399-pinebook-pro.dts
        @@ -8,2 +8,3 @@
         /dts-v1/;
        +\(line)
         #include <dt-bindings/input/gpio-keys.h>

        """.write(to: h.root.appendingPathComponent("patches/board/pinebook-pro/\(name)"), atomically: true, encoding: .utf8)
    }

    static func blockBodies(_ h: Harness) throws -> [String] {
        let db = try DatabaseQueue(path: h.root.appendingPathComponent(".ka/state.sqlite").path)
        return try db.read { try String.fetchAll($0, sql: "SELECT body FROM blocks WHERE open = 1") }
    }

    @Test func aBuildPastTheCapIsKilledAndItsRemoteProcessesAreGone() async throws {
        let h = try Harness()
        let capped = try Self.config(h, "capped.yaml") { Self.buildKeys($0, "  wall_clock_cap: 4s\n") }
        try await Self.promote(h, config: capped)
        let r = try await Self.ka(h, ["build", "fresnel"], config: capped)
        #expect(r.status == 1 && r.stdoutText.contains("killed after the wall-clock cap of 4s"), "\(r.stdoutText)\n\(r.stderrText)")
        try await JobBoxTests.waitFor("makepkg to be gone on boltzmann", timeout: 30) {
            try await JobBoxTests.remote("boltzmann", matching: "makepkg").isEmpty
        }
    }

    @Test func aDebianTargetGetsDebsInASignedAptRepo() async throws {
        let h = try Harness()
        try FileManager.default.copyItem(at: h.root.appendingPathComponent("fleet/config/fresnel.config"),
                                         to: h.root.appendingPathComponent("fleet/config/pi-fleet.config"))
        try """
        host: pi-fleet
        baseline:
          repo: https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git
          ref: v7.0
        kernel_suffix: pi-fleet-test
        install:
          mode: alongside
          alongside: linux-image-arm64
        config:
          file: fleet/config/pi-fleet.config
        scopes:
          - board/pinebook-pro

        """.write(to: h.root.appendingPathComponent("fleet/pi-fleet.yaml"), atomically: true, encoding: .utf8)
        let p = try await Self.ka(h, ["promote", "pi-fleet"])
        #expect(p.status == 0, "\(p.stderrText)")
        let r = try await Self.ka(h, ["build", "pi-fleet"])
        #expect(r.status == 0, "\(r.stdoutText)\n\(r.stderrText)")
        #expect(r.stdoutText.contains("apt-ftparchive, gpg InRelease") && r.stdoutText.contains("build pi-fleet: installable 7.0-"), "\(r.stdoutText)")
        let verify = try await JobBoxTests.inHost("hertz", ["runuser", "-u", "kbuild", "--", "env", "GNUPGHOME=/srv/kernel-agent/gnupg",
                                                            "gpg", "--batch", "--verify", "/srv/packages/debian/dists/fleet/InRelease"])
        #expect(verify.status == 0 && verify.stderrText.contains("Good signature"), "\(verify.stderrText)")
        let repo = Self.boxDir.appendingPathComponent("hosts/hertz/fs/srv/packages/debian")
        let index = try String(contentsOf: repo.appendingPathComponent("dists/fleet/main/binary-arm64/Packages"), encoding: .utf8)
        let debs = index.split(separator: "\n").filter { $0.hasPrefix("Filename: pool/main/linux-image-pi-fleet-test_7.0-") }
        let deb = try #require(debs.last.map { String($0.dropFirst("Filename: ".count)) }, "\(index)")
        let contents = try await TestCommand.run(["dpkg-deb", "-c", repo.appendingPathComponent(deb).path])
        #expect(contents.stdoutText.contains("./boot/Image-pi-fleet-test") && contents.stdoutText.contains("./boot/dtbs-pi-fleet-test/rockchip/rk3399-pinebook-pro.dtb"),
                "\(contents.stdoutText.prefix(2000))")
        #expect(index.contains("Package: linux-headers-pi-fleet-test"))
    }

    @Test func thoroughPreflightChecksCompilerCcacheInodesClockAndTheDistccPool() async throws {
        let h = try Harness()
        let r = try await Self.ka(h, ["preflight", "--thorough", "boltzmann"])
        #expect(r.status == 0, "\(r.stdoutText)\n\(r.stderrText)")
        for check in ["✓ compiler version: gcc", "✓ ccache health: /srv/kernel-agent/ccache writable", "✓ free inodes under /srv/kernel-agent",
                      "✓ clock skew: ", "✓ distcc pool (warning only: kernel builds never use distcc)", "preflight boltzmann: ok"] {
            #expect(r.stdoutText.contains(check), "\(check) in \(r.stdoutText)")
        }
        // the quick preflight (what a build runs first) has none of them
        let quick = try await Self.ka(h, ["preflight", "boltzmann"])
        #expect(quick.status == 0 && !quick.stdoutText.contains("clock skew"), "\(quick.stdoutText)")
    }

    @Test func aSilentBuildWarnsThenFailsAsStalledAndIsKilled() async throws {
        let h = try Harness()
        // a makepkg on boltzmann that prints one line and then nothing (counting its calls)
        let counter = try await Self.installSilentMakepkg()
        defer { Self.removeSilentMakepkg(counter) }
        let stalled = try Self.config(h, "stall.yaml") { Self.buildKeys($0, "  stall_warn: 1s\n  stall_fail: 3s\n") }
        try await Self.promote(h, config: stalled)
        let r = try await Self.ka(h, ["build", "fresnel"], config: stalled)
        #expect(r.status == 1 && r.stdoutText.contains("stalled: no build output for 3s; killed"), "\(r.stdoutText)\n\(r.stderrText)")
        let job = try #require(try JobBoxTests.jobs(h.root.appendingPathComponent(".ka")).first { $0.verb == "build" })
        let log = try String(contentsOf: JobLog.url(Workspace(root: h.root, stateDir: h.root.appendingPathComponent(".ka")), job.id), encoding: .utf8)
        #expect(log.contains("warning: no build output from boltzmann for 1s"), "\(log.suffix(2000))")
        let calls = try await JobBoxTests.inHost("boltzmann", ["cat", counter])
        #expect(calls.stdoutText == "stall\n", "the stalled makepkg ran once: \(calls.stdoutText)")
        try await JobBoxTests.waitFor("the silent build to be gone", timeout: 30) { try await JobBoxTests.remote("boltzmann", matching: "sleep 300").isEmpty }
        #expect(try Self.blocks(h).contains { $0.kind == .buildFail && $0.scope == .buildHost("boltzmann") })
    }

    @Test func aWrongKeyOrAFailingRepoAddFilesSigningFailAndLeavesTheRepoByteForByte() async throws {
        let h = try Harness()
        try await Self.promote(h)
        let before = try Self.snapshot()
        let wrongKey = try Self.config(h, "wrong-key.yaml") { text in
            text.split(separator: "\n", omittingEmptySubsequences: false).map { line in
                line.hasPrefix("  key: ") ? "  key: " + String(repeating: "ab", count: 20) : String(line)
            }.joined(separator: "\n")
        }
        let r = try await Self.ka(h, ["build", "fresnel"], config: wrongKey)
        #expect(r.status == 1 && r.stdoutText.contains("no secret key"), "\(r.stdoutText)\n\(r.stderrText)")
        #expect(try Self.blocks(h).contains { $0.kind == .signingFail && $0.scope == .global })
        #expect(try Self.snapshot() == before, "nothing was published")
        // while [ka:signing-fail] is open, every build stops at signing
        let halted = try await Self.ka(h, ["build", "fresnel"])
        #expect(halted.status != 0 && halted.stdoutText.contains("halted by the open [ka:signing-fail]"), "\(halted.stdoutText)")
        #expect(try Self.snapshot() == before)
        // a repo-add that fails (a wrapper on hertz, counting its calls): fails closed too
        for b in try Self.blocks(h) { try SQLiteStateStore.open(Workspace(root: h.root, stateDir: h.root.appendingPathComponent(".ka"))).close(id: b.id) }
        let counter = "/srv/kernel-agent/repo-add-faults"
        let wrapper = "#!/bin/sh\necho fault >> \(counter)\necho 'repo-add: injected failure' >&2\nexit 1\n"
        _ = try await JobBoxTests.inHost("hertz", ["sh", "-c", "printf '%s' \"$1\" > /usr/local/bin/repo-add && chmod 0755 /usr/local/bin/repo-add", "x", wrapper])
        defer { Task { _ = try? await JobBoxTests.inHost("hertz", ["rm", "-f", "/usr/local/bin/repo-add", counter]) } }
        let failed = try await Self.ka(h, ["build", "fresnel"])
        #expect(failed.status == 1 && failed.stdoutText.contains("injected failure"), "\(failed.stdoutText)")
        let faults = try await JobBoxTests.inHost("hertz", ["cat", counter])
        #expect(faults.stdoutText == "fault\n", "the fault was hit exactly once: \(faults.stdoutText)")
        #expect(try Self.blocks(h).contains { $0.kind == .signingFail })
        #expect(try Self.snapshot() == before, "the repo is unchanged byte for byte")
        _ = try await JobBoxTests.inHost("hertz", ["rm", "-f", "/usr/local/bin/repo-add", counter])
    }
}

enum TestEnvPaths {
    static func pinebookDTS(_ h: Harness) -> URL {
        BuildBoxTests.boxDir.appendingPathComponent("mirror/linux-7.0/arch/arm64/boot/dts/rockchip/rk3399-pinebook-pro.dts")
    }
}

/// `ka build` through the bot: the plan, consent, progress in the status comment, the [ka:installable] issue;
/// and kill -9 of `ka serve` during makepkg. In the same serialized suite: the tests share the box's repo, and
/// some put fault wrappers on its hosts.
extension BuildBoxTests {
    static func installableIssues(_ h: Harness) -> [String] {
        let g = h.gitea
        return g.withLock { g.issues.values.filter { $0.title.hasPrefix("[ka:installable] fresnel") }.map { $0.title + "\n" + $0.body } }
    }

    @Test func slashBuildPlansTakesConsentShowsProgressAndFilesInstallable() async throws {
        let h = try Harness()
        try await BuildBoxTests.promote(h)
        let server = try await JobBoxTests().serve(h)
        defer { server.killNow() }
        let issue = try await JobBoxTests().approve(h, "/ka-build fresnel")
        let plan = try #require(h.gitea.botComments(on: issue).first { Harness.nonce(in: $0.body) != nil }?.body)
        #expect(plan.contains("route to a build host (boltzmann → ampere → fermi)") && plan.contains("makepkg as the build user")
                && plan.contains("| `manifest.lock` | `b2:") && plan.contains("| `build hosts` | `boltzmann → ampere → fermi"), "\(plan)")
        do {
            try await JobBoxTests.waitFor("the ✅ reply", timeout: 240) {
                h.gitea.botComments(on: issue).contains { $0.body.contains("✅ done") || $0.body.contains("❌") }
            }
        } catch {
            Issue.record("bot comments: \(h.gitea.botComments(on: issue).map(\.body))")
            throw error
        }
        let done = try #require(h.gitea.botComments(on: issue).last { $0.body.contains("✅ done") }?.body)
        #expect(done.contains("✓ makepkg as the build user") && done.contains("build fresnel: installable 7.0-"), "\(done)")
        try await JobBoxTests.waitFor("the [ka:installable] issue", timeout: 30) { !Self.installableIssues(h).isEmpty }
        let filed = Self.installableIssues(h)
        #expect(filed.count == 1 && filed[0].contains("ka install fresnel") && filed[0].contains(".pkg.tar.zst.sig"), "\(filed)")
        await server.kill9()
        await JobBoxTests.reap(h.root.appendingPathComponent(".ka"))
    }

    @Test func aStalledBuildShowsItsWarningAndLiveLogInTheStatusComment() async throws {
        let h = try Harness()
        let counter = try await Self.installSilentMakepkg()
        defer { Self.removeSilentMakepkg(counter) }
        let stalled = try Self.config(h, "stall.yaml") { Self.buildKeys($0, "  stall_warn: 1s\n  stall_fail: 30s\n") }
        try await Self.promote(h, config: stalled)
        let g = h.gitea
        try await g.start()
        let port = ChaosTests.freePort()
        g.webhookURL = URL(string: "http://127.0.0.1:\(port)/webhook")
        var env = ChaosTests.serveEnvironment(h, port: port).merging(try JobBoxTests.boxEnvironment()) { a, _ in a }
        env["KA_CONFIG"] = stalled.path
        let server = ChaosTests.Server(port: port, env: env, log: h.root.appendingPathComponent("serve.log"))
        try await server.start()
        defer { server.killNow() }
        try await Task.sleep(nanoseconds: 1_100_000_000)   // the first cursor is "now"
        let issue = try await JobBoxTests().approve(h, "/ka-build fresnel")
        // while makepkg runs silent: the warning and the build's own log line, in the status comment
        do {
            try await JobBoxTests.waitFor("the stall warning and the live log in the status comment", timeout: 90) {
                g.botComments(on: issue).contains { c in
                    c.body.contains("🏃 running") && c.body.contains("⚠️ no build output from boltzmann for 1s") && c.body.contains("boltzmann stdout| makepkg: starting")
                }
            }
        } catch {
            Issue.record("bot comments: \(g.botComments(on: issue).map(\.body))")
            throw error
        }
        try await JobBoxTests.waitFor("the ❌ reply", timeout: 90) { g.botComments(on: issue).contains { $0.body.contains("❌ failed") && $0.body.contains("stalled") } }
        await server.kill9()
        await JobBoxTests.reap(h.root.appendingPathComponent(".ka"))
    }

    @Test func killDashNineDuringMakepkgResumesAndPublishesOnce() async throws {
        let h = try Harness()
        let state = h.root.appendingPathComponent(".ka")
        // makepkg counted on boltzmann: the kill must land while it runs, and the resumed step runs it once more
        let counter = "/srv/kernel-agent/makepkg-runs"
        let wrapper = "#!/bin/sh\necho run >> \(counter)\nexec /usr/bin/makepkg \"$@\"\n"
        _ = try await JobBoxTests.inHost("boltzmann", ["sh", "-c", "printf '%s' \"$1\" > /usr/local/bin/makepkg && chmod 0755 /usr/local/bin/makepkg && rm -f \(counter)", "x", wrapper])
        defer { Self.removeSilentMakepkg(counter) }
        try await BuildBoxTests.promote(h)
        let before = try BuildBoxTests.snapshot()
        let server = try await JobBoxTests().serve(h)
        defer { server.killNow() }
        let issue = try await JobBoxTests().approve(h, "/ka-build fresnel")
        try await JobBoxTests.waitFor("makepkg to run on boltzmann", timeout: 120) {
            try await !JobBoxTests.remote("boltzmann", matching: "makepkg").isEmpty
        }
        let job = try #require(try JobBoxTests.jobs(state).first { $0.verb == "build" })
        #expect(job.steps.first { $0.name.hasPrefix("makepkg") }?.state == .running)
        await server.kill9()
        await JobBoxTests.reap(state)
        try await server.start()
        try await JobBoxTests.waitFor("the resumed build to succeed", timeout: 240) {
            try JobBoxTests.jobs(state).first { $0.id == job.id }?.state == .succeeded
        }
        let resumed = try #require(try JobBoxTests.jobs(state).first { $0.id == job.id })
        let publish = try #require(resumed.steps.first { $0.name.hasPrefix("sign and publish") })
        #expect(publish.attempts == 1, "published once: \(resumed.steps)")
        let runs = try await JobBoxTests.inHost("boltzmann", ["cat", counter]).stdoutText.split(separator: "\n").count
        #expect(runs == 2, "makepkg ran \(runs) times: once killed with ka serve, once resumed")
        try await JobBoxTests.waitFor("the ✅ reply", timeout: 30) { h.gitea.botComments(on: issue).contains { $0.body.contains("✅ done") } }
        let after = try BuildBoxTests.snapshot()
        let new = Set(after.keys).subtracting(before.keys).filter { $0.hasSuffix(".pkg.tar.zst") }
        #expect(new.count == 2, "one kernel and one headers package, once: \(new.sorted())")
        try await JobBoxTests.waitFor("the [ka:installable] issue", timeout: 30) { !Self.installableIssues(h).isEmpty }
        #expect(Self.installableIssues(h).count == 1)
        await server.kill9()
        await JobBoxTests.reap(state)
    }
}
