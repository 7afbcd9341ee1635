import Crypto
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import HTTPTypes
import Hummingbird
import NIOCore

/// A Gitea 1.26.3 stand-in on loopback: the REST endpoints the bot calls, as swagger.v1.json describes them
/// (paths, status codes, limit capped at 50, since inclusive by updated_at, label ids on create), and signed
/// webhooks with Gitea's headers and payload field names, sent once and never retried.
final class GiteaStandIn: @unchecked Sendable {
    struct User { let id: Int64; let login: String; let permission: String }
    struct Comment { let id: Int64; let issue: Int; var body: String; let user: User; let created: Date; var updated: Date }
    struct Issue { let id: Int64; let number: Int; var title: String; var body: String; var state: String; let user: User
                   var labels: [Int64]; let created: Date; var updated: Date }
    struct Label { let id: Int64; var name: String; var color: String; var description: String }

    let owner = "marfrit", repo = "kernel-agent"
    private let lock = NSLock()
    private var nextID: Int64 = 100
    private(set) var users: [String: User] = [:]          // token → user
    var issues: [Int: Issue] = [:]
    private(set) var comments: [Int64: Comment] = [:]
    private(set) var labels: [Int64: Label] = [:]
    private(set) var reactions: [(Int64, String, String)] = []
    var webhookURL: URL?
    var webhookSecret: [UInt8] = Array("test-secret".utf8)
    /// Share of API calls answered 500 (chaos); 0 by default.
    var failureRate = 0.0
    private(set) var requests: [String] = []
    private(set) var port = 0
    private var task: Task<Void, Error>?
    /// The stand-in's own clock: tests move it forward so `since` cursors see distinct seconds.
    var clock: () -> Date = { Date() }

    init() {
        addUser("claude-noether", token: "bot-token", permission: "write")
        addUser("markus", token: "markus-token", permission: "admin")
        addUser("mallory", token: "mallory-token", permission: "read")
    }

    func withLock<T>(_ body: () throws -> T) rethrows -> T { lock.lock(); defer { lock.unlock() }; return try body() }

    func addUser(_ login: String, token: String, permission: String) {
        withLock { nextID += 1; users[token] = User(id: nextID, login: login, permission: permission) }
    }

    func user(_ login: String) -> User? { withLock { users.values.first { $0.login == login } } }

    // MARK: acting as people (these fire webhooks like Gitea does)

    @discardableResult
    func createIssue(by login: String, title: String, body: String = "", labelNames: [String] = []) -> Int {
        let (issue, payload) = withLock { () -> (Issue, Data) in
            nextID += 1
            let n = (issues.keys.max() ?? 0) + 1
            let u = users.values.first { $0.login == login }!
            let ids = labelNames.compactMap { name in labels.values.first { $0.name == name }?.id }
            let i = Issue(id: nextID, number: n, title: title, body: body, state: "open", user: u, labels: ids, created: clock(), updated: clock())
            issues[n] = i
            return (i, issuePayload(i, action: "opened", sender: u))
        }
        sendWebhook(event: "issues", type: "issues", payload: payload)
        return issue.number
    }

    @discardableResult
    func comment(by login: String, on issue: Int, body: String, webhook: Bool = true) -> Int64 {
        let (c, payload) = withLock { () -> (Comment, Data) in
            nextID += 1
            let u = users.values.first { $0.login == login }!
            let c = Comment(id: nextID, issue: issue, body: body, user: u, created: clock(), updated: clock())
            comments[c.id] = c
            issues[issue]?.updated = clock()
            return (c, commentPayload(c, action: "created"))
        }
        if webhook { sendWebhook(event: "issue_comment", type: "issue_comment", payload: payload) }
        return c.id
    }

    func comments(on issue: Int) -> [Comment] { withLock { comments.values.filter { $0.issue == issue }.sorted { $0.id < $1.id } } }
    func botComments(on issue: Int) -> [Comment] { comments(on: issue).filter { $0.user.login == "claude-noether" } }

    // MARK: JSON shapes (Go struct field names)

