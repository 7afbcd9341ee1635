import Foundation
import Testing
@testable import KAControlPlane
@testable import KernelAgent

/// Issue 20: `ka serve --config FILE`, as the shipped unit starts it, reaches the verbs it runs: one config,
/// loaded for the server and its verbs alike.
@Suite(.serialized) struct ServeConfigTests {
    /// The unit's ExecStart, split into argv (it holds no quoting).
    static func unitCommandLine() throws -> [String] {
        let unit = try String(contentsOf: Harness.projectRoot.appendingPathComponent("webhook/kernel-agent.service"), encoding: .utf8)
        let line = try #require(unit.split(separator: "\n").first { $0.hasPrefix("ExecStart=") })
        return line.dropFirst("ExecStart=".count).split(separator: " ").map(String.init)
    }

    @Test func theUnitsConfigFlagReachesTheVerbs() async throws {
        let argv = try Self.unitCommandLine()
        #expect(argv.count >= 4 && argv[1] == "serve" && argv[2] == "--config", "\(argv)")
        let h = try Harness()
        let g = h.gitea
        try await g.start()
        // the unit's config, in this test's own place: the his: section names a command (never run by a plan)
        let yaml = h.root.appendingPathComponent("ka.yaml")
        try Data("his:\n  command: [/bin/true, --stdio]\n".utf8).write(to: yaml)
        let port = ChaosTests.freePort()
        g.webhookURL = URL(string: "http://127.0.0.1:\(port)/webhook")
        var env = ChaosTests.serveEnvironment(h, port: port)
        env["KA_CONFIG"] = nil
        let server = ChaosTests.Server(port: port, env: env, log: h.root.appendingPathComponent("serve.log"))
        server.arguments = Array(argv.dropFirst()).map { $0 == argv[3] ? yaml.path : $0 }
        try await server.start()
        defer { server.termNow() }
        try await Task.sleep(nanoseconds: 1_100_000_000)   // the first cursor is "now"
        let issue = g.createIssue(by: "markus", title: "wake data")
        g.comment(by: "markus", on: issue, body: "/ka-wake-data")
        await Harness.waitFor("the plan reply", timeout: 30) { g.botComments(on: issue).count == 1 }
        let reply = try #require(g.botComments(on: issue).first).body
        #expect(!reply.contains("KA_CONFIG has no his"), "\(reply)")
        #expect(reply.contains("His (stdio: /bin/true --stdio)") && reply.contains("will:"), "\(reply)")
        #expect(await server.term() == 0)

        // two different files are refused, not silently merged
        let other = h.root.appendingPathComponent("other.yaml")
        try Data("his:\n  command: [/bin/false]\n".utf8).write(to: other)
        let r = try await Harness.runOffPool([ChaosTests.kaBinary, "serve", "--config", yaml.path], cwd: h.root,
                                             environment: env.merging(["KA_CONFIG": other.path]) { $1 })
        #expect(r.status == 2 && r.stderrText.contains("KA_CONFIG names another file"), "\(r.stderrText)")
    }
}
