import Foundation
import Testing
@testable import KAControlPlane
@testable import KernelAgent

/// Issue 20, high: a bot-run verb writes nothing outside the agent's own output dirs, whatever its arguments.
@Suite(.serialized) struct BotOutputPathTests {
    static func bytes(_ h: Harness, _ rel: String) -> Data? { FileManager.default.contents(atPath: h.root.appendingPathComponent(rel).path) }

    @Test func statusHtmlAtTheRegistryOrTheStateIsRefusedBeforeConsent() async throws {
        let h = try Harness()
        try await h.start()
        let g = h.gitea
        let guarded = ["fleet/hosts.yaml", ".ka/control.sqlite", "fleet/fresnel.yaml"]
        let before = guarded.map { Self.bytes(h, $0) }
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("ka-bot-home-\(UUID().uuidString).html")
        let i = g.createIssue(by: "markus", title: "dashboard")
        let attempts = ["/ka-status --html fleet/hosts.yaml", "/ka-status --html .ka/control.sqlite",
                        "/ka-status --html \(home.path)", "/ka-status --html ~/dash.html", "/ka-status --html /etc/ka-bot.html"]
        for (n, cmd) in attempts.enumerated() {
            g.comment(by: "markus", on: i, body: cmd)
            #expect(await h.settle { g.botComments(on: i).count == n + 1 }, "\(cmd)")
            let reply = g.botComments(on: i)[n].body
            #expect(reply.contains("refused") && Harness.nonce(in: reply) == nil, "\(cmd): \(reply)")
        }
        #expect(guarded.map { Self.bytes(h, $0) } == before)
        #expect(!FileManager.default.fileExists(atPath: home.path) && !FileManager.default.fileExists(atPath: "/etc/ka-bot.html"))
    }

    @Test func aPageUnderOutIsWrittenAndAPathSwappedAfterConsentIsStillRefused() async throws {
        let h = try Harness()
        try await h.start()
        let g = h.gitea
        let i = g.createIssue(by: "markus", title: "dashboard")
        g.comment(by: "markus", on: i, body: "/ka-status --html out/dash.html")
        #expect(await h.settle { g.botComments(on: i).count == 1 })
        let nonce = try #require(Harness.nonce(in: g.botComments(on: i)[0].body))
        g.comment(by: "markus", on: i, body: "/ka-yes \(nonce)")
        #expect(await h.settle { g.botComments(on: i).contains { $0.body.contains("✅ done") } })
        let page = try #require(Self.bytes(h, "out/dash.html"))
        #expect(String(decoding: page, as: UTF8.self).contains(StatusVerb.pageMark))

        // consent given for out/d2.html; before it runs, out/d2.html becomes a symlink to the registry
        let hosts = try #require(Self.bytes(h, "fleet/hosts.yaml"))
        g.comment(by: "markus", on: i, body: "/ka-status --html out/d2.html")
        #expect(await h.settle { g.botComments(on: i).filter { Harness.nonce(in: $0.body) != nil }.count == 2 })
        let second = try #require(g.botComments(on: i).compactMap { Harness.nonce(in: $0.body) }.last)
        try FileManager.default.createSymbolicLink(at: h.root.appendingPathComponent("out/d2.html"),
                                                   withDestinationURL: h.root.appendingPathComponent("fleet/hosts.yaml"))
        g.comment(by: "markus", on: i, body: "/ka-yes \(second)")
        #expect(await h.settle { g.botComments(on: i).contains { $0.body.contains("fleet/") && ($0.body.contains("❌") || $0.body.contains("refused")) } },
                "\(g.botComments(on: i).map(\.body))")
        #expect(Self.bytes(h, "fleet/hosts.yaml") == hosts)
    }
}
