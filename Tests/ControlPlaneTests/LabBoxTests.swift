import Foundation
import GRDB
import KATestSupport
import KernelAgent
import Testing

/// The kernel lab (issue 19): a real Linux 6.12.118 tree with the Armbian rockchip64 series, cross-built by makepkg
/// on the box's x86_64 build host, booted in qemu (Bar 0) before anything is signed, then installed on the box's
/// `lab` target and verified. It needs `scripts/kernel-lab up` (scripts/test runs this suite in its own phase, after
/// the main suite) and fails, never skips, without it. A cold build takes minutes: the suite runs its tests one at
/// a time, and each leaves the lab's checkout as it found it.
@Suite(.serialized, .holdsBoxHosts("lab", "kbuild-x86")) struct LabBoxTests {
    struct Lab {
        let dir: URL
        let tree: URL
        var root: URL { dir.appendingPathComponent("repo") }
        var state: URL { dir.appendingPathComponent("state") }
        var config: URL { dir.appendingPathComponent("ka.yaml") }
    }

    static func lab() throws -> Lab {
        let env = ProcessInfo.processInfo.environment
        guard let dir = env["KA_LAB_DIR"], let tree = env["KA_LAB_TREE"], !dir.isEmpty, !tree.isEmpty,
              FileManager.default.fileExists(atPath: dir + "/.kernel-lab") else {
            let e = KAError.failure("KERNEL LAB NOT UP: KA_LAB_DIR and KA_LAB_TREE do not name a lab",
                                    hint: "run the suite through scripts/test, or eval \"$(scripts/kernel-lab up)\" first (root)")
            Issue.record("\(e)")
            throw e
        }
        return Lab(dir: URL(fileURLWithPath: dir), tree: URL(fileURLWithPath: tree))
    }

    static func ka(_ lab: Lab, _ args: [String]) async throws -> TestCommand.Result {
        var env = try JobBoxTests.boxEnvironment()
        env["KA_ROOT"] = lab.root.path
        env["KA_STATE_DIR"] = lab.state.path
        env["KA_CONFIG"] = lab.config.path
        return try await Harness.runOffPool([ChaosTests.kaBinary] + args, cwd: lab.root, environment: env)
    }

    static func git(_ lab: Lab, _ args: [String]) throws -> TestCommand.Result {
        try TestCommand.runBlocking(["git", "-C", lab.root.path] + args, environment: ProcessInfo.processInfo.environment)
    }

    /// The job id a `ka build`/`install` printed (`… — job lab-…`).
    static func jobID(_ out: String) -> String? {
        guard let r = out.range(of: #"job (lab-[0-9]{8}-[0-9]{4}-[0-9a-f]{4})"#, options: .regularExpression) else { return nil }
        return String(out[r].dropFirst(4))
    }

    static func jobLog(_ lab: Lab, _ job: String) throws -> String {
        try String(contentsOf: lab.state.appendingPathComponent("jobs/\(job)/log"), encoding: .utf8)
    }

    static func run(_ argv: [String], cwd: URL? = nil) throws -> TestCommand.Result {
        try TestCommand.runBlocking(argv, cwd: cwd, environment: ProcessInfo.processInfo.environment)
    }

    /// `eval "$(scripts/kernel-lab up)" && ka promote lab --tree "$KA_LAB_TREE" && ka build lab && ka install lab && ka verify lab`
    @Test func theRealKernelIsPromotedCrossBuiltBootedInQemuInstalledAndVerifiedOnTheLabTarget() async throws {
        let lab = try Self.lab()
        let promote = try await Self.ka(lab, ["promote", "lab", "--tree", lab.tree.path])
        #expect(promote.status == 0, "\(promote.stdoutText)\n\(promote.stderrText)")
        #expect(promote.stdoutText.contains("promoted lab: 33 patch(es)"), "\(promote.stdoutText)")
        #expect(promote.stdoutText.contains("apply check: pass") && promote.stdoutText.contains("0 failed) against v6.12.118"), "\(promote.stdoutText)")

        let build = try await Self.ka(lab, ["build", "lab"])
        #expect(build.status == 0, "\(build.stdoutText)\n\(build.stderrText)")
        // pkgrel is 1 on a fresh lab, and counts up when the same lock is built again
        let built = try #require(build.stdoutText.range(of: #"build lab: installable 6\.12\.118-[0-9]+"#, options: .regularExpression),
                                 "\(build.stdoutText)")
        let version = String(build.stdoutText[built].dropFirst("build lab: installable ".count))
        let job = try #require(Self.jobID(build.stdoutText), "\(build.stdoutText)")
        // the routed host cross-built, and Bar 0's guest printed the release the package carries
        #expect(build.stdoutText.contains("kbuild-x86, cross-building for aarch64 with aarch64-linux-gnu-gcc"), "\(build.stdoutText)")
        #expect(build.stdoutText.contains("6.12.118-lab reached userspace in qemu on kbuild-x86, loaded pl330"), "\(build.stdoutText)")
        let log = try Self.jobLog(lab, job)
        #expect(log.contains("kbuild-x86 stdout| KA-BAR0 uname-r 6.12.118-lab"), "the guest's uname -r is in the job's log")
        #expect(log.contains("kbuild-x86 stdout| KA-BAR0 module pl330.ko loaded"))
        #expect(log.contains("stdout| Linux version 6.12.118-lab"), "the guest's console is in the job's log")
        #expect(log.contains("ka| progress: makepkg build(), "), "the build's progress lines")

        // The published package: a real arm64 Image of the 6.12.118 tree with the suffix, its modules, the RK3399 DTBs.
        let repo = BuildBoxTests.repoDir
        let pkg = repo.appendingPathComponent("linux-lab-\(version)-aarch64.pkg.tar.zst")
        #expect(FileManager.default.fileExists(atPath: pkg.path), "published into hertz's repo")
        #expect(FileManager.default.fileExists(atPath: pkg.path + ".sig"), "signed")
        let listing = try Self.run(["bsdtar", "-tf", pkg.path])
        #expect(listing.status == 0, "\(listing.stderrText)")
        let entries = Set(listing.stdoutText.split(separator: "\n").map(String.init))
        #expect(entries.contains("usr/lib/modules/6.12.118-lab/kernel/drivers/dma/pl330.ko"))
        let rk3399 = entries.filter { $0.hasPrefix("boot/dtbs-lab/rockchip/rk3399-") && $0.hasSuffix(".dtb") }
        #expect(rk3399.contains("boot/dtbs-lab/rockchip/rk3399-pinebook-pro.dtb") && rk3399.count >= 20, "\(rk3399.sorted())")
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("ka-lab-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { _ = try? FileManager.default.removeItem(at: scratch) }   // cleanup of the test's own scratch dir
        let x = try Self.run(["bsdtar", "-xf", pkg.path, "-C", scratch.path, "boot/Image-lab", "boot/dtbs-lab/rockchip/rk3399-pinebook-pro.dtb"])
        #expect(x.status == 0, "\(x.stderrText)")
        let file = try Self.run(["file", "-b", scratch.appendingPathComponent("boot/Image-lab").path])
        #expect(file.stdoutText.hasPrefix("Linux kernel ARM64 boot executable Image"), "\(file.stdoutText)")
        let image = try Data(contentsOf: scratch.appendingPathComponent("boot/Image-lab"))
        #expect(image.range(of: Data("Linux version 6.12.118-lab (".utf8)) != nil, "the Image's version string is the tree's with the suffix")
        // Bar 3's property: the Armbian patch raised the first trip point of the Pinebook Pro's device tree
        let trip = try Self.run(["fdtget", scratch.appendingPathComponent("boot/dtbs-lab/rockchip/rk3399-pinebook-pro.dtb").path,
                                 "/thermal-zones/cpu-thermal/trips/cpu_alert0", "temperature"])
        #expect(trip.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines) == "85000", "\(trip.stdoutText)\(trip.stderrText)")

        let install = try await Self.ka(lab, ["install", "lab"])
        #expect(install.status == 0, "\(install.stdoutText)\n\(install.stderrText)")
        #expect(install.stdoutText.contains("install lab: verified \(version)"), "\(install.stdoutText)")
        let uname = try await JobBoxTests.inHost("lab", ["uname", "-r"])
        #expect(uname.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines) == "6.12.118-lab")

        let verify = try await Self.ka(lab, ["verify", "lab"])
        #expect(verify.status == 0, "\(verify.stdoutText)\n\(verify.stderrText)")
        #expect(verify.stdoutText.contains("bar2 pass running kernel and package version: running 6.12.118-lab"), "\(verify.stdoutText)")
        #expect(verify.stdoutText.contains("bar3 pass device tree matches the manifest `dt /thermal-zones/cpu-thermal/trips/cpu_alert0:temperature == 85000`"), "\(verify.stdoutText)")
        #expect(verify.stdoutText.contains("bar4 pass") && !verify.stdoutText.contains("bar4 fail"), "\(verify.stdoutText)")
        #expect(verify.stdoutText.contains("cpu_crit:temperature == 100000"), "\(verify.stdoutText)")
        #expect(verify.stdoutText.contains("pl330.ko exists"), "\(verify.stdoutText)")
        #expect(verify.stdoutText.contains("verify lab: verified"), "\(verify.stdoutText)")
    }

    /// `ka preflight` of a build host asks each cross compiler its KA_CONFIG names which arch it builds for.
    @Test func preflightAsksEachConfiguredCrossCompilerItsArch() async throws {
        let lab = try Self.lab()
        let ok = try await Self.ka(lab, ["preflight", "kbuild-x86"])
        #expect(ok.status == 0, "\(ok.stdoutText)\n\(ok.stderrText)")
        #expect(ok.stdoutText.contains("✓ cross compiler aarch64-linux-gnu-gcc builds for aarch64: aarch64-linux-gnu"), "\(ok.stdoutText)")
        // a prefix of a compiler for another arch: refused with the key to fix
        let yaml = try String(contentsOf: lab.config, encoding: .utf8)
        let wrong = yaml.replacingOccurrences(of: "cross_compile: {aarch64: aarch64-linux-gnu-}", with: "cross_compile: {aarch64: x86_64-linux-gnu-}")
        #expect(wrong != yaml, "the lab's KA_CONFIG names kbuild-x86's cross compiler")
        let config = lab.dir.appendingPathComponent("ka-wrong-cross.yaml")
        try wrong.write(to: config, atomically: true, encoding: .utf8)
        defer { _ = try? FileManager.default.removeItem(at: config) }   // the test's own file
        var env = try JobBoxTests.boxEnvironment()
        env["KA_ROOT"] = lab.root.path
        env["KA_STATE_DIR"] = lab.state.path
        env["KA_CONFIG"] = config.path
        let bad = try await Harness.runOffPool([ChaosTests.kaBinary, "preflight", "kbuild-x86"], cwd: lab.root, environment: env)
        #expect(bad.status != 0, "\(bad.stdoutText)")
        #expect(bad.stdoutText.contains("x86_64-linux-gnu-gcc builds for x86_64-linux-gnu, not aarch64"), "\(bad.stdoutText)\n\(bad.stderrText)")
        #expect((bad.stdoutText + bad.stderrText).contains("set hosts.kbuild-x86.cross_compile.aarch64 in KA_CONFIG"), "\(bad.stdoutText)\n\(bad.stderrText)")
    }

    /// A patch that panics the kernel before init: the build fails at Bar 0, [ka:build-fail] carries the panic line,
    /// and nothing reaches the signing host.
    @Test func aPatchThatPanicsBeforeInitFailsTheBuildAtBarZeroAndNothingIsSigned() async throws {
        let lab = try Self.lab()
        // The patch, made against the tree's own init/main.c: a panic at the top of kernel_init (pid 1, before /init).
        let main = try String(contentsOf: lab.tree.appendingPathComponent("init/main.c"), encoding: .utf8)
        let anchor = "static int __ref kernel_init(void *unused)\n{\n\tint ret;\n"
        #expect(main.contains(anchor), "6.12.118's kernel_init")
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("ka-lab-\(UUID().uuidString)")
        defer { _ = try? FileManager.default.removeItem(at: scratch) }   // cleanup of the test's own scratch dir
        for side in ["a/init", "b/init", "campaign"] {
            try FileManager.default.createDirectory(at: scratch.appendingPathComponent(side), withIntermediateDirectories: true)
        }
        try main.write(to: scratch.appendingPathComponent("a/init/main.c"), atomically: true, encoding: .utf8)
        try main.replacingOccurrences(of: anchor, with: anchor + "\n\tpanic(\"ka-lab: panic before init\");\n")
            .write(to: scratch.appendingPathComponent("b/init/main.c"), atomically: true, encoding: .utf8)
        let diff = try Self.run(["diff", "-u", "a/init/main.c", "b/init/main.c"], cwd: scratch)
        #expect(diff.status == 1, "\(diff.stderrText)")
        let patch = "From: kernel-lab test <lab@fleet-box.invalid>\nSubject: [PATCH] init: panic before init\n\n"
            + "Bar 0 must stop this kernel before anything is signed.\n---\n init/main.c | 2 ++\n\n" + diff.stdoutText
        try patch.write(to: scratch.appendingPathComponent("campaign/init-panic-before-init.patch"), atomically: true, encoding: .utf8)

        defer {
            // Leave the lab as the other test expects it: the checkout as committed, the lock promoted from it.
            _ = try? Self.git(lab, ["checkout", "-q", "--", "."])
            _ = try? Self.git(lab, ["clean", "-fdq", "--", "patches"])
        }
        let imported = try await Self.ka(lab, ["import", "lab-bar0-test", "init-panic-before-init.patch", "--to", "subsystem/init",
                                               "--checkout", scratch.appendingPathComponent("campaign").path])
        #expect(imported.status == 0, "\(imported.stdoutText)\n\(imported.stderrText)")
        let manifest = lab.root.appendingPathComponent("fleet/lab.yaml")
        let yaml = try String(contentsOf: manifest, encoding: .utf8)
        try yaml.replacingOccurrences(of: "\nscopes:\n", with: "\nscopes:\n  - subsystem/init\n").write(to: manifest, atomically: true, encoding: .utf8)

        let promote = try await Self.ka(lab, ["promote", "lab", "--tree", lab.tree.path])
        #expect(promote.status == 0, "\(promote.stdoutText)\n\(promote.stderrText)")
        #expect(promote.stdoutText.contains("promoted lab: 34 patch(es)"), "\(promote.stdoutText)")

        let repoBefore = try BuildBoxTests.snapshot()
        let store = try SQLiteStateStore.open(Workspace(root: lab.root, stateDir: lab.state))
        let installablesBefore = try store.installables(["lab"])
        let build = try await Self.ka(lab, ["build", "lab"])
        #expect(build.status != 0, "\(build.stdoutText)")
        #expect(build.stdoutText.contains("✗ Bar 0"), "\(build.stdoutText)")
        let job = try #require(Self.jobID(build.stdoutText), "\(build.stdoutText)")
        #expect(try Self.jobLog(lab, job).contains("Kernel panic - not syncing: ka-lab: panic before init"), "the console is in the job's log")

        // [ka:build-fail] names Bar 0 and the release, and quotes the console's panic line
        let blocks = try store.openBlocks().filter { $0.kind == .buildFail }
        #expect(blocks.count == 1, "\(blocks)")
        let block = try #require(blocks.first)
        defer { _ = try? store.close(id: block.id) }   // the build host is halted while it is open
        #expect(block.title.contains("failed at Bar 0"), "\(block.title)")
        let body = try await DatabaseQueue(path: lab.state.appendingPathComponent("state.sqlite").path).read { db in
            try String.fetchOne(db, sql: "SELECT body FROM blocks WHERE open AND kind = ?", arguments: [block.kind.rawValue])
        } ?? ""
        #expect(body.contains("Kernel panic - not syncing: ka-lab: panic before init"), "\(body)")
        #expect(body.contains("6.12.118-lab"), "\(body)")

        // nothing was signed or published, and no [ka:installable] was filed
        #expect(try BuildBoxTests.snapshot() == repoBefore, "the signing host's repo is unchanged")
        #expect(try store.installables(["lab"]) == installablesBefore)
        let stage = try await JobBoxTests.inHost("hertz", ["ls", "/srv/kernel-agent/staging"])
        #expect(!stage.stdoutText.contains(job), "nothing was staged on hertz: \(stage.stdoutText)")
    }
}
