import Foundation
import Testing
@testable import KernelAgent

/// Issue 6 §1: a YAML file cannot stall a reader. Yams compares mapping keys with their aliases expanded, so
/// a key aliasing a 9-way anchor chain of depth 7 (367 bytes) took 66 s to load before the budget.
@Suite struct YAMLBudgetTests {
    static func aliasChain(depth: Int, width: Int = 9) -> String {
        var lines = ["host: ohm", "k0: &a0 [" + Array(repeating: "0", count: width).joined(separator: ",") + "]"]
        for i in 1...depth { lines.append("k\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: width).joined(separator: ",") + "]") }
        lines.append("*a\(depth) : 1")
        return lines.joined(separator: "\n") + "\n"
    }

    @Test func aliasBombThroughAComplexKeyIsRefusedAtOnce() throws {
        let started = ContinuousClock.now
        do {
            _ = try Manifest.parse(Data(Self.aliasChain(depth: 7).utf8), host: HostName("ohm"), file: "fleet/ohm.yaml")
            Issue.record("the alias bomb was accepted")
        } catch let e as KAError {
            #expect(e.message.hasPrefix("fleet/ohm.yaml:7:"), "names the alias that crosses the budget: \(e.message)")
            #expect(e.message.contains("more than \(YAMLBudget.maxExpandedNodes) nodes"), "got \(e.message)")
        }
        #expect(ContinuousClock.now - started < .seconds(2), "refused in \(ContinuousClock.now - started)")
    }

    @Test func deepNestingAndOversizedFilesAreRefusedWithTheirPlace() {
        let deep = String(repeating: "[", count: YAMLBudget.maxDepth + 1) + String(repeating: "]", count: YAMLBudget.maxDepth + 1)
        let huge = "host: ohm\nnotes: \"" + String(repeating: "x", count: YAMLBudget.maxBytes) + "\"\n"
        for (text, expected) in [(deep, "hosts.yaml:1:\(YAMLBudget.maxDepth + 1): nested deeper than"), (huge, "hosts.yaml:1:1: \(huge.utf8.count) bytes")] {
            do { _ = try HostRegistry.parse(text, file: "hosts.yaml"); Issue.record("accepted") }
            catch let e as KAError { #expect(e.message.hasPrefix(expected), "got \(e.message)") }
            catch { Issue.record("untyped error \(error)") }
        }
    }

    @Test func ordinaryAnchorsStillLoad() throws {
        let yaml = """
        hosts:
          a: &common {roles: [target], arch: aarch64, distro: arch, wake: always}
          b: *common
        """
        let reg = try HostRegistry.parse(yaml, file: "hosts.yaml")
        #expect(reg.hosts.count == 2)
        // Expanded, the document has about 15,700 nodes at depth 3 (accepted) and 1.27 million at depth 5 (refused).
        try YAMLValue.checkBudget(Self.aliasChain(depth: 3), file: "x.yaml")
        #expect(throws: KAError.self) { try YAMLValue.checkBudget(Self.aliasChain(depth: 5), file: "x.yaml") }
    }
}
