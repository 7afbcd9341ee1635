import Foundation
import Testing
import KATestSupport
@testable import KernelAgent

@Suite struct Blake2bTests {
    @Test(arguments: [0, 1, 3, 127, 128, 129, 255, 256, 257, 1_000_003])
    func matchesCoreutilsB2sum(size: Int) async throws {
        var rng = SystemRandomNumberGenerator()
        let data = Data((0..<size).map { _ in UInt8.random(in: 0...255, using: &rng) })
        let ref = try await TestCommand.run(["b2sum"], stdin: data)
        #expect(ref.status == 0)
        #expect(Blake2b.hex(data) == String(ref.stdoutText.prefix(128)))
        let ref256 = try await TestCommand.run(["b2sum", "-l", "256"], stdin: data)
        #expect(Blake2b.hex(data, digestLength: 32) == String(ref256.stdoutText.prefix(64)))
    }

    @Test func streamingEqualsOneShot() {
        let data = Data((0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        var h = Blake2b()
        var i = 0
        for step in [1, 127, 128, 129, 500, 4000] where i < data.count {
            h.update(data[i..<min(data.count, i + step)]); i += step
        }
        h.update(data[min(i, data.count)...])
        #expect(h.hexDigest() == Blake2b.hex(data))
    }
}
