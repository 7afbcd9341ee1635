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
