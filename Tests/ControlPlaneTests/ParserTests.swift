import Foundation
import Testing
@testable import KAControlPlane

@Suite struct ParserTests {
    func ok(_ body: String) -> [Invocation] { CommandParser.parse(comment: body).compactMap { try? $0.get() } }

    @Test func findsCommandsAtLineStartWithShellQuoting() {
        let got = ok("""
        Please:
        /ka-promote fresnel --out "/srv/kernel-agent/manifest dir"
        and then /ka-status (not at line start)
        /ka-snooze 12 --for '6h'
        /ka-import besser 'out/*.patch' --to driver/bes2600 \\$HOME "a \\"b\\""
        """)
        #expect(got.map(\.verb) == ["promote", "snooze", "import"])
        #expect(got[0].args == ["fresnel", "--out", "/srv/kernel-agent/manifest dir"])
        #expect(got[0].line == 2)
        #expect(got[1].args == ["12", "--for", "6h"])
        #expect(got[2].args == ["besser", "out/*.patch", "--to", "driver/bes2600", "$HOME", "a \"b\""])
    }

    @Test func neverReadsCommandsInCodeQuotesOrComments() {
        let body = """
        ```
        /ka-install fresnel
        ```
        ~~~sh
        /ka-abandon x --purge-from-fleet
        ~~~
            /ka-install indented
        \t/ka-install tabbed
        > /ka-install quoted
          > /ka-install quoted-indented
        <!-- /ka-install hidden -->
        <!--
        /ka-install hidden-multiline
        -->
        /ka-status
        """
        #expect(ok(body).map(\.verb) == ["status"])
    }

    @Test func reportsBadQuotingAndTitles() throws {
        let r = CommandParser.parse(comment: "/ka-promote 'fresnel")
        guard case let .failure(p)? = r.first else { Issue.record("expected a problem"); return }
        #expect(p.message == "unterminated ' quote")
        #expect(try CommandParser.parse(title: "[ka:promote] ohm")?.get() == Invocation(verb: "promote", args: ["ohm"], line: 0, raw: "[ka:promote] ohm"))
        #expect(CommandParser.parse(title: "promote ohm") == nil)
        #expect(CommandParser.parse(title: "[ka:] x") == nil)
    }
}

/// Gitea's RFC 3339 times, read and written without ISO8601DateFormatter: the same instants and the same text.
@Suite struct GiteaTimeTests {
    @Test func readsGiteasFormsAndWritesWhatTheFormatterWrote() throws {
        let t = Date(timeIntervalSince1970: 1_796_048_325)   // 2026-11-30T14:18:45Z
        #expect(GiteaTime.parse("2026-11-30T14:18:45Z") == t)
        #expect(GiteaTime.parse("2026-11-30T22:18:45+08:00") == t)
        #expect(GiteaTime.parse("2026-11-30T09:18:45-05:00") == t)
        let frac = try #require(GiteaTime.parse("2026-11-30T14:18:45.250Z"))
        #expect(abs(frac.timeIntervalSince(t) - 0.25) < 0.001)
        for bad in ["", "yesterday", "2026-12-01", "2026-13-01T00:00:00Z"] { #expect(GiteaTime.parse(bad) == nil, "\(bad)") }
        let reference = ISO8601DateFormatter()
        reference.formatOptions = [.withInternetDateTime]
        for d in [t, Date(timeIntervalSince1970: 0), Date(timeIntervalSince1970: 4_102_444_799)] {
            #expect(GiteaTime.format(d) == reference.string(from: d))
            #expect(GiteaTime.parse(GiteaTime.format(d)) == d)
        }
    }
}

/// Issue 18: a bad name is a usage error with the same text at the CLI and in the bot.
@Suite struct SameUsageErrorTests {
    @Test func theCLIAndTheBotGiveTheSameTextForTheSameBadArgument() async throws {
        let h = try Harness()
        try await h.start()
        let g = h.gitea
        let i = g.createIssue(by: "markus", title: "usage")
        let cases = [["build", "Bad_Host"], ["promote", "../etc"], ["verify", "UPPER"]]
        for (n, args) in cases.enumerated() {
            g.comment(by: "markus", on: i, body: "/ka-\(args[0]) \(args[1])")
            #expect(await h.settle { g.botComments(on: i).count == n + 1 }, "\(args)")
            let reply = g.botComments(on: i)[n].body
            var env = ProcessInfo.processInfo.environment
            env["KA_ROOT"] = h.root.path
            env["KA_STATE_DIR"] = h.root.appendingPathComponent(".ka").path
            let cli = try await Harness.runOffPool([ChaosTests.kaBinary] + args, cwd: h.root, environment: env)
            let message = "The value '\(args[1])' is invalid for '<host>'"
            #expect(cli.status == 64 && cli.stderrText.contains("Error: \(message)"), "\(args): \(cli.stderrText)")
            #expect(reply.contains(message) && Harness.nonce(in: reply) == nil, "\(args): \(reply)")
        }
    }
}
