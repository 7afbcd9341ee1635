import Foundation
import Testing
import KATestSupport
@testable import KernelAgent

/// Bar 0: the manifest's `verify.bar0`, KA_CONFIG's agent-wide skip, and the verdict on what the build host's
/// `bar0` script printed (console lines as a 6.12.118 guest printed them on this machine).
@Suite struct Bar0Tests {
    static let booted = """
        KA-BAR0-EXPECT release=6.12.118-lab
        Booting Linux on physical CPU 0x0000000000 [0x410fd083]
        Linux version 6.12.118-lab (builder@kbuild-x86) (aarch64-linux-gnu-gcc (Debian 12.2.0-14) 12.2.0) #1 SMP
        Kernel command line: console=ttyAMA0 earlycon panic=-1 rdinit=/init
        Run /init as init process
        KA-BAR0 uname-r 6.12.118-lab
        KA-BAR0 module pl330.ko loaded
        KA-BAR0 done
        reboot: Power down
        KA-BAR0-EXPECT release=6.12.118-lab
        """

    @Test func aGuestThatReportsTheReleaseAndLoadsItsModulePasses() {
        let v = Bar0Verdict.judge(Self.booted, modules: ["pl330"])
        #expect(v.outcome == .passed)
        #expect(v.release == "6.12.118-lab" && v.loaded == ["pl330"])
        #expect(v.console.first == "Booting Linux on physical CPU 0x0000000000 [0x410fd083]" && !v.console.contains { $0.hasPrefix("KA-BAR0-EXPECT") })
        #expect(Bar0Verdict.judge(Self.booted, modules: []).outcome == .passed, "no module named: what loaded is enough")
    }

    @Test func eachWayOfNotBootingFailsWithItsReason() {
        let panic = """
            KA-BAR0-EXPECT release=6.12.118-lab
            [    0.290000] Kernel panic - not syncing: ka-lab: panic before init
            [    0.291000] ---[ end Kernel panic - not syncing: ka-lab: panic before init ]---
            KA-BAR0-EXPECT release=6.12.118-lab
            """
        #expect(Bar0Verdict.judge(panic, modules: []).outcome == .failed("the kernel panicked before userspace: Kernel panic - not syncing: ka-lab: panic before init"))
        let silent = "KA-BAR0-EXPECT release=6.12.118-lab\nBooting Linux\nKA-BAR0-TIMEOUT after 180 s\nKA-BAR0-EXPECT release=6.12.118-lab"
        #expect(Bar0Verdict.judge(silent, modules: []).outcome == .failed("the guest did not reach userspace within the timeout"))
        let other = Self.booted.replacingOccurrences(of: "uname-r 6.12.118-lab", with: "uname-r 6.12.117-lab")
        #expect(Bar0Verdict.judge(other, modules: []).outcome == .failed("the guest runs release 6.12.117-lab, but the package carries 6.12.118-lab"))
        let refused = Self.booted.replacingOccurrences(of: "pl330.ko loaded", with: "pl330.ko failed 8")
        #expect(Bar0Verdict.judge(refused, modules: ["pl330"]).outcome == .failed("module pl330 did not load (failed 8)"))
        #expect(Bar0Verdict.judge(Self.booted, modules: ["rk808-regulator"]).outcome == .failed("module rk808_regulator was not loaded"))
        let cut = Self.booted.replacingOccurrences(of: "KA-BAR0 done\n", with: "")
        #expect(Bar0Verdict.judge(cut, modules: []).outcome == .failed("the guest stopped before its init finished"))
        #expect(Bar0Verdict.judge("Booting Linux\n", modules: []).outcome == .failed("the bar0 script did not say which release the package carries"))
    }

    @Test func aFailureQuotesTheConsolesLastFiftyLines() {
        let long = "KA-BAR0-EXPECT release=r\n" + (1...80).map { "[    0.\($0)] line \($0)" }.joined(separator: "\n") + "\nKA-BAR0-TIMEOUT after 10 s\nKA-BAR0-EXPECT release=r"
        let v = Bar0Verdict.judge(long, modules: [])
        #expect(v.tail.count == 50 && v.tail.last == "KA-BAR0-TIMEOUT after 10 s" && v.tail.first == "[    0.32] line 32")
    }

    static let head = """
        host: fresnel
        baseline: {repo: https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git, ref: v7.0}
        kernel_suffix: fresnel-fourier
        scopes: [board/pinebook-pro]
        """

    static func manifest(_ verify: String) throws -> Manifest {
        try Manifest.parse(Data((head + "\n" + verify).utf8), host: try HostName("fresnel"), file: "fleet/fresnel.yaml")
    }

