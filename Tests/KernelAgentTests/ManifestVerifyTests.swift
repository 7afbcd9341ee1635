import Foundation
import Testing
import KATestSupport
@testable import KernelAgent

/// The manifest's `verify:` section: the shipped fresnel entries, errors with file:line (and a probe's column),
/// and the tree verbs that rewrite or drop the patch paths it names.
@Suite struct ManifestVerifyTests {
    static let head = """
        host: fresnel
        baseline:
          repo: https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git
          ref: v7.0
        kernel_suffix: fresnel-fourier
        scopes:
          - board/pinebook-pro
        include:
          - subsystem/media/videobuf2/dma-resv-release-fence
        excluded:
          - driver/bes2600
        """

    static func parse(_ verify: String) throws -> Manifest {
        try Manifest.parse(Data((head + "\n" + verify).utf8), host: try HostName("fresnel"), file: "fleet/fresnel.yaml")
    }

    static func refusal(_ verify: String) -> KAError? {
        do { _ = try parse(verify); return nil } catch let e as KAError { return e } catch {
            Issue.record("untyped error \(error)"); return nil
        }
    }

    @Test func theShippedFresnelManifestCarriesBars3And4() throws {
        let s = try Sandbox()
        let m = try Manifest.load(try HostName("fresnel"), in: s.ws)
        let verify = try #require(m.verify)
        #expect(verify.deviceTree.map(\.text) == [
            "dt /opp-table-0/opp-1704000000 exists",
            "dt /opp-table-1/opp-2184000000 exists",
            "dt /opp-table-1/opp-2184000000:opp-microvolt == \"1375000 1375000 1400000\"",
        ])
        #expect(verify.probes.map(\.probe.text) == [
            "file /sys/devices/system/cpu/cpufreq/policy4/cpuinfo_max_freq == 2184000",
            "file /sys/devices/system/cpu/cpufreq/policy0/cpuinfo_max_freq == 1704000",
        ])
        #expect(verify.probes.allSatisfy { $0.required && $0.patch.value.hasPrefix("board/pinebook-pro/0001-") })
        #expect(verify.burnInHours == nil)
        // Every patch a probe names exists in the tree.
        for p in verify.probes { #expect(s.exists("patches/" + p.patch.value), "\(p.patch)") }
        // The other shipped manifests load as before, without a verify section.
        for host in ["ohm", "ampere", "boltzmann"] {
            #expect(try Manifest.load(try HostName(host), in: s.ws).verify == nil, "\(host)")
        }
    }

    @Test func theFresnelProbesPassOnABoardLikeTheSeeds() async throws {
        // What the seed saw after the reboot: cluster0 1.704 GHz, cluster1 2.184 GHz, both OPP nodes present.
        let s = try Sandbox()
        let verify = try #require(try Manifest.load(try HostName("fresnel"), in: s.ws).verify)
        let host = FakeProbeHost(host: try HostName("fresnel"))
        host.setFile("/sys/devices/system/cpu/cpufreq/policy4/cpuinfo_max_freq", text: "2184000\n")
        host.setFile("/sys/devices/system/cpu/cpufreq/policy0/cpuinfo_max_freq", text: "1704000\n")
        host.setDeviceTree("/opp-table-0/opp-1704000000", .directory)
        host.setDeviceTree("/opp-table-1/opp-2184000000", .directory)
        host.setDeviceTree("/opp-table-1/opp-2184000000/opp-microvolt",
                           .content([0x00, 0x14, 0xfb, 0x18, 0x00, 0x14, 0xfb, 0x18, 0x00, 0x15, 0x5c, 0xc0], truncated: false))
        let runner = ProbeRunner(host: host, retryDelay: .zero)
        let results = await runner.run(verify.deviceTree + verify.probes.map(\.probe))
        #expect(results.allSatisfy { $0.code == .pass }, "\(results.filter { $0.code != .pass })")
        // A stock kernel (no OC OPPs) fails them.
        let stock = FakeProbeHost(host: try HostName("fresnel"))
        stock.setFile("/sys/devices/system/cpu/cpufreq/policy4/cpuinfo_max_freq", text: "1800000\n")
        let stockResults = await ProbeRunner(host: stock, retryDelay: .zero).run(verify.deviceTree + verify.probes.map(\.probe))
        #expect(stockResults.allSatisfy { $0.code == .fail }, "\(stockResults.map(\.code))")
    }

    @Test func aFullSectionParses() throws {
        let m = try Self.parse("""
            verify:
              dt:
                - dt /opp-table-1/opp-2184000000 exists
                - "dt /:model ~ Pinebook"
              probes:
                - patch: board/pinebook-pro/
                  probe: cmd [dmesg] !~ "BUG:"
                  required: false
                - {patch: subsystem/media/videobuf2/dma-resv-release-fence, probe: file /proc/sys/kernel/tainted == 0}
                - patch: board
                  probe: |
                    file /sys/x
                      >= 1
              burn_in_hours: 24
            """)
        let v = try #require(m.verify)
        #expect(v.deviceTree.count == 2 && v.burnInHours == 24)
        #expect(v.probes.map(\.patch.value) == ["board/pinebook-pro", "subsystem/media/videobuf2/dma-resv-release-fence", "board"])
        #expect(v.probes.map(\.required) == [false, true, true])
        #expect(v.probes[0].probe.origin == ProbeOrigin(file: "fleet/fresnel.yaml", line: 18, column: 14, field: "verify.probes[0].probe"))
        #expect(v.deviceTree[1].origin.column == 8, "a quoted probe starts after its quote")
        #expect(m.pathMentions.map(\.raw).suffix(3) == ["board/pinebook-pro", "subsystem/media/videobuf2/dma-resv-release-fence", "board"])
    }

    @Test(arguments: [
        // the verify text, what the error starts with
        ("verify:\n  probes:\n    - patch: board/pinebook-pro\n      probe: file /sys/x =~ 1\n",
         "fleet/fresnel.yaml:15: verify.probes[0].probe, column 13: unknown operator '=~'"),
        ("verify:\n  dt:\n    - dt /opp-table-1/opp-2184000000 exist\n",
         "fleet/fresnel.yaml:14: verify.dt[0], column 32: unknown operator 'exist'"),
        ("verify:\n  probes:\n    - patch: board/pinebook-pro\n      probe: |\n        cmd [dmesg]\n          !~ \"open\n",
         "fleet/fresnel.yaml:17: verify.probes[0].probe, column 6: the quoted string is not closed"),
        ("verify:\n  dt:\n    - file /sys/x exists\n", "fleet/fresnel.yaml:14:7: verify.dt[0]: 'file /sys/x exists' is not a device-tree probe"),
        ("verify:\n  probes:\n    - patch: board/other-board\n      probe: file /sys/x exists\n",
         "fleet/fresnel.yaml:14:14: verify.probes[0].patch: 'board/other-board' is not among this manifest's scopes or includes"),
        ("verify:\n  probes:\n    - patch: driver/bes2600/0001-x.patch\n      probe: file /sys/x exists\n",
         "fleet/fresnel.yaml:14:14: verify.probes[0].patch: 'driver/bes2600/0001-x.patch' is excluded at line 11"),
        ("verify:\n  probes:\n    - patch: ../etc\n      probe: file /sys/x exists\n",
         "fleet/fresnel.yaml:14:14: verify.probes[0].patch → '../etc' → escapes patches/"),
        ("verify:\n  probes:\n    - patch: board/pinebook-pro\n", "fleet/fresnel.yaml:14:7: verify.probes[0]: missing required key 'probe'"),
        ("verify:\n  probes:\n    - patch: board/pinebook-pro\n      probe: file /sys/x exists\n      requried: false\n",
         "fleet/fresnel.yaml:16:7: unknown key 'verify.probes[0].requried'"),
        ("verify:\n  probes:\n    - patch: board/pinebook-pro\n      probe: file /sys/x exists\n      required: yes\n",
         "fleet/fresnel.yaml:16:17: verify.probes[0].required: expected true or false"),
        ("verify:\n  burn_in_hours: 0\n", "fleet/fresnel.yaml:13:18: verify.burn_in_hours: burn_in_hours must be between 1 and 720"),
        ("verify:\n  burnin_hours: 3\n", "fleet/fresnel.yaml:13:3: unknown key 'verify.burnin_hours'"),
        ("verify:\n  dt:\n    - [dt, /x, exists]\n", "fleet/fresnel.yaml:14:7: verify.dt[0]: expected a probe (one line of text), found a list"),
    ])
    func errorsNameTheFileAndLine(_ verify: String, _ expected: String) {
        guard let e = Self.refusal(verify) else { Issue.record("accepted:\n\(verify)"); return }
        #expect(e.message.hasPrefix(expected), "got: \(e.message)")
        #expect(e.kind == .refusal)
    }

    @Test func theErrorShowsTheProbeWithACaret() throws {
        let e = try #require(Self.refusal("verify:\n  probes:\n    - patch: board/pinebook-pro\n      probe: file /sys/x =~ 1\n"))
        #expect(e.message.hasSuffix("\n    file /sys/x =~ 1\n                ^"), "\(e.message)")
        #expect(e.hint?.contains("did you mean '~'?") == true)
    }

    @Test func migrateTreeRewritesAProbesPatchPath() async throws {
        let s = try Sandbox()
        _ = try await MigrateTreeVerb.parse(["--from", "board/pinebook-pro", "--to", "board/pbp"]).execute(in: s.ctx)
        let text = try s.read("fleet/fresnel.yaml")
        #expect(!text.contains("board/pinebook-pro"), "every mention moved")
        let m = try Manifest.load(try HostName("fresnel"), in: s.ws)
        #expect(m.verify?.probes.map(\.patch.value) == Array(repeating: "board/pbp/0001-arm64-dts-rk3399-pinebook-pro-add-OC-OPP-tables-1704-2184.patch", count: 2))
        #expect(m.verify?.deviceTree.count == 3, "the rest of verify: is untouched")
    }

    @Test func abandonDropsTheProbesOfPurgedPatches() async throws {
        let s = try Sandbox()
        let before = try s.read("fleet/fresnel.yaml")
        _ = try await AbandonVerb.parse(["fresnel-fourier", "--purge-from-fleet"]).execute(in: s.ctx)
        let m = try Manifest.load(try HostName("fresnel"), in: s.ws)
        #expect(m.verify?.probes.isEmpty ?? true, "the probes of the purged board patches went with them")
        #expect(m.verify?.deviceTree.count == 3, "Bar 3's entries stay: they name no patch")
        let after = try s.read("fleet/fresnel.yaml")
        #expect(!after.contains("cpuinfo_max_freq") && before.contains("cpuinfo_max_freq"))
    }
}