    static func time(_ d: Date) -> String {
        let f = ISO8601DateFormatter(); f.formatOptions = [.withInternetDateTime]; return f.string(from: d)
    }

    func userJSON(_ u: User) -> [String: Any] {
        ["id": u.id, "login": u.login, "login_name": "", "source_id": 0, "full_name": "", "email": "\(u.id)+\(u.login)@noreply.example",
         "avatar_url": "", "html_url": "http://127.0.0.1/\(u.login)", "language": "", "is_admin": false, "last_login": "0001-01-01T00:00:00Z",
         "created": "2026-01-01T00:00:00Z", "restricted": false, "active": true, "prohibit_login": false, "location": "", "website": "",
         "description": "", "visibility": "public", "followers_count": 0, "following_count": 0, "starred_repos_count": 0, "username": u.login]
    }

    func labelJSON(_ l: Label) -> [String: Any] {
        ["id": l.id, "name": l.name, "exclusive": false, "is_archived": false, "color": l.color, "description": l.description, "url": ""]
    }

    var repoJSON: [String: Any] { ["id": 1, "name": repo, "full_name": "\(owner)/\(repo)", "owner": ["id": 1, "login": owner]] }

    func issueJSON(_ i: Issue) -> [String: Any] {
        ["id": i.id, "url": "", "html_url": "http://127.0.0.1/\(owner)/\(repo)/issues/\(i.number)", "number": i.number, "user": userJSON(i.user),
         "original_author": "", "original_author_id": 0, "title": i.title, "body": i.body, "ref": "", "assets": [] as [Any],
         "labels": i.labels.compactMap { labels[$0].map(labelJSON) }, "milestone": NSNull(), "assignee": NSNull(), "assignees": NSNull(),
         "state": i.state, "is_locked": false, "comments": comments.values.filter { $0.issue == i.number }.count,
         "created_at": Self.time(i.created), "updated_at": Self.time(i.updated), "closed_at": NSNull(), "due_date": NSNull(),
         "time_estimate": 0, "pull_request": NSNull(), "repository": ["id": 1, "name": repo, "owner": owner, "full_name": "\(owner)/\(repo)"],
         "pin_order": 0, "content_version": 1]
    }

    func commentJSON(_ c: Comment) -> [String: Any] {
        ["id": c.id, "html_url": "http://127.0.0.1/\(owner)/\(repo)/issues/\(c.issue)#issuecomment-\(c.id)", "pull_request_url": "",
         "issue_url": "http://127.0.0.1/\(owner)/\(repo)/issues/\(c.issue)", "user": userJSON(c.user), "original_author": "",
         "original_author_id": 0, "body": c.body, "assets": [] as [Any], "created_at": Self.time(c.created), "updated_at": Self.time(c.updated)]
    }

