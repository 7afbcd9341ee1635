import Crypto
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import HTTPTypes
import Hummingbird
import NIOCore
import NIOConcurrencyHelpers

/// A Gitea 1.26.3 stand-in on loopback: the REST endpoints the bot calls, as swagger.v1.json and Gitea's
/// handlers describe them (paths, status codes, `{owner}/{repo}` checked, limit capped at 50, `since` strict
/// RFC 3339 and inclusive by updated_at, label ids on create, X-Total-Count, bodies bound and validated like
/// Gitea's `bind`: 422 for a malformed body or a missing required field), and signed webhooks with Gitea's
/// headers and payload shapes, sent once and never retried.
///
/// It fails the way a real Gitea behind a proxy does: a fault is a 500 or a dropped connection, served before
/// the handler runs or AFTER it (the write landed, the answer is lost). Faults are scheduled one by one for
/// deterministic tests, or drawn at a rate from a seeded generator for chaos; every one served is counted.
/// It can also rate-limit as a proxy in front of Gitea does (Gitea itself has no limiter): a 429 with a
/// `Retry-After` (seconds or an HTTP-date) before the handler runs, so nothing is written.
/// Every request is logged with its real path, query, status and arrival and answer times (the contract test
/// reads the log); requests in flight are counted, and a random latency can be added to each.
final class GiteaStandIn: @unchecked Sendable {
    struct User { let id: Int64; let login: String; let permission: String }
    struct Comment { let id: Int64; let issue: Int; var body: String; let user: User; let created: Date; var updated: Date }
    struct Issue { let id: Int64; let number: Int; var title: String; var body: String; var state: String; let user: User
                   var labels: [Int64]; let created: Date; var updated: Date }
    struct Label { let id: Int64; var name: String; var color: String; var description: String }

    enum FaultTiming: String { case beforeWrite = "before", afterWrite = "after" }
    enum FaultKind: String { case status500 = "500", drop }
    struct Fault: Equatable { let timing: FaultTiming; let kind: FaultKind }
    struct ServedFault { let method: String; let template: String; let fault: Fault }
    struct LoggedRequest { let method: String; let template: String; let path: String; let query: String?; let status: Int
                           let arrived: Date; let answered: Date }
    /// A 429 to serve: to the next request matching `method` and `template` (any when nil), with this Retry-After.
    struct RateLimit { let method: String?; let template: String?; let retryAfter: String? }
    /// A write as the stand-in applied it, in order: which issue, and the body it left (tests of ordering).
    struct Write { let issue: Int; let body: String }

    /// Chaos: `rate` of the API calls fail; of those, `afterShare` after the handler ran and `dropShare` by a
    /// dropped connection instead of a 500.
    struct Chaos { var rate: Double; var afterShare = 0.5; var dropShare = 0.25 }

    let owner = "marfrit", repo = "kernel-agent"
    private let lock = NSLock()
    private var nextID: Int64 = 100
    private(set) var users: [String: User] = [:]          // token → user
    var issues: [Int: Issue] = [:]
    private(set) var comments: [Int64: Comment] = [:]
    private(set) var labels: [Int64: Label] = [:]
    private(set) var reactions: [(Int64, String, String)] = []
    /// Repo webhooks as `services/convert` renders them (the secret is kept, never returned).
    struct Hook { let id: Int64; var url: String; var events: [String]; var active: Bool; var secret: String }
    private(set) var hooks: [Int64: Hook] = [:]

    /// Registers a webhook as a repo admin would in the settings page.
    @discardableResult
    func addHook(url: String, events: [String] = ["issues_only", "issue_comment", "issue_label"], active: Bool = true, secret: String) -> Int64 {
        withLock { nextID += 1; hooks[nextID] = Hook(id: nextID, url: url, events: events, active: active, secret: secret); return nextID }
    }
    private var _webhookURL: URL?
    let webhookSecret: [UInt8] = Array("test-secret".utf8)
    private var scheduled: [(method: String, template: String, path: String?, fault: Fault)] = []
    private var rateLimits: [RateLimit] = []
    private var latency: ClosedRange<Double>?
    private var inFlight = 0
    private var _maxInFlight = 0
    private var writes: [Write] = []
    private var gathering: (count: Int, until: Date)?
    private var chaos: Chaos?
    private var rng = SplitMix64(seed: 1)
    private var served: [ServedFault] = []
    private var log: [LoggedRequest] = []
    /// method + path template of every route this stand-in serves, as registered.
    private(set) var routes: [(method: String, template: String)] = []
    private(set) var port = 0
    private var task: Task<Void, Error>?
    /// The stand-in's own clock: tests move it forward so `since` cursors see distinct seconds.
    var clock: () -> Date = { Date() }

