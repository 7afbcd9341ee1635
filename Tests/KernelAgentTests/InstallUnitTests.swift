import Foundation
import Testing
import KATestSupport
@testable import KernelAgent

/// The pieces of `ka install` and `ka yank` that need no host: the extlinux block, the package lines, the yank edit.
@Suite struct InstallUnitTests {
    static let stock = """
    # /boot/extlinux/extlinux.conf of fresnel (stock)
    DEFAULT eos-arm
    TIMEOUT 30

    LABEL eos-arm
        MENU LABEL linux-eos-arm
        LINUX /Image
        INITRD /initramfs-linux.img
        FDT /dtbs/rockchip/rk3399-pinebook-pro.dtb
        APPEND root=PARTLABEL=root rw

    """

    static func block(_ version: String = "7.0-1") -> ExtlinuxBlock {
        ExtlinuxBlock(suffix: "fresnel-fourier", menuLabel: "linux-fresnel-fourier \(version)", kernel: "/Image-fresnel-fourier",
                      initrd: "/initramfs-fresnel-fourier.img", fdt: "/dtbs-fresnel-fourier/rockchip/rk3399-pinebook-pro.dtb", fdtdir: nil, append: "root=PARTLABEL=root rw")
    }

    @Test func theBlockGoesBeforeTheFirstLabelAndAfterTheStockDefaultLeavingEveryOtherByte() throws {
        let out = String(decoding: try Self.block().apply(to: Data(Self.stock.utf8)), as: UTF8.self)
        let begin = try #require(out.range(of: "# >>> linux-fresnel-fourier (managed) >>>"))
        let stockDefault = try #require(out.range(of: "DEFAULT eos-arm"))
        let firstLabel = try #require(out.range(of: "LABEL eos-arm"))
        #expect(stockDefault.upperBound < begin.lowerBound && begin.upperBound < firstLabel.lowerBound, "\(out)")
        #expect(out.contains("DEFAULT linux-fresnel-fourier\n"))
        #expect(try Self.block().remove(from: Data(out.utf8)) == Data(Self.stock.utf8), "removing the block gives the file back byte for byte")
        // the default U-Boot picks (the last DEFAULT) is ours
        #expect(try Extlinux.defaultEntry(in: Data(out.utf8), shown: "x").label == "linux-fresnel-fourier")
        #expect(try Extlinux.defaultEntry(in: Data(Self.stock.utf8), shown: "x") ==
                Extlinux.Entry(label: "eos-arm", fdt: "/dtbs/rockchip/rk3399-pinebook-pro.dtb", fdtdir: nil, append: "root=PARTLABEL=root rw"))
    }

    @Test func aSecondInstallReplacesTheBlockInPlaceAndCRLFIsKept() throws {
        let once = try Self.block("7.0-1").apply(to: Data(Self.stock.utf8))
        let edited = Data((String(decoding: once, as: UTF8.self) + "# a person's note after the entries\n").utf8)
        let twice = try Self.block("7.0-2").apply(to: edited)
        let text = String(decoding: twice, as: UTF8.self)
        #expect(text.components(separatedBy: "# >>> linux-fresnel-fourier (managed) >>>").count == 2, "one block: \(text)")
        #expect(text.contains("linux-fresnel-fourier 7.0-2") && !text.contains("7.0-1"))
        #expect(text.hasSuffix("# a person's note after the entries\n"))
        #expect(try Self.block().apply(to: twice) != twice)
        #expect(try Self.block("7.0-2").apply(to: twice) == twice, "the same block again changes nothing")
        let crlf = Data(Self.stock.replacingOccurrences(of: "\n", with: "\r\n").utf8)
        let out = try Self.block().apply(to: crlf)
        #expect(!String(decoding: out, as: UTF8.self).replacingOccurrences(of: "\r\n", with: "").contains("\n"), "every line ends in CRLF")
        #expect(try Self.block().remove(from: out) == crlf)
    }

    @Test func unbalancedMarkersAreRefusedNotGuessed() throws {
        let broken = Data((Self.stock + "# >>> linux-fresnel-fourier (managed) >>>\nLABEL half\n").utf8)
        #expect(throws: ExtlinuxBlock.EditError.self) { try Self.block().apply(to: broken) }
        let two = Data((Self.stock + "# <<< linux-fresnel-fourier (managed) <<<\n# >>> linux-fresnel-fourier (managed) >>>\n").utf8)
        #expect(throws: ExtlinuxBlock.EditError.self) { try Self.block().apply(to: two) }
        // another suffix's block is someone else's: left alone
        let other = ExtlinuxBlock(suffix: "ohm", menuLabel: "ohm", kernel: "/Image-ohm", initrd: "/initramfs-ohm.img", fdt: nil, fdtdir: "/dtbs-ohm", append: nil)
        let both = try Self.block().apply(to: try other.apply(to: Data(Self.stock.utf8)))
        #expect(try Self.block().remove(from: both) == other.apply(to: Data(Self.stock.utf8)))
        #expect(Extlinux.dtbsPath("/dtbs/rockchip/x.dtb", suffix: "s") == "/dtbs-s/rockchip/x.dtb")
    }

    @Test func packageLinesParseAndBadOnesAreRefused() throws {
        let sum = String(repeating: "ab", count: 64)
        let ok = try InstallPackage.parse("linux-fresnel-fourier-7.0-2-aarch64.pkg.tar.zst b2:\(sum) sig:linux-fresnel-fourier-7.0-2-aarch64.pkg.tar.zst.sig\n"
                                          + "linux-fresnel-fourier-headers-7.0-2-aarch64.pkg.tar.zst b2:\(sum) sig:linux-fresnel-fourier-headers-7.0-2-aarch64.pkg.tar.zst.sig", from: "t")
        #expect(ok.count == 2)
        #expect(ok[0].nameAndVersion?.name == "linux-fresnel-fourier" && ok[0].nameAndVersion?.version == "7.0-2")
        #expect(ok[1].nameAndVersion?.name == "linux-fresnel-fourier-headers")
        for bad in ["../x.pkg.tar.zst b2:\(sum)", "x.pkg.tar.zst b2:zz", "x.pkg.tar.zst b2:\(sum) sig:other.sig", "", "x.tgz b2:\(sum)"] {
            #expect(throws: KAError.self, "\(bad)") { _ = try InstallPackage.parse(bad, from: "t") }
        }
    }

    @Test func yankAddsAnExcludedEntryWithProvenanceAndTheResolverCarvesThePatchOut() async throws {
        let s = try PromoteTests.tree()
        let before = try Resolver(workspace: s.ws, policy: try s.ctx.policy()).select(try Manifest.load(try HostName("h1"), in: s.ws)).paths.map(\.value)
        #expect(before.contains("board/b1/0001-first.patch"))
        let manifest = try s.read("fleet/h1.yaml")
        _ = try await YankVerb.parse(["h1", "board/b1/0001-first.patch", "--reason", "regression #12"]).execute(in: s.ctx)
        let after = try s.read("fleet/h1.yaml")
        // the include that named only the patch goes; the rest of the manifest is kept
        let kept = manifest.split(separator: "\n", omittingEmptySubsequences: false).filter { $0 != "  - board/b1/0001-first.patch" }.joined(separator: "\n")
        #expect(after.hasPrefix(kept.hasSuffix("\n") ? kept : kept + "\n"), "\(after)")
        #expect(after.contains("  - path: board/b1/0001-first.patch\n    reason: \"yanked by ") && after.contains("with ka yank: regression #12\""), "\(after)")
        let selected = try Resolver(workspace: s.ws, policy: try s.ctx.policy()).select(try Manifest.load(try HostName("h1"), in: s.ws)).paths.map(\.value)
        #expect(selected == before.filter { $0 != "board/b1/0001-first.patch" })
        let drift = try s.store.drift(host: "h1")
        #expect(drift?.reason.contains("yanked board/b1/0001-first.patch") == true)
        // a second yank of the same path, and a path the host does not carry, are refused
        await #expect(throws: KAError.self) { _ = try await YankVerb.parse(["h1", "board/b1/0001-first.patch"]).execute(in: s.ctx) }
        await #expect(throws: KAError.self) { _ = try await YankVerb.parse(["h1", "board/none/0001-x.patch"]).execute(in: s.ctx) }
        // yanking a whole selected dir drops its selector and records it
        _ = try await YankVerb.parse(["h1", "board/b1"]).execute(in: s.ctx)
        let m = try Manifest.load(try HostName("h1"), in: s.ws)
        let text = try s.read("fleet/h1.yaml")
        #expect(!m.selectors.contains { $0.raw.hasPrefix("board/b1") } && m.excluded.contains { $0.raw == "board/b1" }, "\(text)")
    }

    /// The systemd units in webhook/ run verbs that exist, with arguments those verbs accept (%i: a host).
    @Test func everyTimerServiceRunsAVerbThatParses() throws {
        let dir = TestEnv.projectRoot.appendingPathComponent("webhook")
        // every verb unit (kernel-agent.service runs `ka serve`, which is no verb)
        let units = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".service") && $0 != "kernel-agent.service" }
        #expect(units.contains("ka-verify@.service") && units.contains("ka-prune.service"), "\(units)")
        for unit in units {
            let text = try String(contentsOf: dir.appendingPathComponent(unit), encoding: .utf8)
            let exec = try #require(text.split(separator: "\n").first { $0.hasPrefix("ExecStart=") }, "\(unit)")
            let argv = exec.dropFirst("ExecStart=".count).split(separator: " ").map { $0 == "%i" ? "fresnel" : String($0) }
            #expect(argv.first?.hasSuffix("/ka") == true, "\(unit): \(argv)")
            let verb = try #require(Verbs.named(argv[1]), "\(unit) runs an unknown verb \(argv[1])")
            _ = try Verbs.parse(verb, Array(argv.dropFirst(2)))
        }
    }
}
