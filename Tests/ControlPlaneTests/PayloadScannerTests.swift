import Foundation
import Testing
@testable import KAControlPlane

@Suite struct PayloadScannerTests {
    @Test func agreesWithJSONDecoderOnTheGiteaSample() throws {
        let data = try ContractTests.load("gitea/payloads/issue_comment.created.json")
        let v = try PayloadScanner.scan(Array(data), wanted: WebhookIntake.commentKeys)
        let p = try JSONDecoder().decode(IssueCommentPayload.self, from: data)
        #expect(v.string("action") == p.action)
        #expect(v.int("comment.id") == Int(p.comment.id))
        #expect(v.string("comment.body") == p.comment.body)
        #expect(v.string("comment.user.login") == p.comment.user.login)
        #expect(v.int("issue.number") == p.issue.number)
        #expect(v.string("repository.full_name") == p.repository.full_name)
        #expect(v["issue.pull_request"] == .null)
    }

    @Test func unescapesLikeFoundation() throws {
        let body = "line \"one\"\n\ttab \\ back \u{00e9} \u{1F600} </x>"
        let json = try JSONSerialization.data(withJSONObject: ["comment": ["body": body, "id": 5]])
        let v = try PayloadScanner.scan(Array(json), wanted: ["comment.body", "comment.id"])
        #expect(v.string("comment.body") == body)
        #expect(v.int("comment.id") == 5)
        let u = try PayloadScanner.scan(Array(#"{"a":"\u00e9\ud83d\ude00"}"#.utf8), wanted: ["a"])
        #expect(u.string("a") == "é😀")
        let skipped = try PayloadScanner.scan(Array(#"{"b":"\ud83d\ude00\u00e9\uD83D\uDE00","a":1}"#.utf8), wanted: ["a"])
        #expect(skipped.int("a") == 1)
    }

    @Test(arguments: [#"{"a":1"#, #"{"a":}"#, #"{"a":01}"#, #"{"a":"x}"#, #"{"a":tru}"#, #"{"a":1} x"#, #"{a:1}"#,
                      #"{"a":"\q"}"#, #"[1,]"#, "{\"a\":\"\u{01}\"}", #"{"a":-}"#, #"{"a":1.}"#, "",
                      // unpaired surrogates in a string the scanner skips (found by FuzzWebhook)
                      #"{"b":"\ud800"}"#, #"{"b":"\udc00x"}"#, #"{"b":"\ud800\u0041"}"#, #"{"b":"\uD83D\n"}"#])
    func rejectsMalformedJSON(_ text: String) {
        #expect(throws: PayloadScanner.Malformed.self) { try PayloadScanner.scan(Array(text.utf8), wanted: ["a"]) }
        #expect((try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])) == nil || text == "[1,]",
                "Foundation agrees it is malformed: \(text)")
    }
}