    init() {
        // the bot is a repo admin: Gitea answers the permission endpoint only to admins (or about oneself)
        addUser("claude-noether", token: "bot-token", permission: "admin")
        addUser("markus", token: "markus-token", permission: "admin")
        addUser("mallory", token: "mallory-token", permission: "read")
    }

    func withLock<T>(_ body: () throws -> T) rethrows -> T { lock.lock(); defer { lock.unlock() }; return try body() }

    func addUser(_ login: String, token: String, permission: String) {
        withLock { nextID += 1; users[token] = User(id: nextID, login: login, permission: permission) }
    }

    func user(_ login: String) -> User? { withLock { users.values.first { $0.login == login } } }

    var webhookURL: URL? {
        get { withLock { _webhookURL } }
        set { withLock { _webhookURL = newValue } }
    }

    // MARK: faults

    /// The next request to `method template` (e.g. "POST", "repos/{owner}/{repo}/issues/{index}/comments") fails so.
    /// `path`: only a request to this real path (e.g. "/api/v1/repos/marfrit/kernel-agent/issues/3/comments").
    func schedule(_ fault: Fault, method: String, template: String, path: String? = nil) {
        withLock { scheduled.append((method, template, path, fault)) }
    }

    /// Drops every scheduled fault not served yet (call under `withLock`).
    func clearScheduledFaults() { scheduled.removeAll() }

    /// The next request (to `method template`, or any) is answered 429 with this `Retry-After` (none when nil).
    func scheduleRateLimit(method: String? = nil, template: String? = nil, retryAfter: String?) {
        withLock { rateLimits.append(RateLimit(method: method, template: template, retryAfter: retryAfter)) }
    }

    /// Every request waits a random time in this range (seconds, from the seeded generator) before it is handled.
    func setLatency(_ range: ClosedRange<Double>?) { withLock { latency = range } }

    /// Requests wait (up to `timeout`) until `count` of them are in flight together, once: then every request
    /// goes through at once again. A client that allows `count` at a time is seen with that many in flight
    /// however loaded the machine, one that allows fewer is seen with fewer.
    func gather(_ count: Int, timeout: Double = 10) { withLock { gathering = (count, Date().addingTimeInterval(timeout)) } }

    /// The most API requests that were in flight at once.
    var maxInFlight: Int { withLock { _maxInFlight } }
    var writeOrder: [Write] { withLock { writes } }

    func setChaos(_ c: Chaos?, seed: UInt64? = nil) {
        withLock { chaos = c; if let seed { rng = SplitMix64(seed: seed) } }
    }

    var faultsServed: [ServedFault] { withLock { served } }
    var requestLog: [LoggedRequest] { withLock { log } }

    private func nextFault(_ method: String, _ template: String, _ path: String) -> Fault? {
        withLock {
            if let i = scheduled.firstIndex(where: { $0.method == method && $0.template == template && ($0.path ?? path) == path }) {
                return scheduled.remove(at: i).fault
            }
            guard let c = chaos, rng.unit() < c.rate else { return nil }
            return Fault(timing: rng.unit() < c.afterShare ? .afterWrite : .beforeWrite, kind: rng.unit() < c.dropShare ? .drop : .status500)
        }
    }

    struct ConnectionDropped: Error {}

