import Foundation
import Testing
@testable import KernelAgent

/// The shipped fleet/ and patches/: the registry, the manifests, the seed's facts.
@Suite struct FleetTests {
    @Test func registryNamesEveryHostOfTheSeedWithRolesAndRouting() throws {
        let reg = try HostRegistry.load(Workspace(root: TestEnv.projectRoot))
        let names = Set(reg.hosts.keys.map(\.value))
        for h in ["ampere", "boltzmann", "fresnel", "ohm", "fermi", "kbuild-x86", "data", "noether", "hertz", "dcw2", "dcw3",
                  "turing", "nuccies", "tesla", "dcc1", "dcc2", "lagrange", "higgs", "clevo", "pi-fleet"] {
            #expect(names.contains(h), "\(h) missing from fleet/hosts.yaml")
        }
        #expect(reg.buildRoute(for: .aarch64).map(\.value) == ["boltzmann", "ampere", "fermi"])
        #expect(reg.buildRoute(for: .x86_64).map(\.value) == ["kbuild-x86"])
        #expect(try reg.entry(HostName("boltzmann")).buildTier == .primary)
        #expect(try reg.entry(HostName("ampere")).wake == .onDemand(via: "his", idleReleaseMinutes: 30))
        #expect(try reg.entry(HostName("kbuild-x86")).runsOn?.value == "data")
        #expect(try reg.entry(HostName("hertz")).roles == [.infra, .signing])
        #expect(try reg.entry(HostName("nuccies")).roles.contains(.compileOnly))
        for h in Policy.infraHosts { #expect(try reg.entry(HostName(h)).isInfra, "\(h)") }
        for d in ["higgs", "clevo", "pi-fleet"] { #expect(try reg.entry(HostName(d)).distro == .debian) }
    }

    /// The registry is parsed once per distinct content (ka serve plans every comment against it), and a change
    /// of a single byte, in the same file or in another checkout's, is read again, never served from the cache.
    @Test func aChangedRegistryIsReadAgainNotServedFromTheLastParse() throws {
        let a = try Sandbox(copyShipped: false), b = try Sandbox(copyShipped: false)
        #expect(try HostRegistry.load(a.ws).entry(HostName("h1")).arch == .aarch64)
        try a.write("fleet/hosts.yaml", Sandbox.miniRegistry.replacingOccurrences(of: "h1: {roles: [target], arch: aarch64", with: "h1: {roles: [target], arch: x86_64"))
        #expect(try HostRegistry.load(a.ws).entry(HostName("h1")).arch == .x86_64)
        #expect(try HostRegistry.load(b.ws).entry(HostName("h1")).arch == .aarch64)
        try b.write("fleet/hosts.yaml", Sandbox.miniRegistry + "\n  bad: [\n")
        #expect(throws: KAError.self) { try HostRegistry.load(b.ws) }
        #expect(try HostRegistry.load(a.ws).entry(HostName("h1")).arch == .x86_64)
    }

    @Test func fresnelManifestIsTheBootstrapReferenceBuild() throws {
        let m = try Manifest.load(HostName("fresnel"), in: Workspace(root: TestEnv.projectRoot))
        #expect(m.baseline.repo.hasSuffix("torvalds/linux.git"))
        #expect(m.baseline.ref == "v7.0")
        #expect(m.baseline.authoringContext == "mmind/linux-rockchip")
        #expect(m.kernelSuffix == "fresnel-fourier")
        #expect(m.installMode == .alongside && m.installAlongside == "linux-eos-arm")
        #expect(m.configSource?.contains("6.19.10-1-eos-arm/build/.config") == true)
        #expect(m.selectors.map(\.raw) == ["board/pinebook-pro", "subsystem/media/videobuf2/dma-resv-release-fence"])
        let ohm = try Manifest.load(HostName("ohm"), in: Workspace(root: TestEnv.projectRoot))
        #expect(ohm.selectors.map(\.raw) == ["arch/arm64/scs-arm-neon-build-fix"])
    }

    @Test func everyShippedManifestPromotes() async throws {
        let s = try Sandbox()
        for host in Fleet.manifestHosts(s.ws) {
            _ = try await PromoteVerb.parse([host.value]).execute(in: s.ctx)
            #expect(s.exists("build/\(host)/v7.0/manifest.lock"))
        }
        let lock = try s.read("build/fresnel/v7.0/manifest.lock")
        #expect(lock.contains("kernel_suffix: \"fresnel-fourier\""))
        #expect(lock.contains("board/pinebook-pro/0001-arm64-dts-rk3399-pinebook-pro-add-OC-OPP-tables-1704-2184.patch"))
        #expect(lock.contains("subsystem/media/videobuf2/dma-resv-release-fence/"))
    }

    @Test func registryErrorsAreLocated() throws {
        let cases = [
            ("hosts:\n  a: {roles: [target], arch: arm, distro: arch, wake: always}\n", "hosts.yaml:2:30: hosts.a.arch: unknown arch"),
            ("hosts:\n  a: {roles: [boss], arch: aarch64, distro: arch, wake: always}\n", "hosts.yaml:2:15: hosts.a.roles[0]: unknown role 'boss'"),
            ("hosts:\n  a: {roles: [build], arch: aarch64, distro: arch, wake: always}\n", "hosts.yaml:2:6: hosts.a: a build host needs build_tier"),
            ("hosts:\n  a: {roles: [target], arch: aarch64, distro: arch, wake: always}\nrouting:\n  aarch64: [a]\n", "hosts.yaml:4:13: routing.aarch64[0]: routing names 'a', which has no build role"),
            ("hosts:\n  A_B: {roles: [target], arch: aarch64, distro: arch, wake: always}\n", "hosts.yaml:2:3: hosts: host 'A_B' → not a valid host name"),
        ]
        for (yaml, expected) in cases {
            do { _ = try HostRegistry.parse(yaml, file: "hosts.yaml"); Issue.record("accepted: \(yaml)") }
            catch let e as KAError { #expect(e.message.hasPrefix(expected), "got \(e.message)") }
        }
    }

    /// Found by FuzzHosts: a huge idle_release overflowed `n * 86400` and killed every verb that reads hosts.yaml.
    @Test func durationsTooLargeOrMalformedAreRefusedNotTrapped() throws {
        let host = "hosts:\n  a: {roles: [target], arch: aarch64, distro: arch, wake: on-demand, idle_release: %@}\n"
        for bad in ["9223372036854775807d", "153722867280912931m", "9223372036854775807", "-5", "+5m", "5x", "m", ""] {
            do {
                _ = try HostRegistry.parse(host.replacingOccurrences(of: "%@", with: "'\(bad)'"), file: "hosts.yaml")
                Issue.record("accepted idle_release '\(bad)'")
            } catch let e as KAError {
                #expect(e.message.hasPrefix("hosts.yaml:2:"), "got \(e.message)")
                #expect(e.message.contains("bad duration"), "got \(e.message)")
            }
        }
        #expect(Duration.parseSeconds("106751991167300d") == 106_751_991_167_300 * 86400)
        #expect(Duration.parseSeconds("106751991167301d") == nil)
        // plain minutes, of any length
        #expect(Duration.parseSeconds("90") == 5400)
        #expect(Duration.parseSeconds("7") == 420)
        #expect(Duration.parseSeconds("30s") == 30 && Duration.parseSeconds("6h") == 21600 && Duration.parseSeconds("2d") == 172_800)
        let reg = try HostRegistry.parse(host.replacingOccurrences(of: "%@", with: "90"), file: "hosts.yaml")
        #expect(try reg.entry(HostName("a")).wake == .onDemand(via: "his", idleReleaseMinutes: 90))
    }
}
