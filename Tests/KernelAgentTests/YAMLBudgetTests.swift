import Foundation
import Testing
@testable import KernelAgent

/// The YAML budget counts what every alias expands to, nested collections included.
@Suite struct YAMLBudgetTests {
    /// A 9-way alias chain of `depth` levels, each level's list wrapped in one more list, and a mapping key that
    /// aliases the top: 64 aliases, under 500 bytes. Yams compares mapping keys expanded; before the fix the
    /// budget weighed each anchor as 2 nodes and FuzzManifest timed out on this file (over 10 s to load).
    static func wrappedAliasChain(depth: Int) -> String {
        var lines = ["host: ohm", "k0: &a0 [[0,0,0,0,0,0,0,0,0]]"]
        for i in 1...depth { lines.append("k\(i): &a\(i) [[" + Array(repeating: "*a\(i - 1)", count: 9).joined(separator: ",") + "]]") }
        lines.append("*a\(depth) : 1")
        return lines.joined(separator: "\n") + "\n"
    }

    @Test func anAliasChainInsideNestedListsIsRefusedAtOnce() throws {
        let started = ContinuousClock.now
        do {
            _ = try Manifest.parse(Data(Self.wrappedAliasChain(depth: 7).utf8), host: HostName("ohm"), file: "fleet/ohm.yaml")
            Issue.record("the alias bomb was accepted")
        } catch let e as KAError {
            #expect(e.message.hasPrefix("fleet/ohm.yaml:7:"), "names the alias that crosses the budget: \(e.message)")
            #expect(e.message.contains("expands to more than \(YAMLBudget.default.maxExpandedNodes) nodes"), "got \(e.message)")
        }
        #expect(ContinuousClock.now - started < .seconds(2), "refused in \(ContinuousClock.now - started)")
    }

    @Test func nestedAnchorsWithinTheBudgetStillLoad() throws {
        // Expanded, the document has about 17,500 nodes at depth 3 (accepted) and 157,000 at depth 4 (refused).
        try YAMLBudget.default.check(Self.wrappedAliasChain(depth: 3), file: "x.yaml")
        #expect(throws: KAError.self) { try YAMLBudget.default.check(Self.wrappedAliasChain(depth: 4), file: "x.yaml") }
        let yaml = "hosts:\n  a: &common {roles: [target], arch: aarch64, distro: arch, wake: always}\n  b: *common\n"
        #expect(try HostRegistry.parse(yaml, file: "hosts.yaml").hosts.count == 2)
    }

    /// Issue 20: 3,000 per-patch probes (about 250 KB, inside the manifest budget) load, each placed on its own
    /// line. Splitting the file's text once per probe made this quadratic (54 s to promote); scripts/bench-promote
    /// times it.
    @Test func threeThousandPerPatchProbesLoadEachAtItsLine() throws {
        var yaml = "host: ohm\nbaseline: {repo: r, ref: v7.0}\nkernel_suffix: ohm\nscopes: [board/b1]\nverify:\n  probes:\n"
        for i in 0..<3000 {
            yaml += "    - {patch: board/b1/\(String(format: "%04d", i))-fix-\(i).patch, probe: \"cmd [dmesg] !~ BUG-\(i)\"}\n"
        }
        #expect(yaml.utf8.count > 180_000 && yaml.utf8.count <= YAMLBudget.default.maxBytes, "\(yaml.utf8.count) bytes")
        let m = try Manifest.parse(Data(yaml.utf8), host: HostName("ohm"), file: "fleet/ohm.yaml")
        let probes = try #require(m.verify?.probes)
        #expect(probes.count == 3000)
        #expect(probes[2999].location.line == 3006 && probes[2999].mention.ownsLine)
    }
}
