import Foundation
import Testing
@testable import KAControlPlane
@testable import KernelAgent

/// `ka serve --config` and every `ka` command (KA_CONFIG) read one file: AgentConfig must accept every key the
/// control plane reads, or a serve config given as KA_CONFIG would be refused.
@Suite struct AgentConfigKeysTests {
    @Test func agentConfigToleratesEveryControlPlaneKey() throws {
        #expect(AgentConfig.controlPlaneKeys == ControlPlaneConfig.keys)
        let yaml = ControlPlaneConfig.keys.sorted().map { "\($0): x" }.joined(separator: "\n").replacingOccurrences(of: "allow: x", with: "allow: {}")
        let config = try AgentConfig.parse(yaml, file: "serve.yaml", stateDir: URL(fileURLWithPath: "/tmp/ka-state"))
        #expect(config.hosts.isEmpty)
    }
}
