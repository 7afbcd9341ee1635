import Foundation
import Testing
@testable import KAControlPlane
@testable import KernelAgent

/// The client against Gitea 1.26.3's own swagger, and the webhook samples against our decoder and verifier.
@Suite struct ContractTests {
    static var shared: URL {
        if let e = ProcessInfo.processInfo.environment["KA_SHARED_DIR"] { return URL(fileURLWithPath: e) }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("shared")
    }

    static func load(_ rel: String) throws -> Data {
        let url = shared.appendingPathComponent(rel)
        guard let d = FileManager.default.contents(atPath: url.path) else {
            Issue.record("MISSING \(url.path) — put shared/ beside the project or set KA_SHARED_DIR")
            throw KAError.failure("missing", url.path)
        }
        return d
    }

    @Test func everyRouteAndBodyFieldExistsInTheSwagger() throws {
        let spec = try #require(try JSONSerialization.jsonObject(with: try Self.load("gitea/swagger.v1.json")) as? [String: Any])
        let paths = try #require(spec["paths"] as? [String: [String: Any]])
        let defs = try #require(spec["definitions"] as? [String: [String: Any]])
        #expect(GiteaRoute.all.count == 18)
        for r in GiteaRoute.all {
            let ops = try #require(paths[r.path], "no path \(r.path) in the spec")
            #expect(ops[r.method.lowercased()] != nil, "\(r.method) \(r.path) not in the spec")
            if let def = r.bodyDefinition, let sample = r.sampleBody {
                let props = try #require((defs[def]?["properties"] as? [String: Any]).map { Set($0.keys) }, "no definition \(def)")
                let sent = try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(sample)) as? [String: Any])
                #expect(Set(sent.keys).isSubset(of: props), "\(r.method) \(r.path) sends \(Set(sent.keys).subtracting(props)) not in \(def)")
                // the operation really takes that definition as its body
                let op = ops[r.method.lowercased()] as? [String: Any]
                let params = op?["parameters"] as? [[String: Any]] ?? []
                let refs = params.compactMap { ($0["schema"] as? [String: Any])?["$ref"] as? String }
                #expect(refs.contains("#/definitions/\(def)"), "\(r.method) \(r.path) body is not \(def): \(refs)")
            }
        }
    }

    @Test func samplePayloadsDecodeAndTheTestVectorsVerify() throws {
        let comment = try Self.load("gitea/payloads/issue_comment.created.json")
        let issue = try Self.load("gitea/payloads/issues.opened.json")
        let v = WebhookVerifier(secrets: [Array("example-secret".utf8)])
        #expect(v.verify(signature: "27ef566e9f344c03853b462ff0dd395dc00100e1448f3dbbfe19c81aef642808", body: comment))
        #expect(v.verify(signature: "e6994dafab6372d0eed3460a972d64ab194867a618907e3ad10f1722cc279835", body: issue))
        #expect(!v.verify(signature: "e6994dafab6372d0eed3460a972d64ab194867a618907e3ad10f1722cc279835", body: comment))
        let p = try JSONDecoder().decode(IssueCommentPayload.self, from: comment)
        #expect(p.comment.body.hasPrefix("/ka-promote ohm"))
        #expect(p.comment.issueNumber == p.issue.number)
        #expect(p.repository.full_name == "marfrit/kernel-agent")
        let i = try JSONDecoder().decode(IssuePayload.self, from: issue)
        #expect(i.action == "opened")
    }

    @Test func standInWebhookPayloadsHaveGiteasShape() throws {
        func keys(_ d: Data) throws -> [String: Set<String>] {
            let o = try #require(try JSONSerialization.jsonObject(with: d) as? [String: Any])
            var out = ["": Set(o.keys)]
            for k in ["issue", "comment", "sender"] { if let sub = o[k] as? [String: Any] { out[k] = Set(sub.keys) } }
            return out
        }
        let g = GiteaStandIn()
        let n = g.createIssue(by: "markus", title: "x")
        let id = g.comment(by: "markus", on: n, body: "/ka-status", webhook: false)
        let ours = try keys(g.withLock { g.commentPayload(g.comments[id]!, action: "created") })
        let real = try keys(try Self.load("gitea/payloads/issue_comment.created.json"))
        for (k, v) in real { #expect(ours[k] == v, "issue_comment.\(k): missing \(v.subtracting(ours[k] ?? [])), extra \((ours[k] ?? []).subtracting(v))") }
        let markus = try #require(g.user("markus"))
        let oursIssue = try keys(g.withLock { g.issuePayload(g.issues[n]!, action: "opened", sender: markus) })
        let realIssue = try keys(try Self.load("gitea/payloads/issues.opened.json"))
        for (k, v) in realIssue { #expect(oursIssue[k] == v, "issues.\(k)") }
    }
}
