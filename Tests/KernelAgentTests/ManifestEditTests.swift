import Foundation
import Testing
@testable import KernelAgent

/// migrate-tree and abandon rewrite manifests in place: what they do not change stays byte for byte.
@Suite struct ManifestEditTests {
    static let manifest = """
    host: ohm
    baseline: {repo: r, ref: v7.0}
    kernel_suffix: ohm
    scopes: [board/pinebook-pro, "soc/rockchip/rk3399"]
    include:
      - &inc arch/arm64/scs-arm-neon-build-fix   # comment

    """

    /// Found by FuzzManifest (Tests/Fuzz/corpus/manifest/regress-rewrite-keeps-bom.yaml): the rewrite dropped a
    /// leading UTF-8 byte-order mark, so rewriting every selector to itself changed the file.
    @Test func aByteOrderMarkAndEverythingUntouchedAreKept() throws {
        let data = Data([0xEF, 0xBB, 0xBF]) + Data(Self.manifest.utf8)
        let m = try Manifest.parse(data, host: HostName("ohm"), file: "fleet/ohm.yaml")
        #expect(m.selectors.map(\.raw) == ["board/pinebook-pro", "soc/rockchip/rk3399", "arch/arm64/scs-arm-neon-build-fix"])
        #expect(ManifestEdit.rewrite(data, selectors: m.selectors.map { ($0, $0.raw) }) == data)
        let moved = try #require(ManifestEdit.rewrite(data, selectors: [(m.selectors[1], "soc/rockchip/rk3399-new")]))
        #expect(moved == Data([0xEF, 0xBB, 0xBF]) + Data(Self.manifest.replacingOccurrences(of: "\"soc/rockchip/rk3399\"", with: "\"soc/rockchip/rk3399-new\"").utf8))
    }
}
