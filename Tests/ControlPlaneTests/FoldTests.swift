import Foundation
import KATestSupport
import Testing
@testable import KAControlPlane
@testable import KernelAgent

/// A run's output in its status comment stays in its fence, however many backticks it holds (issue 20).
@Suite struct FoldTests {
    static let hostile = "ok\n```\n# Heading\n[link](http://attacker.invalid/x) <img src=\"http://attacker.invalid/y\">\n@markus\n"

    static func render(_ markdown: String) async throws -> String {
        let r = try await offPool { try TestCommand.runBlocking(["cmark-gfm", "--unsafe", "-e", "table", "-e", "autolink"], stdin: Data(markdown.utf8)) }
        try #require(r.status == 0, "MISSING or failing cmark-gfm (run scripts/setup): \(r.stderrText)")
        return r.stdoutText
    }

    @Test func shortAndLongOutputStayInTheirFences() async throws {
        for text in [Self.hostile, Array(repeating: Self.hostile, count: 10).joined()] {
            let html = try await Self.render(Engine.fold(text) + "\n\nafter\n")
            let live = html.replacingOccurrences(of: #"<pre><code[^>]*>[\s\S]*?</code></pre>"#, with: "", options: .regularExpression)
            #expect(!live.contains("attacker.invalid") && !live.contains("<h1"), "\(html)")
            #expect(html.contains("<p>after</p>"), "\(html)")
        }
    }
}
