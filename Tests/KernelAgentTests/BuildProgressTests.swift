import Foundation
import Testing
@testable import KernelAgent

/// A kernel build's progress lines (issue 19 §5): makepkg's phase, kbuild's targets, the time against the last build.
@Suite struct BuildProgressTests {
    /// The shape of a real log (the lab's 6.12.118 build on kbuild-x86), shortened: makepkg's phases around kbuild's
    /// quiet lines, with the other lines a build prints.
    static let recorded = """
    ==> Making package: linux-lab 6.12.118-1 (Mon Dec  7 23:07:02 2026)
    ==> Checking buildtime dependencies...
    ==> Extracting sources...
      -> Extracting linux-6.12.118.tar.xz with bsdtar
    ==> Starting prepare()...
    Setting version...
    #
    # configuration written to .config
    ==> Starting build()...
      SYNC    include/config/auto.conf
      HOSTCC  scripts/basic/fixdep
      CC      init/main.o
      LD [M]  drivers/dma/pl330.ko
      DTC     arch/arm64/boot/dts/rockchip/rk3399-pinebook-pro.dtb
      OBJCOPY arch/arm64/boot/Image
    make[1]: Leaving directory '/srv/kernel-agent/source/x/src/linux-source-6.12'
      CC  this line has one space too few after the tag? no: two spaces then a path, still a target
    ==> Entering fakeroot environment...
    ==> Starting package_linux-lab()...
      INSTALL /srv/pkg/usr/lib/modules/6.12.118-lab/kernel/drivers/dma/pl330.ko
    ==> Starting package_linux-lab-headers()...
    """

    @Test func phasesAndKbuildTargetsAreReadFromTheOutput() {
        #expect(BuildProgress.phase(of: "==> Starting build()...") == "build()")
        #expect(BuildProgress.phase(of: "==> Starting package_linux-lab-headers()...") == "package()")
        #expect(BuildProgress.phase(of: "==> Extracting sources...") == "extracting the sources")
        #expect(BuildProgress.phase(of: "==> Making package: linux-lab") == nil)
        #expect(BuildProgress.phase(of: "  -> Extracting linux.tar.xz") == nil)
        for yes in ["  CC      init/main.o", "  LD [M]  drivers/dma/pl330.ko", "  HOSTCC  scripts/basic/fixdep", "  OBJCOPY arch/arm64/boot/Image"] {
            #expect(BuildProgress.isKbuildTarget(yes), "\(yes)")
        }
        for no in ["", "CC init/main.o", "  cc      init/main.o", "   CC     x", "  -> Extracting", "  CC", "  VERYLONGTAG x", "#"] {
            #expect(!BuildProgress.isKbuildTarget(no), "\(no)")
        }
    }

    @Test func aPhaseChangeIsShownAtOnceAndOtherLinesAtMostOnceAPeriod() {
        let p = BuildProgress(target: "lab", previous: .init(seconds: 244, buildHost: "kbuild-x86"), every: 30)
        var shown: [String] = []
        for (i, line) in Self.recorded.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if let s = p.take(String(line), elapsed: Double(i)) { shown.append(s) }
        }
        // extracting, prepare, build, package (the second package_…() is the same phase): four changes, and no
        // line in between, since the recorded log spans less than the 30 s period.
        #expect(shown.count == 4, "\(shown)")
        #expect(shown.first?.hasPrefix("makepkg extracting the sources, ") == true)
        #expect(shown.last == "makepkg package(), 7 kbuild targets done, 18 s in (the last build of lab on kbuild-x86 took 4m 04s)")
        #expect(p.summary(elapsed: 211) == "8 kbuild targets in 3m 31s; the last build of lab took 4m 04s")
        // the period: a kbuild line 30 s after the last shown one is shown
        #expect(p.take("  CC      kernel/fork.o", elapsed: 49.5) != nil)
        #expect(p.take("  CC      kernel/exit.o", elapsed: 50) == nil)
    }

    @Test func withoutAnEarlierBuildTheLineSaysSo() {
        let p = BuildProgress(target: "lab", previous: nil)
        #expect(p.take("==> Starting build()...", elapsed: 5) == "makepkg build(), 5 s in (no earlier build of lab to compare)")
        #expect(p.summary(elapsed: 5) == "5 s")
    }

    /// The comparison is the last succeeded build of the same target: a failed one, or another target's, is not.
    @Test func theLastSucceededBuildOfTheSameTargetIsTheComparison() throws {
        let store = MemoryJobStore()
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        func job(_ id: String, _ target: String, _ state: JobState, at: Double, seconds: Double, host: String) throws {
            var j = JobRecord(id: try JobID(id), verb: "build", arguments: [target], pins: [], lanes: [], origin: .cli(user: "t"),
                              steps: ["pre-flight", "makepkg as the build user"], at: t0.addingTimeInterval(at))
            j.state = state
            j.finishedAt = t0.addingTimeInterval(at + seconds)
            j.steps[1].startedAt = t0.addingTimeInterval(at)
            j.steps[1].finishedAt = t0.addingTimeInterval(at + seconds)
            j.steps[1].outcome = "built on \(host) in /srv/kernel-agent/output/\(id)"
            try store.insert(j)
        }
        try job("lab-20261207-2300-0001", "lab", .succeeded, at: 0, seconds: 250, host: "kbuild-x86")
        try job("lab-20261207-2310-0002", "lab", .succeeded, at: 600, seconds: 90, host: "boltzmann")
        try job("lab-20261207-2320-0003", "lab", .failed, at: 1200, seconds: 5, host: "kbuild-x86")
        try job("fresnel-20261207-2330-0004", "fresnel", .succeeded, at: 1800, seconds: 30, host: "boltzmann")
        let prev = BuildProgress.previous(of: try HostName("lab"), in: store, stepPrefix: "makepkg")
        #expect(prev == .init(seconds: 90, buildHost: "boltzmann"))
        #expect(BuildProgress.previous(of: try HostName("ohm"), in: store, stepPrefix: "makepkg") == nil)
    }
}
