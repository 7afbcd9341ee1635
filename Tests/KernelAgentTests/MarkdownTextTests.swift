import Foundation
import KATestSupport
import Testing
@testable import KernelAgent

/// Issue 20: host output that goes into an issue stays text, checked with a real GFM renderer (cmark-gfm, which
/// scripts/setup installs), raw HTML let through as Gitea's sanitizer lets `<img>` through.
@Suite struct MarkdownTextTests {
    /// What a hostile host prints: a fence closer, then everything Markdown would make live.
    static let hostile = """
        ok
        ```
        # Heading
        [link](http://attacker.invalid/x) ![img](http://attacker.invalid/i.png) <img src="http://attacker.invalid/y">
        @markus please look
        ````
        | a | b |
        """

    static func render(_ markdown: String) async throws -> String {
        let r = try await offPool { try TestCommand.runBlocking(["cmark-gfm", "--unsafe", "-e", "table", "-e", "autolink"], stdin: Data(markdown.utf8)) }
        guard r.status == 0 else {
            Issue.record("MISSING or failing cmark-gfm (run scripts/setup): \(r.stderrText)")
            throw KAError.failure("cmark-gfm", "exit \(r.status)")
        }
        return r.stdoutText
    }

    /// The HTML outside <pre>/<code>: where Markdown made something live.
    static func live(_ html: String) -> String {
        html.replacingOccurrences(of: #"<pre><code[^>]*>[\s\S]*?</code></pre>"#, with: "", options: .regularExpression)
            .replacingOccurrences(of: #"<code>[\s\S]*?</code>"#, with: "", options: .regularExpression)
    }

    /// `asText`: the host text is shown as plain text (inline), so it may appear outside code, but never as markup.
    static func assertInert(_ html: String, tableAllowed: Bool = false, asText: Bool = false, sourceLocation: SourceLocation = #_sourceLocation) {
        let live = Self.live(html)
        for tag in ["<h1", "<h2", "<a ", "<img"] + (tableAllowed ? [] : ["<table"]) {
            #expect(!live.contains(tag), "\(tag) is live:\n\(html)", sourceLocation: sourceLocation)
        }
        #expect(!live.contains(" href=\""), "a live link:\n\(html)", sourceLocation: sourceLocation)
        if !asText {
            #expect(!live.contains("attacker.invalid"), "host text escaped its fence:\n\(html)", sourceLocation: sourceLocation)
        }
    }

    @Test func aBlockHoldsAnyTextAndOnlyOneBlockIsRendered() async throws {
        let html = try await Self.render("Output:\n\n" + MarkdownText.block(Self.hostile) + "\n\nafter\n")
        Self.assertInert(html)
        #expect(html.components(separatedBy: "<pre>").count == 2, "one code block:\n\(html)")
        #expect(html.contains("<p>after</p>"), "the fence closed where it should:\n\(html)")
        // the fence outgrows the text's longest run
        #expect(MarkdownText.block("a ````` b").hasPrefix("``````\n"))
        #expect(MarkdownText.block("plain").hasPrefix("```\n"))
    }

    @Test func spansAndInlineTextStayText() async throws {
        let line = Self.hostile.replacingOccurrences(of: "\n", with: " ")
        var html = try await Self.render("probe: " + MarkdownText.code(line) + "\n")
        Self.assertInert(html)
        html = try await Self.render("note: " + MarkdownText.inline(line) + "\n")
        Self.assertInert(html, asText: true)
        // no mention: Gitea reads `@name` in the rendered text; the word joiner breaks the name from the `@`
        #expect(!Self.live(html).contains("@markus"), "\(html)")
        #expect(Self.live(html).contains("@\u{2060}markus"))
    }

    @Test func aRegressionBodyKeepsAHostileProbeAndOutputInside() async throws {
        let record = InstallRecord(job: "fresnel-20261207-1200-ab12", host: "fresnel", buildJob: "fresnel-20261207-1100-cd34",
                                   version: "7.0.0-1", lockB2sum: String(repeating: "a", count: 128),
                                   patches: "board/pbp/0001-x.patch b2:00", baselineRef: "v7.0", state: .installed, startedAt: Date())
        let bar = BarResult(bar: 4, name: "patch probes", code: .fail, required: true, detail: Self.hostile,
                            probe: "file /sys/x == \"`a|b`\" ``` # h", patch: "board/pbp/0001-x.patch")
        let body = Regression.body(host: try HostName("fresnel"), job: try JobID("fresnel-20261207-1200-ab12"), bar: bar, record: record,
                                   good: nil, newPatches: record.patchLines, pkgbase: "linux-fresnel", signer: try HostName("hertz"))
        let html = try await Self.render(body)
        Self.assertInert(html, tableAllowed: true)
        #expect(html.contains("<table>"), "the summary table still renders:\n\(html)")
        #expect(html.contains("Installs to fresnel are halted"), "the text after the output is outside the fence:\n\(html)")
    }
}