    @Test func theManifestSaysHowItBootsOrWhyNot() throws {
        #expect(try Self.manifest("").bar0 == .standard)
        #expect(try Self.manifest("verify: {bar0: {timeout: 60, modules: [pl330, rk808-regulator]}}").bar0 == .run(timeout: 60, modules: ["pl330", "rk808-regulator"]))
        #expect(try Self.manifest("verify: {bar0: {skip: \"no qemu machine for this SoC\"}}").bar0 == .skip(reason: "no qemu machine for this SoC"))
        let refusals: [(String, String)] = [
            ("verify: {bar0: skip}", "bar0 takes a mapping"),
            ("verify: {bar0: {skip: \"  \"}}", "bar0: skip needs its reason"),
            ("verify: {bar0: {skip: why, timeout: 60}}", "bar0: skip goes alone"),
            ("verify: {bar0: {timeout: 5}}", "bar0 timeout must be 10 to 3600 seconds, got 5"),
            ("verify: {bar0: {modules: [drivers/dma/pl330.ko]}}", "'drivers/dma/pl330.ko' is not a module name"),
            ("verify: {bar0: {timeot: 60}}", "timeot"),
        ]
        for (text, words) in refusals {
            do { _ = try Self.manifest(text); Issue.record("accepted: \(text)") } catch let e as KAError {
                #expect(e.description.contains(words) && e.description.contains("fleet/fresnel.yaml:5"), "\(text) → \(e.description)")
            }
        }
    }

    @Test func kaConfigCanSkipItForTheWholeAgentWithAReason() throws {
        let yaml = try YAMLValue.parse("bar0: {skip: \"the build hosts have no qemu yet\"}", file: "ka.yaml")
        #expect(try PipelineConfig.parseBuild(yaml).bar0Skip == "the build hosts have no qemu yet")
        let bare = try YAMLValue.parse("bar0: {skip: \"\"}", file: "ka.yaml")
        #expect(throws: KAError.self) { try PipelineConfig.parseBuild(bare) }
    }
}

/// Cross-builds: a build host of another arch than the target's gets Kbuild's ARCH and CROSS_COMPILE (its own
/// prefix from KA_CONFIG, or the arch's default), and makepkg the target's CARCH; a native one gets nothing.
@Suite struct CrossBuildTests {
    @Test func kaConfigNamesABuildHostsToolchainPrefixAndRefusesAnythingElse() throws {
        let state = URL(fileURLWithPath: "/tmp/ka-state")
        let c = try AgentConfig.parse("hosts:\n  kbuild-x86: {arch: x86_64, cross_compile: {aarch64: aarch64-linux-gnu-}}\n", file: "ka.yaml", stateDir: state)
        #expect(c.hosts[try HostName("kbuild-x86")]?.crossCompile == [.aarch64: "aarch64-linux-gnu-"])
        for bad in ["{aarch64: \"gcc; rm -rf /\"}", "{aarch64: aarch64-linux-gnu}", "{riscv64: riscv64-linux-gnu-}"] {
            #expect(throws: KAError.self, "\(bad)") {
                try AgentConfig.parse("hosts:\n  kbuild-x86: {cross_compile: \(bad)}\n", file: "ka.yaml", stateDir: state)
            }
        }
        #expect(CPUArch.aarch64.kernelArch == "arm64" && CPUArch.aarch64.defaultCrossPrefix == "aarch64-linux-gnu-")
    }
}

/// `baseline.top_dir`: a tarball whose top dir is not linux-<version> (Debian's linux-source) is built from it.
@Suite struct BaselineTopDirTests {
    @Test func theTopDirIsOnePlainNameAndBecomesTheRecipesSrcname() throws {
        let ok = try YAMLValue.parse("mirror: /srv/mirror\ntarball: linux-6.12.118.tar.xz\ntop_dir: linux-source-6.12\n", file: "ka.yaml")
        #expect(try PipelineConfig.parseBaseline(ok).topDir == "linux-source-6.12")
        for bad in ["../x", "a/b", "", "-rf", "$(id)"] {
            let v = try YAMLValue.parse("tarball: linux-6.12.118.tar.xz\ntop_dir: \"\(bad)\"\n", file: "ka.yaml")
            #expect(throws: KAError.self, "\(bad)") { try PipelineConfig.parseBaseline(v) }
        }
    }
}

/// The pre-flight of a routed build host asks for what its build needs: the cross compiler of a cross-build, and
/// qemu (with timeout, bsdtar, depmod) when Bar 0 boots there.
@Suite struct BuildNeedsTests {
    @Test func aCrossBuildAndBarZeroAddTheirTools() throws {
        let registry = try HostRegistry.parse("""
            hosts:
              kbuild-x86: {roles: [build], build_tier: primary, arch: x86_64, distro: arch, wake: always}
            routing: {aarch64: [kbuild-x86]}
            """, file: "fleet/hosts.yaml")
        let entry = try registry.entry(try HostName("kbuild-x86"))
        let plain = HostChecks.tools(for: entry)
        #expect(plain == [["makepkg"], ["gcc", "cc", "clang"], ["ccache"]])
        let cross = HostChecks.tools(for: entry, needs: .init(crossPrefix: "aarch64-linux-gnu-", targetArch: .aarch64, bar0: true))
        #expect(cross == plain + [["aarch64-linux-gnu-gcc"], ["qemu-system-aarch64"], ["timeout"], ["bsdtar"], ["depmod"]])
        let steps = try HostChecks().checks(for: entry, host: try HostName("kbuild-x86"), needs: .init(crossPrefix: "aarch64-linux-gnu-", targetArch: .aarch64))
        #expect(steps.last?.name == "cross compiler aarch64-linux-gnu-gcc builds for aarch64")
        #expect(try HostChecks().checks(for: entry, host: try HostName("kbuild-x86")).allSatisfy { !$0.name.hasPrefix("cross compiler") })
    }
}
