import Foundation
import Testing
@testable import KAControlPlane
@testable import KernelAgent

/// The issue_comment reader (`WebhookIntake.readComment`, JSONDecoder). Before the hand-rolled scanner it replaced
/// was deleted, a differential test showed both read the same (commit "Webhook: issue_comment read with
/// JSONDecoder…"); these pin what the decoder reads from Gitea's sample payloads (../shared/gitea/payloads, read
/// in place), the webhook fuzz corpus and the stand-in's payloads.
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

    /// The value at a dotted key path of a JSONSerialization object.
    static func value(_ object: Any, _ path: String) -> Any? {
        path.split(separator: ".").reduce(Optional(object)) { ($0 as? [String: Any])?[String($1)] }
    }

    /// Each sample is read field by field as JSONSerialization, an independent reader, reads it: an
    /// issue_comment sample is accepted with the same fields, any other is refused for a missing field.
    @Test func theSamplesDecodeToTheFieldsJSONSerializationReads() throws {
        var comments = 0
        for (name, body) in try Self.files(in: Self.samples) {
            let object = try JSONSerialization.jsonObject(with: Data(body))
            let result = Result { () throws(PayloadError) in try WebhookIntake.readComment(body) }
            guard name.hasPrefix("issue_comment") else {
                guard case let .failure(e) = result else { Issue.record("\(name) is not an issue_comment, yet it was read as one"); continue }
                #expect(e.kind == .badField && e.reason.hasPrefix("missing field"), "\(name): \(e)")
                continue
            }
            comments += 1
            let d = try result.get()
            let s = { (path: String) in Self.value(object, path) as? String }
            let n = { (path: String) in (Self.value(object, path) as? NSNumber)?.int64Value }
            #expect(d.action == s("action"))
            #expect(d.repository == s("repository.full_name"))
            #expect(Int64(d.issue) == n("issue.number"))
            #expect(d.isPull == ((Self.value(object, "is_pull") as? Bool) == true || !(Self.value(object, "issue.pull_request") is NSNull)))
            #expect(d.comment.id == n("comment.id"))
            #expect(d.comment.body == s("comment.body") && !d.comment.body.isEmpty)
            #expect(d.comment.user == GiteaUser(id: n("comment.user.id") ?? -1, login: s("comment.user.login") ?? "?"))
            #expect(d.comment.issue_url == s("comment.issue_url") && d.comment.pull_request_url == s("comment.pull_request_url"))
            #expect(d.comment.created_at == s("comment.created_at") && d.comment.updated_at == s("comment.updated_at"))
            #expect(d.comment.issueNumber == d.issue, "issue_url names the issue")
        }
        #expect(comments >= 1, "no issue_comment sample in \(Self.samples.path)")
    }

    /// The corpus is ours: its readings are written out, including the three places where the scanner read
    /// differently (ids beyond 2^53, a key given twice, malformed values in fields the bot does not read).
    @Test func theFuzzCorpusDecodesAsPinned() throws {
        let files = Dictionary(uniqueKeysWithValues: try Self.files(in: Self.corpus).map { ($0.name, $0.body) })
        func read(_ name: String) throws -> WebhookIntake.CommentDelivery {
            try WebhookIntake.readComment(try #require(files[name], "\(name) is missing from the corpus"))
        }
        func refusal(_ name: String) throws -> PayloadError? {
            let body = try #require(files[name], "\(name) is missing from the corpus")
            do { _ = try WebhookIntake.readComment(body); return nil } catch { return error }
        }
        let minimal = try read("comment-minimal.json")
        #expect(minimal == WebhookIntake.CommentDelivery(
            action: "created", repository: "marfrit/kernel-agent", issue: 42, isPull: false,
            comment: GiteaComment(id: 7, body: "/ka-help", user: GiteaUser(id: 3, login: "alice"), issue_url: "https://x/issues/42",
                                  pull_request_url: "", created_at: "2026-01-01T00:00:00Z", updated_at: "2026-01-01T00:00:00Z")))
        let escaped = try read("comment-escaped.json")
        #expect(escaped.comment.id == 9_007_199_254_740_993, "an int64 above 2^53, exactly")
        #expect(escaped.comment.body == "line \"one\"\n\u{e9}\u{1F600} /ka-x" && escaped.comment.user == GiteaUser(id: -1, login: "b\u{f6}b"))
        #expect(escaped.action == "edited" && escaped.isPull && escaped.comment.created_at == "")
        #expect(try read("duplicate-keys.json").comment.body == "/ka-help", "a key given twice: JSONDecoder keeps the first")
        #expect(try refusal("issues-minimal.json") == PayloadError(kind: .badField, reason: "missing field `comment`"))
        #expect(try refusal("regress-unpaired-surrogate-in-skipped-key.json")?.kind == .malformedJSON)
        let unpinned = Set(files.keys).subtracting(["comment-minimal.json", "comment-escaped.json", "duplicate-keys.json", "issues-minimal.json",
                                                    "regress-unpaired-surrogate-in-skipped-key.json"])
        for name in unpinned.sorted() {
            // later finds of the fuzzer: they must be read or refused with a reason, never crash
            if let e = try refusal(name) { #expect(!e.reason.isEmpty, "\(name)") }
        }
    }

    /// What the stand-in sends (Gitea's full shape) reads back as what it made, escapes and all.
    @Test func theStandInsPayloadsReadBackAsMade() throws {
        let g = GiteaStandIn()
        let issue = g.createIssue(by: "markus", title: "decoding")
        for text in ["/ka-status", "line \"one\"\n\ttab \\ back \u{00e9} \u{1F600} </x>", "", "/ka-help\r\n/ka-status fresnel"] {
            let id = g.comment(by: "markus", on: issue, body: text, webhook: false)
            let (c, payload) = g.withLock { (g.comments[id]!, g.commentPayload(g.comments[id]!, action: "created")) }
            let d = try WebhookIntake.readComment(Array(payload))
            #expect(d.action == "created" && d.repository == "\(g.owner)/\(g.repo)" && d.issue == issue && !d.isPull)
            #expect(d.comment.id == c.id && d.comment.body == text && d.comment.user == GiteaUser(id: c.user.id, login: "markus"))
        }
        let pr = #"{"action":"created","is_pull":false,"repository":{"full_name":"a/b"},"issue":{"number":5,"pull_request":{"merged":false}},"comment":{"id":8,"body":"/ka-help","user":{"login":"a"}}}"#
        #expect(try WebhookIntake.readComment(Array(pr.utf8)).isPull, "a pull_request object marks a PR comment")
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