    func commentPayload(_ c: Comment, action: String) -> Data {
        let obj: [String: Any] = ["action": action, "issue": issueJSON(issues[c.issue]!), "comment": commentJSON(c),
                                  "repository": repoJSON, "sender": userJSON(c.user), "is_pull": false]
        return (try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])) ?? Data()
    }

    func issuePayload(_ i: Issue, action: String, sender: User) -> Data {
        let obj: [String: Any] = ["action": action, "number": i.number, "issue": issueJSON(i), "repository": repoJSON,
                                  "sender": userJSON(sender), "commit_id": ""]
        return (try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])) ?? Data()
    }

    // MARK: webhooks (sent once, never retried)

    static func signature(_ body: Data, secret: [UInt8]) -> String {
        HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: secret)).map { String(format: "%02x", $0) }.joined()
    }

    func webhookRequest(event: String, type: String, payload: Data, delivery: String = UUID().uuidString) -> URLRequest? {
        guard let url = webhookURL else { return nil }
        var req = URLRequest(url: url)
        req.httpMethod = "POST"
        req.httpBody = payload
        let sig = Self.signature(payload, secret: webhookSecret)
        for (k, v) in ["Content-Type": "application/json", "X-Gitea-Delivery": delivery, "X-Gogs-Delivery": delivery,
                       "X-GitHub-Delivery": delivery, "X-Gitea-Event": event, "X-Gogs-Event": event, "X-GitHub-Event": event,
                       "X-Gitea-Event-Type": type, "X-Gitea-Signature": sig, "X-Gogs-Signature": sig,
                       "X-Hub-Signature-256": "sha256=" + sig, "X-Gitea-Hook-Installation-Target-Type": "repository"] {
            req.setValue(v, forHTTPHeaderField: k)
        }
        req.timeoutInterval = 5   // Gitea's DELIVER_TIMEOUT
        return req
    }

    func sendWebhook(event: String, type: String, payload: Data) {
        guard let req = webhookRequest(event: event, type: type, payload: payload) else { return }
        URLSession.shared.dataTask(with: req) { _, _, _ in }.resume()   // once; a failure is only "recorded"
    }

    // MARK: the API

    func json(_ obj: Any, status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])) ?? Data()
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        json(["message": message, "url": "http://127.0.0.1/api/swagger"], status: status)
    }

    func page<T>(_ items: [T], _ q: [String: String]) -> [T] {
        let page = max(1, Int(q["page"] ?? "1") ?? 1)
        var limit = Int(q["limit"] ?? "") ?? 30
        if limit <= 0 { limit = 30 }
        limit = min(limit, 50)   // MAX_RESPONSE_ITEMS
        let start = (page - 1) * limit
        guard start < items.count else { return [] }
        return Array(items[start..<min(items.count, start + limit)])
    }

    func start() async throws {
        let router = Router()
        let api = router.group("api/v1")
        @Sendable func authed(_ request: Request) -> User? {
            guard let h = request.headers[.authorization] else { return nil }
            let parts = h.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, ["token", "bearer"].contains(parts[0].lowercased()) else { return nil }
            return withLock { users[String(parts[1])] }
        }
        @Sendable func query(_ r: Request) -> [String: String] {
            var out: [String: String] = [:]
            for (k, v) in r.uri.queryParameters { out[String(k)] = String(v) }
            return out
        }
        @Sendable func body(_ r: Request) async throws -> [String: Any] {
            var req = r
            let buf = try await req.collectBody(upTo: 1 << 20)
            return (try? JSONSerialization.jsonObject(with: Data(buffer: buf))) as? [String: Any] ?? [:]
        }
        // every route: auth, chaos, counting
        func route(_ method: HTTPRequest.Method, _ path: String, _ handler: @escaping @Sendable (Request, BasicRequestContext, User) async throws -> Response) {
            api.on(RouterPath(path), method: method) { [self] request, context in
                withLock { requests.append("\(method) \(path)") }
                guard let u = authed(request) else { return error(.unauthorized, "token is required") }
                if failureRate > 0, Double.random(in: 0..<1) < failureRate { return error(.internalServerError, "chaos") }
                return try await handler(request, context, u)
            }
        }
        let repoPath = "repos/{owner}/{repo}"
        route(.get, "user") { [self] _, _, u in json(userJSON(u)) }
        route(.get, "\(repoPath)/issues/comments") { [self] r, _, _ in
            let q = query(r)
            let since = q["since"].flatMap { ISO8601DateFormatter().date(from: $0) }
            return withLock {
                let list = comments.values.filter { c in since.map { c.updated >= $0 } ?? true }.sorted { ($0.created, $0.id) < ($1.created, $1.id) }
                return json(page(list, q).map(commentJSON))
            }
        }
        route(.get, "\(repoPath)/issues") { [self] r, _, _ in
            let q = query(r)
            let since = q["since"].flatMap { ISO8601DateFormatter().date(from: $0) }
            let state = q["state"] ?? "open"
            return withLock {
                let list = issues.values.filter { i in (state == "all" || i.state == state) && (since.map { i.updated >= $0 } ?? true) }
                    .sorted { $0.created > $1.created || ($0.created == $1.created && $0.id > $1.id) }
                return json(page(list, q).map(issueJSON))
            }
        }
        route(.get, "repos/issues/search") { [self] r, _, _ in
            let q = query(r)
            return withLock { json(page(issues.values.filter { $0.title.contains(q["q"] ?? "") }.sorted { $0.id > $1.id }, q).map(issueJSON)) }
        }
        route(.get, "\(repoPath)/issues/{index}") { [self] _, ctx, _ in
            withLock { issues[Int(ctx.parameters.get("index") ?? "") ?? -1].map { json(issueJSON($0)) } ?? error(.notFound, "not found") }
        }
        route(.post, "\(repoPath)/issues") { [self] r, _, u in
            let b = try await body(r)
            guard let title = b["title"] as? String, !title.isEmpty else { return error(.unprocessableContent, "title is required") }
            let (i, payload) = withLock { () -> (Issue, Data) in
                nextID += 1
                let n = (issues.keys.max() ?? 0) + 1
                let ids = ((b["labels"] as? [Any]) ?? []).compactMap { ($0 as? NSNumber)?.int64Value }.filter { labels[$0] != nil }
                let i = Issue(id: nextID, number: n, title: title, body: b["body"] as? String ?? "", state: "open", user: u, labels: ids,
                              created: clock(), updated: clock())
                issues[n] = i
                return (i, issuePayload(i, action: "opened", sender: u))
            }
            sendWebhook(event: "issues", type: "issues", payload: payload)
            return withLock { json(issueJSON(i), status: .created) }
        }
        route(.patch, "\(repoPath)/issues/{index}") { [self] r, ctx, _ in
            let b = try await body(r)
            let n = Int(ctx.parameters.get("index") ?? "") ?? -1
            return withLock {
                guard var i = issues[n] else { return error(.notFound, "not found") }
                if let t = b["title"] as? String { i.title = t }
                if let bd = b["body"] as? String { i.body = bd }
                if let s = b["state"] as? String { i.state = s }
                i.updated = clock()
                issues[n] = i
                return json(issueJSON(i), status: .created)   // Gitea answers 201 to an edit
            }
        }
        route(.get, "\(repoPath)/issues/{index}/comments") { [self] _, ctx, _ in
            let n = Int(ctx.parameters.get("index") ?? "") ?? -1
            return withLock { json(comments.values.filter { $0.issue == n }.sorted { $0.id < $1.id }.map(commentJSON)) }
        }
        route(.post, "\(repoPath)/issues/{index}/comments") { [self] r, ctx, u in
            let b = try await body(r)
            let n = Int(ctx.parameters.get("index") ?? "") ?? -1
            guard let text = b["body"] as? String else { return error(.unprocessableContent, "body is required") }
            guard withLock({ issues[n] != nil }) else { return error(.notFound, "not found") }
            let id = comment(by: u.login, on: n, body: text)
            return withLock { json(commentJSON(comments[id]!), status: .created) }
        }
        route(.patch, "\(repoPath)/issues/comments/{id}") { [self] r, ctx, u in
            let b = try await body(r)
            let id = Int64(ctx.parameters.get("id") ?? "") ?? -1
            return withLock {
                guard var c = comments[id] else { return error(.notFound, "not found") }
                guard c.user.login == u.login || u.permission != "read" else { return error(.forbidden, "forbidden") }
                if let text = b["body"] as? String, text != c.body { c.body = text; c.updated = clock() }
                comments[id] = c
                return json(commentJSON(c))
            }
        }
        route(.post, "\(repoPath)/issues/comments/{id}/reactions") { [self] r, ctx, u in
            let b = try await body(r)
            let id = Int64(ctx.parameters.get("id") ?? "") ?? -1
            let content = b["content"] as? String ?? ""
            return withLock {
                guard comments[id] != nil else { return error(.notFound, "not found") }
                guard ["+1", "-1", "laugh", "hooray", "confused", "heart", "rocket", "eyes"].contains(content) else { return error(.forbidden, "not allowed") }
                let existed = reactions.contains { $0.0 == id && $0.1 == content && $0.2 == u.login }
                if !existed { reactions.append((id, content, u.login)) }
                return json(["content": content, "user": userJSON(u), "created_at": Self.time(clock())], status: existed ? .ok : .created)
            }
        }
        route(.get, "\(repoPath)/labels") { [self] r, _, _ in withLock { json(page(labels.values.sorted { $0.id < $1.id }, query(r)).map(labelJSON)) } }
        route(.post, "\(repoPath)/labels") { [self] r, _, _ in
            let b = try await body(r)
            guard let name = b["name"] as? String, var color = b["color"] as? String else { return error(.unprocessableContent, "name and color required") }
            color = color.replacingOccurrences(of: "#", with: "")
            guard color.count == 6 || color.count == 3 else { return error(.unprocessableContent, "bad color") }
            return withLock {
                nextID += 1
                let l = Label(id: nextID, name: name, color: color, description: b["description"] as? String ?? "")
                labels[l.id] = l   // Gitea does not check for duplicate names
                return json(labelJSON(l), status: .created)
            }
        }
        route(.patch, "\(repoPath)/labels/{id}") { [self] r, ctx, _ in
            let b = try await body(r)
            let id = Int64(ctx.parameters.get("id") ?? "") ?? -1
            return withLock {
                guard var l = labels[id] else { return error(.notFound, "not found") }
                if let n = b["name"] as? String { l.name = n }
                if let c = b["color"] as? String { l.color = c.replacingOccurrences(of: "#", with: "") }
                if let d = b["description"] as? String { l.description = d }
                labels[id] = l
                return json(labelJSON(l))
            }
        }
        for method in [HTTPRequest.Method.post, .put] {
            route(method, "\(repoPath)/issues/{index}/labels") { [self] r, ctx, _ in
                let b = try await body(r)
                let n = Int(ctx.parameters.get("index") ?? "") ?? -1
                let names = (b["labels"] as? [Any] ?? []).compactMap { $0 as? String }
                return withLock {
                    guard var i = issues[n] else { return error(.notFound, "not found") }
                    let ids = names.compactMap { name in labels.values.first { $0.name == name }?.id }   // unknown names: silently ignored
                    i.labels = method == .put ? ids : Array(Set(i.labels + ids)).sorted()
                    issues[n] = i
                    return json(i.labels.compactMap { labels[$0].map(labelJSON) })
                }
            }
        }
        route(.delete, "\(repoPath)/issues/{index}/labels/{id}") { [self] _, ctx, _ in
            let n = Int(ctx.parameters.get("index") ?? "") ?? -1
            let id = Int64(ctx.parameters.get("id") ?? "") ?? -1
            return withLock {
                guard labels[id] != nil else { return error(.unprocessableContent, "label does not exist") }
                issues[n]?.labels.removeAll { $0 == id }
                return Response(status: .noContent)
            }
        }
        route(.get, "\(repoPath)/collaborators/{collaborator}/permission") { [self] _, ctx, _ in
            let login = ctx.parameters.get("collaborator") ?? ""
            return withLock {
                guard let u = users.values.first(where: { $0.login == login }) else { return error(.notFound, "user does not exist") }
                return json(["permission": u.permission, "role_name": u.permission, "user": userJSON(u)])
            }
        }
        let portBox = PortBox()
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { channel in portBox.set(channel.localAddress?.port ?? 0) })
        task = Task { try await app.run() }
        for _ in 0..<500 where portBox.get() == 0 { try await Task.sleep(nanoseconds: 10_000_000) }
        port = portBox.get()
    }

    /// The server stays up until the test process ends: cancelling a Hummingbird app with keep-alive
    /// connections open trips NIO's "NIOAsyncWriter deinited without finish()" precondition.
    func stop() { webhookURL = nil }

    var baseURL: URL { URL(string: "http://127.0.0.1:\(port)/")! }
}

final class PortBox: @unchecked Sendable {
    private let lock = NSLock(); private var port = 0
    func set(_ p: Int) { lock.lock(); port = p; lock.unlock() }
    func get() -> Int { lock.lock(); defer { lock.unlock() }; return port }
}
