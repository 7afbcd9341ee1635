import Foundation
import Testing
@testable import KAControlPlane
@testable import KernelAgent

/// The issue_comment reader: JSONDecoder (`WebhookIntake.readComment`) against the hand-rolled scanner it
/// replaces, on Gitea's sample payloads (../shared/gitea/payloads, read in place), the webhook fuzz corpus,
/// the stand-in's payloads and the scanner's own edge cases.
@Suite struct WebhookDecodingTests {
    static var samples: URL { ContractTests.shared.appendingPathComponent("gitea/payloads") }
    static var corpus: URL { Harness.projectRoot.appendingPathComponent("Tests/Fuzz/corpus/webhook") }

    /// Every file in `dir`, sorted; a missing or empty dir is a failure, never an empty pass.
    static func files(in dir: URL) throws -> [(name: String, body: [UInt8])] {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() } catch {
            Issue.record("MISSING \(dir.path) — put shared/ beside the project or set KA_SHARED_DIR (\(error))")
            throw error
        }
        #expect(!names.isEmpty, "no files in \(dir.path)")
        return try names.map { ($0, Array(try Data(contentsOf: dir.appendingPathComponent($0)))) }
    }

    /// The fields two readings disagree on.
    static func differences(_ a: WebhookIntake.CommentDelivery, _ b: WebhookIntake.CommentDelivery) -> [String] {
        let pairs: [(String, Bool)] = [
            ("action", a.action == b.action), ("repository.full_name", a.repository == b.repository), ("issue.number", a.issue == b.issue),
            ("is_pull", a.isPull == b.isPull), ("comment.id", a.comment.id == b.comment.id), ("comment.body", a.comment.body == b.comment.body),
            ("comment.user", a.comment.user == b.comment.user), ("comment.issue_url", a.comment.issue_url == b.comment.issue_url),
            ("comment.pull_request_url", a.comment.pull_request_url == b.comment.pull_request_url),
            ("comment.created_at", a.comment.created_at == b.comment.created_at), ("comment.updated_at", a.comment.updated_at == b.comment.updated_at),
        ]
        return pairs.filter { !$0.1 }.map(\.0)
    }

    /// Bodies beside the files: the stand-in's payloads (escapes, unicode, a PR comment) and the scanner's edge cases.
    static func inlineCases() throws -> [(name: String, body: [UInt8])] {
        let g = GiteaStandIn()
        let issue = g.createIssue(by: "markus", title: "decoding")
        var out: [(String, [UInt8])] = []
        for (i, text) in ["/ka-status", "line \"one\"\n\ttab \\ back \u{00e9} \u{1F600} </x>", "", "/ka-help\r\n/ka-status fresnel"].enumerated() {
            let id = g.comment(by: "markus", on: issue, body: text, webhook: false)
            out.append(("stand-in comment \(i)", Array(g.withLock { g.commentPayload(g.comments[id]!, action: i == 3 ? "edited" : "created") })))
        }
        let pr = #"{"action":"created","is_pull":true,"repository":{"full_name":"a/b"},"issue":{"number":5,"pull_request":{"merged":false}},"comment":{"id":8,"body":"/ka-help","user":{"login":"a","id":2}}}"#
        out.append(("pull request comment", Array(pr.utf8)))
        let malformed = [#"{"a":1"#, #"{"a":}"#, #"{"a":01}"#, #"{"a":"x}"#, #"{"a":tru}"#, #"{"a":1} x"#, #"{a:1}"#, #"{"a":"\q"}"#,
                         "{\"a\":\"\u{01}\"}", #"{"a":-}"#, #"{"a":1.}"#, "", #"{"b":"\ud800"}"#, #"{"b":"\udc00x"}"#,
                         #"{"b":"\ud800\u0041"}"#, #"{"b":"\uD83D\n"}"#]
        for m in malformed { out.append(("malformed \(m.debugDescription)", Array(m.utf8))) }
        let wrong = [#"{"action":"created"}"#, #"[1]"#, #"{"action":"created","repository":{"full_name":"a/b"},"issue":{"number":"1"},"comment":{"id":1,"body":"b","user":{"login":"a"}}}"#,
                     #"{"action":"created","repository":{"full_name":"a/b"},"issue":{"number":1},"comment":{"id":1,"body":null,"user":{"login":"a"}}}"#]
        for w in wrong { out.append(("wrong shape \(w.debugDescription)", Array(w.utf8))) }
        let good = #"{"action":"created","repository":{"full_name":"a/b"},"issue":{"number":1},"comment":{"id":1,"body":"/ka-help","user":{"login":"a"}}"#
        for junk in [#""\q""#, "01", #""\ud800""#, "\"\u{01}\"", "-"] {
            out.append(("unread malformed \(junk.debugDescription)", Array((good + ",\"x\":" + junk + "}").utf8)))
        }
        return out
    }

    @Test func theDecoderAndTheScannerAgreeOnTheSamplesTheCorpusAndTheEdgeCases() throws {
        let samples = try Self.files(in: Self.samples), corpus = try Self.files(in: Self.corpus)
        #expect(samples.count >= 2 && corpus.count >= 5)
        var compared = 0, accepted = 0
        for (name, body) in samples.map({ ("sample \($0.name)", $0.body) }) + corpus.map({ ("corpus \($0.name)", $0.body) }) + (try Self.inlineCases()) {
            let old = Result { () throws(PayloadError) in try WebhookIntake.scanComment(body) }
            let new = Result { () throws(PayloadError) in try WebhookIntake.readComment(body) }
            compared += 1
            switch (name, old, new) {
            // The two differences, each by design; the checks keep them exactly as described.
            case let ("corpus comment-escaped.json", .failure(o), .success(n)):
                // comment.id 9007199254740993 > 2^53: the scanner read numbers as Double and refused integers beyond
                // ±9e15; JSONDecoder reads Gitea's int64 ids exactly.
                #expect(o.kind == .badField)
                #expect(n.comment.id == 9_007_199_254_740_993 && n.comment.body == "line \"one\"\n\u{e9}\u{1F600} /ka-x" && n.isPull)
            case let ("corpus duplicate-keys.json", .success(o), .success(n)):
                // comment.body is given twice. JSON leaves the choice to the reader (RFC 8259 §4): the scanner kept
                // the last, JSONDecoder keeps the first. Gitea (Go's encoding/json) never writes a key twice.
                #expect(Self.differences(o, n) == ["comment.body"])
                #expect(o.comment.body == "/ka-promote x" && n.comment.body == "/ka-help")
            case let (name, .failure(o), .success(n)) where name.hasPrefix("unread malformed"):
                // JSONDecoder checks only the values it reads: a malformed string or number in a field the bot does
                // not read passes (the signature has already shown that Gitea sent it). The scanner checked every byte.
                #expect(o.kind == .malformedJSON)
                #expect(n.action == "created" && n.comment.body == "/ka-help" && n.comment.user.login == "a")
            case let (_, .success(o), .success(n)):
                accepted += 1
                #expect(Self.differences(o, n) == [], "\(name): the readers disagree")
            case let (_, .failure(o), .failure(n)):
                #expect(o.kind == n.kind, "\(name): refused by both, the scanner for \(o.kind) (\(o)), the decoder for \(n.kind) (\(n))")
            case let (_, o, n):
                Issue.record("\(name): the scanner says \(o), the decoder \(n)")
            }
        }
        #expect(accepted >= 7, "the comparison covered \(accepted) accepted bodies of \(compared)")
    }

    /// A refused body gets a 400 that says which field and what was wrong with it.
    @Test(arguments: [
        (#"{"action":"created","repository":{"full_name":"a/b"},"issue":{"number":1},"comment":{"id":1,"body":"b","user":{}}}"#,
         "missing field `comment.user.login`"),
        (#"{"action":"created","repository":{"full_name":"a/b"},"issue":{"number":1},"comment":{"id":"7","body":"b","user":{"login":"a"}}}"#,
         "`comment.id`: expected an integer, found a string"),
        (#"{"action":"created","repository":{"full_name":"a/b"},"issue":{"number":1.5},"comment":{"id":7,"body":"b","user":{"login":"a"}}}"#,
         "`issue.number`: 1.5 is not a whole number that fits Int"),
        (#"{"action":"created","repository":{"full_name":"a/b"},"issue":{"number":1},"comment":{"id":99999999999999999999,"body":"b","user":{"login":"a"}}}"#,
         "`comment.id`: 99999999999999999999 is not a whole number that fits Int64"),
        (#"{"action":"created","repository":{"full_name":"a/b"},"issue":{"number":1},"comment":{"id":7,"body":null,"user":{"login":"a"}}}"#,
         "`comment.body` is null; expected a string"),
        (#"{"action":["created"]}"#, "`action`: expected a string, found an array"),
        (#"[1]"#, "the body: expected an object, found an array"),
        (#"{"action":"created","comment":{"body":"x"x}}"#, "malformed JSON: "),
    ])
    func refusalsSayWhichFieldAndWhatWasWrong(_ body: String, _ reason: String) {
        #expect(throws: PayloadError.self) { try WebhookIntake.readComment(Array(body.utf8)) }
        do { _ = try WebhookIntake.readComment(Array(body.utf8)) } catch {
            #expect(error.reason.hasPrefix(reason), "\(error.reason)")
            #expect(error.kind == (reason.hasPrefix("malformed JSON") ? .malformedJSON : .badField))
            if error.kind == .malformedJSON { #expect(error.reason.contains("character"), "the position: \(error.reason)") }
        }
    }
}