    /// A response whose body never comes: Hummingbird closes the connection, the client sees a transport error.
    func dropped() -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(contentLength: 4096) { _ in throw ConnectionDropped() })
    }

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
            writes.append(Write(issue: issue, body: body))
            issues[issue]?.updated = clock()
            return (c, commentPayload(c, action: "created"))
        }
        if webhook { sendWebhook(event: "issue_comment", type: "issue_comment", payload: payload) }
        return c.id
    }

    func comments(on issue: Int) -> [Comment] { withLock { comments.values.filter { $0.issue == issue }.sorted { $0.id < $1.id } } }
    func botComments(on issue: Int) -> [Comment] { comments(on: issue).filter { $0.user.login == "claude-noether" } }
    func allBotComments() -> [Comment] { withLock { comments.values.filter { $0.user.login == "claude-noether" }.sorted { $0.id < $1.id } } }

    // MARK: JSON shapes (Go struct field names, in the structs' order)

    static func time(_ d: Date) -> String {
        let f = ISO8601DateFormatter(); f.formatOptions = [.withInternetDateTime]; return f.string(from: d)
    }

    var htmlBase: String { "http://127.0.0.1:\(port)" }

    func userJSON(_ u: User) -> [String: Any] {
        ["id": u.id, "login": u.login, "login_name": "", "source_id": 0, "full_name": "", "email": "\(u.id)+\(u.login)@noreply.example",
         "avatar_url": "", "html_url": "\(htmlBase)/\(u.login)", "language": "", "is_admin": false, "last_login": "0001-01-01T00:00:00Z",
         "created": "2026-01-01T00:00:00Z", "restricted": false, "active": true, "prohibit_login": false, "location": "", "website": "",
         "description": "", "visibility": "public", "followers_count": 0, "following_count": 0, "starred_repos_count": 0, "username": u.login]
    }

    func labelJSON(_ l: Label) -> [String: Any] {
        ["id": l.id, "name": l.name, "exclusive": false, "is_archived": false, "color": l.color, "description": l.description,
         "url": "\(htmlBase)/api/v1/repos/\(owner)/\(repo)/labels/\(l.id)"]
    }

    /// Repository as `services/convert/repository.go` fills it; `permissions` is the doer's.
    func repoJSON(for doer: User) -> [String: Any] {
        let ownerUser = User(id: 1, login: owner, permission: "owner")
        let admin = ["admin", "owner"].contains(doer.permission), push = admin || doer.permission == "write"
        let api = "\(htmlBase)/api/v1/repos/\(owner)/\(repo)"
        let open = issues.values.filter { $0.state == "open" }.count
        return ["id": 1, "owner": userJSON(ownerUser), "name": repo, "full_name": "\(owner)/\(repo)", "description": "", "empty": false,
                "private": false, "fork": false, "template": false, "mirror": false, "size": 0, "language": "", "languages_url": "\(api)/languages",
                "html_url": "\(htmlBase)/\(owner)/\(repo)", "url": api, "link": "", "ssh_url": "git@127.0.0.1:\(owner)/\(repo).git",
                "clone_url": "\(htmlBase)/\(owner)/\(repo).git", "original_url": "", "website": "", "stars_count": 0, "forks_count": 0,
                "watchers_count": 1, "branch_count": 1, "open_issues_count": open, "open_pr_counter": 0, "release_counter": 0,
                "default_branch": "main", "archived": false, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
                "archived_at": "1970-01-01T00:00:00Z", "permissions": ["admin": admin, "push": push, "pull": true], "has_code": true,
                "has_issues": true, "internal_tracker": ["enable_time_tracker": false, "allow_only_contributors_to_track_time": true,
                                                         "enable_issue_dependencies": false],
                "has_wiki": false, "has_pull_requests": true, "has_projects": false, "projects_mode": "all", "has_releases": false,
                "has_packages": false, "has_actions": false, "ignore_whitespace_conflicts": false, "allow_merge_commits": true,
                "allow_rebase": true, "allow_rebase_explicit": true, "allow_squash_merge": true, "allow_fast_forward_only_merge": true,
                "allow_rebase_update": true, "allow_manual_merge": false, "autodetect_manual_merge": false,
                "default_delete_branch_after_merge": false, "default_merge_style": "merge", "default_allow_maintainer_edit": false,
                "avatar_url": "", "internal": false, "mirror_interval": "", "object_format_name": "sha1",
                "mirror_updated": "0001-01-01T00:00:00Z", "topics": [] as [Any], "licenses": [] as [Any]]
    }

    func issueJSON(_ i: Issue) -> [String: Any] {
        ["id": i.id, "url": "\(htmlBase)/api/v1/repos/\(owner)/\(repo)/issues/\(i.number)", "html_url": "\(htmlBase)/\(owner)/\(repo)/issues/\(i.number)",
         "number": i.number, "user": userJSON(i.user), "original_author": "", "original_author_id": 0, "title": i.title, "body": i.body,
         "ref": "", "assets": [] as [Any], "labels": i.labels.compactMap { labels[$0].map(labelJSON) }, "milestone": NSNull(),
         "assignee": NSNull(), "assignees": NSNull(), "state": i.state, "is_locked": false,
         "comments": comments.values.filter { $0.issue == i.number }.count,
         "created_at": Self.time(i.created), "updated_at": Self.time(i.updated), "closed_at": i.state == "closed" ? Self.time(i.updated) : NSNull(),
         "due_date": NSNull(), "time_estimate": 0, "pull_request": NSNull(),
         "repository": ["id": 1, "name": repo, "owner": owner, "full_name": "\(owner)/\(repo)"], "pin_order": 0, "content_version": 1]
    }

    func commentJSON(_ c: Comment) -> [String: Any] {
        ["id": c.id, "html_url": "\(htmlBase)/\(owner)/\(repo)/issues/\(c.issue)#issuecomment-\(c.id)", "pull_request_url": "",
         "issue_url": "\(htmlBase)/\(owner)/\(repo)/issues/\(c.issue)", "user": userJSON(c.user), "original_author": "",
         "original_author_id": 0, "body": c.body, "assets": [] as [Any], "created_at": Self.time(c.created), "updated_at": Self.time(c.updated)]
    }

    /// Call under the lock.
    func commentPayload(_ c: Comment, action: String) -> Data {
        let obj: [String: Any] = ["action": action, "issue": issueJSON(issues[c.issue]!), "comment": commentJSON(c),
                                  "repository": repoJSON(for: c.user), "sender": userJSON(c.user), "is_pull": false]
        return (try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])) ?? Data()
    }

    /// Call under the lock. `repository.permissions` is the issue poster's, as Gitea sends it.
    func issuePayload(_ i: Issue, action: String, sender: User) -> Data {
        let obj: [String: Any] = ["action": action, "number": i.number, "issue": issueJSON(i), "repository": repoJSON(for: i.user),
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

    func json(_ obj: Any, status: HTTPResponse.Status = .ok, total: Int? = nil) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])) ?? Data()
        var headers: HTTPFields = [.contentType: "application/json"]
        if let total, let name = HTTPField.Name("X-Total-Count") { headers[name] = "\(total)" }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        json(["message": message, "url": "\(htmlBase)/api/swagger"], status: status)
    }

    /// One page of a list, and the list's total (X-Total-Count).
    func page<T>(_ items: [T], _ q: [String: String]) -> [T] {
        let page = max(1, Int(q["page"] ?? "1") ?? 1)   // Gitea: unreadable or ≤ 0 → 1
        var limit = Int(q["limit"] ?? "") ?? 30
        if limit <= 0 { limit = 30 }                    // DEFAULT_PAGING_NUM
        limit = min(limit, 50)                          // MAX_RESPONSE_ITEMS
        let start = (page - 1) * limit
        guard start < items.count else { return [] }
        return Array(items[start..<min(items.count, start + limit)])
    }

    /// A body Gitea's `bind` refuses (422), thrown out of the handler and answered by `serve`.
    struct BodyRejected: Error { let response: Response }

    /// A request body bound as Gitea's `bind` does: empty is an empty form (its Required fields then fail),
    /// anything that is not a JSON object is a 422.
    func bind(_ r: Request, required: [(json: String, field: String)] = [], strings: [String] = []) async throws -> [String: Any] {
        var req = r
        let buf = try await req.collectBody(upTo: 1 << 20)
        var form: [String: Any] = [:]
        if buf.readableBytes > 0 {
            guard let obj = try? JSONSerialization.jsonObject(with: Data(buffer: buf)) as? [String: Any] else {
                throw BodyRejected(response: error(.unprocessableContent, "[]: Deserialization: the body is not a JSON object"))
            }
            form = obj
        }
        for k in strings where form[k] != nil && !(form[k] is String) {
            throw BodyRejected(response: error(.unprocessableContent, "[]: Deserialization: json: cannot unmarshal \(k) into a string"))
        }
        for (k, field) in required where ((form[k] as? String) ?? "").isEmpty {
            throw BodyRejected(response: error(.unprocessableContent, "[\(field)]: Required"))
        }
        return form
    }

    static func strictTime(_ s: String) -> Date? {
        let f = ISO8601DateFormatter(); f.formatOptions = [.withInternetDateTime]; return f.date(from: s)
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
            for (k, v) in r.uri.queryParameters { out[String(k)] = String(v).removingPercentEncoding ?? String(v) }
            return out
        }
        // every route: logging, auth, {owner}/{repo}, query dates, faults
        func route(_ method: HTTPRequest.Method, _ template: String, _ handler: @escaping @Sendable (Request, BasicRequestContext, User) async throws -> Response) {
            routes.append((method.rawValue, template))
            api.on(RouterPath(template), method: method) { [self] request, context in
                let arrived = Date()
                let delay = withLock { () -> Double? in
                    inFlight += 1
                    _maxInFlight = max(_maxInFlight, inFlight)
                    return latency.map { $0.lowerBound + rng.unit() * ($0.upperBound - $0.lowerBound) }
                }
                defer { withLock { inFlight -= 1 } }
                while let g = withLock({ gathering }) {
                    if withLock({ inFlight >= g.count }) || Date() >= g.until { withLock { gathering = nil }; break }
                    try await Task.sleep(nanoseconds: 5_000_000)
                }
                if let delay { try await Task.sleep(nanoseconds: UInt64(delay * 1e9)) }
                let response = try await serve(method, template, request, context, handler)
                withLock { log.append(LoggedRequest(method: method.rawValue, template: template, path: request.uri.path, query: request.uri.query,
                                                    status: Int(response.status.code), arrived: arrived, answered: Date())) }
                return response
            }
        }
        @Sendable func serve(_ method: HTTPRequest.Method, _ template: String, _ request: Request, _ context: BasicRequestContext,
                   _ handler: @Sendable (Request, BasicRequestContext, User) async throws -> Response) async throws -> Response {
            // a proxy's rate limit answers before Gitea sees the request
            let limited = withLock { () -> RateLimit? in
                guard let i = rateLimits.firstIndex(where: { ($0.method ?? method.rawValue) == method.rawValue && ($0.template ?? template) == template })
                else { return nil }
                return rateLimits.remove(at: i)
            }
            if let limited {
                var response = error(.tooManyRequests, "rate limited")
                if let ra = limited.retryAfter, let name = HTTPField.Name("Retry-After") { response.headers[name] = ra }
                return response
            }
            guard let u = authed(request) else { return error(.unauthorized, "token is required") }
            if template.hasPrefix("repos/{owner}/{repo}") {
                guard context.parameters.get("owner")?.lowercased() == owner, context.parameters.get("repo")?.lowercased() == repo else {
                    return error(.notFound, "not found")   // Gitea: GetRepositoryByName → 404
                }
            }
            for k in ["since", "before"] {
                if let v = query(request)[k], Self.strictTime(v) == nil {
                    return error(.unprocessableContent, "invalid \(k): parsing time \"\(v)\" as RFC 3339")
                }
            }
            let fault = nextFault(method.rawValue, template, request.uri.path)
            func serveFault(_ f: Fault) -> Response {
                withLock { served.append(ServedFault(method: method.rawValue, template: template, fault: f)) }
                return f.kind == .drop ? dropped() : error(.internalServerError, "chaos")
            }
            if let fault, fault.timing == .beforeWrite { return serveFault(fault) }
            let response: Response
            do { response = try await handler(request, context, u) } catch let rejected as BodyRejected { response = rejected.response }
            if let fault, fault.timing == .afterWrite { return serveFault(fault) }
            return response
        }
        let repoPath = "repos/{owner}/{repo}"
        route(.get, "user") { [self] _, _, u in json(userJSON(u)) }
        route(.get, "\(repoPath)/issues/comments") { [self] r, _, _ in
            let q = query(r)
            let since = q["since"].flatMap(Self.strictTime), before = q["before"].flatMap(Self.strictTime)
            return withLock {
                let list = comments.values.filter { c in (since.map { c.updated >= $0 } ?? true) && (before.map { c.updated <= $0 } ?? true) }
                    .sorted { ($0.created, $0.id) < ($1.created, $1.id) }
                return json(page(list, q).map(commentJSON), total: list.count)
            }
        }
        route(.get, "\(repoPath)/issues") { [self] r, _, _ in
            let q = query(r)
            let since = q["since"].flatMap(Self.strictTime), before = q["before"].flatMap(Self.strictTime)
            let state = q["state"] ?? "open"
            return withLock {
                // no pull requests here: type=pulls lists nothing; any other state than closed/all means open
                let list = q["type"] == "pulls" ? [] : issues.values.filter { i in
                    (state == "all" || i.state == (state == "closed" ? "closed" : "open"))
                        && (since.map { i.updated >= $0 } ?? true) && (before.map { i.updated <= $0 } ?? true)
                }.sorted { $0.created > $1.created || ($0.created == $1.created && $0.id > $1.id) }
                return json(page(list, q).map(issueJSON), total: list.count)
            }
        }
        route(.get, "repos/issues/search") { [self] r, _, _ in
            let q = query(r)
            return withLock {
                let list = issues.values.filter { $0.title.contains(q["q"] ?? "") }.sorted { $0.id > $1.id }
                return json(page(list, q).map(issueJSON), total: list.count)
            }
        }
        route(.get, "\(repoPath)/issues/{index}") { [self] _, ctx, _ in
            withLock { issues[Int(ctx.parameters.get("index") ?? "") ?? -1].map { json(issueJSON($0)) } ?? error(.notFound, "not found") }
        }
        route(.post, "\(repoPath)/issues") { [self] r, _, u in
            let b = try await bind(r, required: [("title", "Title")], strings: ["title", "body"])
            let (i, payload) = withLock { () -> (Issue, Data) in
                nextID += 1
                let n = (issues.keys.max() ?? 0) + 1
                // labels are dropped unless the caller may write issues (Gitea: silently)
                let ids = u.permission == "read" ? [] : ((b["labels"] as? [Any]) ?? []).compactMap { ($0 as? NSNumber)?.int64Value }.filter { labels[$0] != nil }
                let i = Issue(id: nextID, number: n, title: b["title"] as? String ?? "", body: b["body"] as? String ?? "", state: "open", user: u,
                              labels: ids, created: clock(), updated: clock())
                issues[n] = i
                return (i, issuePayload(i, action: "opened", sender: u))
            }
            sendWebhook(event: "issues", type: "issues", payload: payload)
            return withLock { json(issueJSON(i), status: .created) }
        }
        route(.patch, "\(repoPath)/issues/{index}") { [self] r, ctx, u in
            let b = try await bind(r, strings: ["title", "body", "state"])
            let n = Int(ctx.parameters.get("index") ?? "") ?? -1
            return withLock {
                guard var i = issues[n] else { return error(.notFound, "not found") }
                guard i.user.login == u.login || u.permission != "read" else { return error(.forbidden, "forbidden") }
                if let t = b["title"] as? String { i.title = t }
                if let bd = b["body"] as? String { i.body = bd }
                if let s = b["state"] as? String { i.state = s }
                i.updated = clock()
                issues[n] = i
                return json(issueJSON(i), status: .created)   // Gitea answers 201 to an edit
            }
        }
        route(.get, "\(repoPath)/issues/{index}/comments") { [self] r, ctx, _ in
            let q = query(r)
            let since = q["since"].flatMap(Self.strictTime), before = q["before"].flatMap(Self.strictTime)
            let n = Int(ctx.parameters.get("index") ?? "") ?? -1
            return withLock {
                guard issues[n] != nil else { return error(.notFound, "not found") }
                return json(comments.values.filter { c in c.issue == n && (since.map { c.updated >= $0 } ?? true) && (before.map { c.updated <= $0 } ?? true) }
                    .sorted { $0.id < $1.id }.map(commentJSON))   // not paged
            }
        }
        route(.post, "\(repoPath)/issues/{index}/comments") { [self] r, ctx, u in
            let b = try await bind(r, required: [("body", "Body")], strings: ["body"])
            let text = b["body"] as? String ?? ""
            let n = Int(ctx.parameters.get("index") ?? "") ?? -1
            guard withLock({ issues[n] != nil }) else { return error(.notFound, "not found") }
            let id = comment(by: u.login, on: n, body: text)
            return withLock { json(commentJSON(comments[id]!), status: .created) }
        }
        route(.patch, "\(repoPath)/issues/comments/{id}") { [self] r, ctx, u in
            let b = try await bind(r, required: [("body", "Body")], strings: ["body"])
            let id = Int64(ctx.parameters.get("id") ?? "") ?? -1
            return withLock {
                guard var c = comments[id] else { return error(.notFound, "not found") }
                guard c.user.login == u.login || u.permission != "read" else { return error(.forbidden, "forbidden") }
                if let text = b["body"] as? String, text != c.body { c.body = text; c.updated = clock(); writes.append(Write(issue: c.issue, body: text)) }
                comments[id] = c
                return json(commentJSON(c))
            }
        }
        route(.post, "\(repoPath)/issues/comments/{id}/reactions") { [self] r, ctx, u in
            let b = try await bind(r, strings: ["content"])
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
        route(.get, "\(repoPath)/labels") { [self] r, _, _ in
            withLock {
                let list = labels.values.sorted { $0.id < $1.id }
                return json(page(list, query(r)).map(labelJSON), total: list.count)
            }
        }
        route(.post, "\(repoPath)/labels") { [self] r, _, _ in
            let b = try await bind(r, required: [("name", "Name"), ("color", "Color")], strings: ["name", "color", "description"])
            let name = b["name"] as? String ?? ""
            var color = b["color"] as? String ?? ""
            color = color.replacingOccurrences(of: "#", with: "")
            guard color.count == 6 || color.count == 3, color.allSatisfy(\.isHexDigit) else { return error(.unprocessableContent, "bad color") }
            return withLock {
                nextID += 1
                let l = Label(id: nextID, name: name, color: color, description: b["description"] as? String ?? "")
                labels[l.id] = l   // Gitea does not check for duplicate names
                return json(labelJSON(l), status: .created)
            }
        }
        route(.patch, "\(repoPath)/labels/{id}") { [self] r, ctx, _ in
            let b = try await bind(r, strings: ["name", "color", "description"])
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
            route(method, "\(repoPath)/issues/{index}/labels") { [self] r, ctx, u in
                let b = try await bind(r)
                let n = Int(ctx.parameters.get("index") ?? "") ?? -1
                let raw = b["labels"] as? [Any] ?? []
                let names = raw.compactMap { $0 as? String }
                guard names.count == raw.count || names.isEmpty else { return error(.badRequest, "labels must be all ids or all names") }
                return withLock {
                    guard var i = issues[n] else { return error(.notFound, "not found") }
                    guard u.permission != "read" else { return error(.forbidden, "forbidden") }
                    let ids = names.compactMap { name in labels.values.first { $0.name == name }?.id }   // unknown names: silently ignored
                    i.labels = method == .put ? ids : Array(Set(i.labels + ids)).sorted()
                    issues[n] = i
                    return json(i.labels.compactMap { labels[$0].map(labelJSON) })
                }
            }
        }
        route(.delete, "\(repoPath)/issues/{index}/labels/{id}") { [self] _, ctx, u in
            let n = Int(ctx.parameters.get("index") ?? "") ?? -1
            let id = Int64(ctx.parameters.get("id") ?? "") ?? -1
            return withLock {
                guard issues[n] != nil else { return error(.notFound, "not found") }
                guard u.permission != "read" else { return error(.forbidden, "forbidden") }
                guard labels[id] != nil else { return error(.unprocessableContent, "label does not exist") }
                issues[n]?.labels.removeAll { $0 == id }
                return Response(status: .noContent)
            }
        }
        route(.get, "\(repoPath)/hooks") { [self] r, _, u in
            withLock {
                // hook settings are a repo admin's (Gitea: reqAdmin on /hooks)
                guard ["admin", "owner"].contains(u.permission) else { return error(.forbidden, "forbidden") }
                let list = hooks.values.sorted { $0.id < $1.id }
                return json(page(list, query(r)).map { h -> [String: Any] in
                    ["id": h.id, "type": "gitea", "branch_filter": "", "authorization_header": "", "active": h.active, "events": h.events,
                     "config": ["url": h.url, "content_type": "json", "http_method": "post"],
                     "created_at": Self.time(clock()), "updated_at": Self.time(clock())]
                }, total: list.count)
            }
        }
        route(.get, "\(repoPath)/collaborators/{collaborator}/permission") { [self] _, ctx, u in
            let login = ctx.parameters.get("collaborator") ?? ""
            return withLock {
                // Gitea answers only a repo admin (or the user asking about themself)
                guard ["admin", "owner"].contains(u.permission) || u.login == login else { return error(.forbidden, "forbidden") }
                guard let p = users.values.first(where: { $0.login == login }) else { return error(.notFound, "user does not exist") }
                return json(["permission": p.permission, "role_name": p.permission, "user": userJSON(p)])
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

final class PortBox: Sendable {
    private let port = NIOLockedValueBox(0)
    func set(_ p: Int) { port.withLockedValue { $0 = p } }
    func get() -> Int { port.withLockedValue { $0 } }
}

/// A small seeded generator, so a chaos run can be repeated from its logged seed.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
