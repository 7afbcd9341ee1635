import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing
@testable import KAControlPlane
@testable import KernelAgent

@Suite(.serialized) struct WebhookTests {
    @Test func badDeliveriesAreRejectedAndRunNothing() async throws {
        let h = try Harness()
        try await h.start()
        let g = h.gitea
        let issue = g.createIssue(by: "markus", title: "x")
        let cid = g.comment(by: "markus", on: issue, body: "/ka-help", webhook: false)
        let payload = g.withLock { g.commentPayload(g.comments[cid]!, action: "created") }
        let sig = GiteaStandIn.signature(payload, secret: h.secret)
        func headers(_ sig: String?, delivery: String = UUID().uuidString, event: String = "issue_comment") -> [String: String] {
            var hd = ["Content-Type": "application/json", "X-Gitea-Event": event, "X-Gitea-Delivery": delivery]
            if let sig { hd["X-Gitea-Signature"] = sig }
            return hd
        }
        // unsigned, forged, wrong secret, not hex
        #expect(try await h.post("/webhook", body: payload, headers: headers(nil)).0 == 401)
        #expect(try await h.post("/webhook", body: payload, headers: headers(String(repeating: "0", count: 64))).0 == 401)
        #expect(try await h.post("/webhook", body: payload, headers: headers(GiteaStandIn.signature(payload, secret: Array("other".utf8)))).0 == 401)
        #expect(try await h.post("/webhook", body: payload, headers: headers(String(repeating: "z", count: 64))).0 == 401)
        // a valid signature over different bytes
        var tampered = payload; tampered[tampered.count - 2] ^= 0x01
        #expect(try await h.post("/webhook", body: tampered, headers: headers(sig)).0 == 401)
        // oversized (> 1 MiB) and malformed
        let big = Data(repeating: 0x20, count: (1 << 20) + 1)
        #expect(try await h.post("/webhook", body: big, headers: headers(GiteaStandIn.signature(big, secret: h.secret))).0 == 413)
        let junk = Data("{not json".utf8)
        #expect(try await h.post("/webhook", body: junk, headers: headers(GiteaStandIn.signature(junk, secret: h.secret))).0 == 400)
        let wrongShape = Data("{\"action\":\"created\"}".utf8)
        #expect(try await h.post("/webhook", body: wrongShape, headers: headers(GiteaStandIn.signature(wrongShape, secret: h.secret))).0 == 400)
        #expect(try h.ledger.unprocessedEvents().isEmpty, "nothing may be stored from a rejected delivery")
        // another repository: ignored
        let other = Data(String(decoding: payload, as: UTF8.self).replacingOccurrences(of: "\"full_name\":\"marfrit\\/kernel-agent\"", with: "\"full_name\":\"evil\\/repo\"").utf8)
        #expect(try await h.post("/webhook", body: other, headers: headers(GiteaStandIn.signature(other, secret: h.secret))).0 == 202)
        #expect(try h.ledger.unprocessedEvents().isEmpty)
        // the real one, then a replay of the same delivery, then a redelivery (new id, same comment)
        let delivery = UUID().uuidString
        #expect(try await h.post("/webhook", body: payload, headers: headers(sig, delivery: delivery)).0 == 200)
        let replay = try await h.post("/webhook", body: payload, headers: headers(sig, delivery: delivery))
        #expect(replay.1 == "duplicate delivery\n")
        #expect(try await h.post("/webhook", body: payload, headers: headers(sig)).0 == 200)
        #expect(try h.ledger.unprocessedEvents().count == 1)
        #expect(await h.settle { g.botComments(on: issue).count == 1 })
        await h.settleAll()
        #expect(g.botComments(on: issue).count == 1, "answered exactly once")
        #expect(h.metrics.get("webhook_rejected_total") == 7)   // the 413 is answered by the server before the intake
    }

    @Test func rotationAcceptsTheOldSecretToo() {
        let v = WebhookVerifier(secrets: [Array("new".utf8), Array("old".utf8)])
        let body = Data("{}".utf8)
        #expect(v.verify(signature: WebhookVerifier.sign(body, secret: Array("old".utf8)), body: body))
        #expect(v.verify(signature: WebhookVerifier.sign(body, secret: Array("new".utf8)), body: body))
        #expect(!v.verify(signature: WebhookVerifier.sign(body, secret: Array("older".utf8)), body: body))
    }

    @Test func healthAndMetrics() async throws {
        let h = try Harness()
        try await h.start()
        var req = URLRequest(url: URL(string: "http://127.0.0.1:\(h.serverPort)/metrics")!)
        req.httpMethod = "GET"
        let (data, _) = try await URLSession.shared.data(for: req)
        #expect(String(decoding: data, as: UTF8.self).contains("# TYPE ka_outbox_pending gauge\nka_outbox_pending 0\n"))
        let (ok, _) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(h.serverPort)/healthz")!)
        #expect(String(decoding: ok, as: UTF8.self) == "ok\n")
    }
}
