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
        let junkAnswer = try await h.post("/webhook", body: junk, headers: headers(GiteaStandIn.signature(junk, secret: h.secret)))
        #expect(junkAnswer.0 == 400 && junkAnswer.1.hasPrefix("malformed JSON: ") && junkAnswer.1.contains("character"), "\(junkAnswer)")
        let wrongShape = Data("{\"action\":\"created\"}".utf8)
        let shapeAnswer = try await h.post("/webhook", body: wrongShape, headers: headers(GiteaStandIn.signature(wrongShape, secret: h.secret)))
        #expect(shapeAnswer == (400, "malformed issue_comment payload: missing field `repository`\n"))
        let badIssue = Data("{\"action\":\"opened\",\"number\":\"3\"}".utf8)
        let issueAnswer = try await h.post("/webhook", body: badIssue, headers: headers(GiteaStandIn.signature(badIssue, secret: h.secret), event: "issues"))
        #expect(issueAnswer == (400, "malformed issues payload: `number`: expected an integer, found a string\n"))
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
        #expect(h.metrics.get("webhook_rejected_total") == 8)   // the 413 is answered by the server before the intake
    }

    /// Sends raw bytes on a new connection; returns what came back before the server closed it (or before
    /// `timeout`), whether it closed, and how long that took.
    /// The socket's blocking calls run on a thread of their own: the server's route needs the (2-thread) cooperative
    /// pool, and a test blocking it there starves the very server it waits for.
    static func exchange(port: Int, _ bytes: [UInt8], timeout: Int = 30) async throws -> (response: String, closed: Bool, seconds: Double) {
        try await withCheckedThrowingContinuation { cont in
            Thread { cont.resume(with: Result { try blockingExchange(port: port, bytes, timeout: timeout) }) }.start()
        }
    }

    static func blockingExchange(port: Int, _ bytes: [UInt8], timeout: Int) throws -> (response: String, closed: Bool, seconds: Double) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard ok == 0 else { throw KAError.failure("connect", "errno \(errno)") }
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let t0 = Date()
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }   // the server may close while we still send
            sent += n
        }
        var out = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buf, buf.count, 0)
            if n > 0 { out += buf[0..<n]; continue }
            // 0: closed; -1 with ECONNRESET: closed hard; EAGAIN: the timeout passed with the connection open
            return (String(decoding: out, as: UTF8.self), n == 0 || errno == ECONNRESET, Date().timeIntervalSince(t0))
        }
    }

    @Test func aHugeContentLengthIsRefusedFromItsHeadAndTheConnectionClosed() async throws {
        let h = try Harness()
        try await h.start()
        // 10 GB announced, 7 KB sent, then the client waits
        let head = "POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Gitea-Event: issue_comment\r\n"
            + "Content-Length: 10737418240\r\n\r\n"
        let r = try await Self.exchange(port: h.serverPort, Array(head.utf8) + Array(repeating: UInt8(ascii: "x"), count: 7 * 1024))
        #expect(r.response.hasPrefix("HTTP/1.1 413"), "\(r.response.prefix(200))")
        #expect(r.closed, "the connection is closed, not held for the client's 30 s wait (closed after \(r.seconds) s)")
        // a chunked body (no length) past the limit: the route's 413, then the connection is closed too
        let chunked = "POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Gitea-Event: issue_comment\r\nTransfer-Encoding: chunked\r\n\r\n"
        let chunk = Array(String((1 << 20) + 4096, radix: 16).utf8) + Array("\r\n".utf8) + Array(repeating: UInt8(ascii: "x"), count: (1 << 20) + 4096) + Array("\r\n".utf8)
        let c = try await Self.exchange(port: h.serverPort, Array(chunked.utf8) + chunk)
        #expect(c.response.hasPrefix("HTTP/1.1 413"), "\(c.response.prefix(200))")
        #expect(c.closed, "closed within the client's 30 s wait (after \(c.seconds) s)")
        // and the server still serves
        let (ok, _) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(h.serverPort)/healthz")!)
        #expect(String(decoding: ok, as: UTF8.self) == "ok\n")
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
