import AsyncHTTPClient
import Foundation
import KernelAgent
import NIOCore
import NIOHTTP1
import NIOConcurrencyHelpers

/// Every call the bot makes to Gitea. `DefaultGiteaClient` talks HTTP; tests use the same client against a
/// Gitea stand-in, and the contract test checks every `GiteaRoute` against Gitea's own swagger.
package protocol GiteaAPI: Sendable {
    func currentUser() async throws -> GiteaUser
    func listRepoComments(since: Date?) async throws -> [GiteaComment]
    func listIssues(state: String, since: Date?) async throws -> [GiteaIssue]
    func searchIssues(query: String, state: String) async throws -> [GiteaIssue]
    func getIssue(_ number: Int) async throws -> GiteaIssue
    func createIssue(title: String, body: String, labelIDs: [Int64]) async throws -> GiteaIssue
    func editIssue(_ number: Int, title: String?, body: String?, state: String?) async throws -> GiteaIssue
    func listIssueComments(_ number: Int) async throws -> [GiteaComment]
    func createComment(issue: Int, body: String) async throws -> GiteaComment
    func editComment(id: Int64, body: String) async throws -> GiteaComment
    func addReaction(commentID: Int64, content: String) async throws
    func listLabels() async throws -> [GiteaLabel]
    func createLabel(name: String, color: String, description: String) async throws -> GiteaLabel
    func editLabel(id: Int64, name: String?, color: String?, description: String?) async throws -> GiteaLabel
    func addLabels(issue: Int, names: [String]) async throws -> [GiteaLabel]
    func replaceLabels(issue: Int, names: [String]) async throws -> [GiteaLabel]
    func removeLabel(issue: Int, labelID: Int64) async throws
    func permission(of login: String) async throws -> String
}

/// The repo's webhooks, which only `ka doctor` reads; kept out of `GiteaAPI` so the bot's fakes need not answer.
package protocol GiteaHooksAPI: Sendable {
    func listHooks() async throws -> [GiteaHook]
}

/// A method + path template the client calls, with a sample of the body it sends (for the contract test).
package struct GiteaRoute: Sendable {
    package let method: String
    package let path: String
    package let bodyDefinition: String?
    package let sampleBody: (any Encodable & Sendable)?
    /// False for creates: sent twice, they make two. The client never repeats them; the outbox retries them
    /// after looking for what the first attempt may have made.
    package let idempotent: Bool

    package init(method: String, path: String, bodyDefinition: String?, sampleBody: (any Encodable & Sendable)?, idempotent: Bool = true) {
        self.method = method; self.path = path; self.bodyDefinition = bodyDefinition; self.sampleBody = sampleBody; self.idempotent = idempotent
    }

    package static let currentUser = GiteaRoute(method: "GET", path: "/user", bodyDefinition: nil, sampleBody: nil)
    package static let repoComments = GiteaRoute(method: "GET", path: "/repos/{owner}/{repo}/issues/comments", bodyDefinition: nil, sampleBody: nil)
    package static let listIssues = GiteaRoute(method: "GET", path: "/repos/{owner}/{repo}/issues", bodyDefinition: nil, sampleBody: nil)
    package static let searchIssues = GiteaRoute(method: "GET", path: "/repos/issues/search", bodyDefinition: nil, sampleBody: nil)
    package static let getIssue = GiteaRoute(method: "GET", path: "/repos/{owner}/{repo}/issues/{index}", bodyDefinition: nil, sampleBody: nil)
    package static let createIssue = GiteaRoute(method: "POST", path: "/repos/{owner}/{repo}/issues", bodyDefinition: "CreateIssueOption",
                                               sampleBody: CreateIssueBody(title: "t", body: "b", labels: [1]), idempotent: false)
    package static let editIssue = GiteaRoute(method: "PATCH", path: "/repos/{owner}/{repo}/issues/{index}", bodyDefinition: "EditIssueOption",
                                             sampleBody: EditIssueBody(title: "t", body: "b", state: "closed"))
    package static let issueComments = GiteaRoute(method: "GET", path: "/repos/{owner}/{repo}/issues/{index}/comments", bodyDefinition: nil, sampleBody: nil)
    package static let createComment = GiteaRoute(method: "POST", path: "/repos/{owner}/{repo}/issues/{index}/comments",
                                                 bodyDefinition: "CreateIssueCommentOption", sampleBody: BodyOnly(body: "b"), idempotent: false)
    package static let editComment = GiteaRoute(method: "PATCH", path: "/repos/{owner}/{repo}/issues/comments/{id}",
                                               bodyDefinition: "EditIssueCommentOption", sampleBody: BodyOnly(body: "b"))
    package static let addReaction = GiteaRoute(method: "POST", path: "/repos/{owner}/{repo}/issues/comments/{id}/reactions",
                                               bodyDefinition: "EditReactionOption", sampleBody: ReactionBody(content: "eyes"))
    package static let listLabels = GiteaRoute(method: "GET", path: "/repos/{owner}/{repo}/labels", bodyDefinition: nil, sampleBody: nil)
    package static let createLabel = GiteaRoute(method: "POST", path: "/repos/{owner}/{repo}/labels", bodyDefinition: "CreateLabelOption",
                                               sampleBody: LabelBody(name: "n", color: "ffffff", description: "d"), idempotent: false)
    package static let editLabel = GiteaRoute(method: "PATCH", path: "/repos/{owner}/{repo}/labels/{id}", bodyDefinition: "EditLabelOption",
                                             sampleBody: LabelBody(name: "n", color: "ffffff", description: "d"))
    package static let addLabels = GiteaRoute(method: "POST", path: "/repos/{owner}/{repo}/issues/{index}/labels", bodyDefinition: "IssueLabelsOption",
                                             sampleBody: LabelNames(labels: ["x"]))
    package static let replaceLabels = GiteaRoute(method: "PUT", path: "/repos/{owner}/{repo}/issues/{index}/labels", bodyDefinition: "IssueLabelsOption",
                                                 sampleBody: LabelNames(labels: ["x"]))
    package static let removeLabel = GiteaRoute(method: "DELETE", path: "/repos/{owner}/{repo}/issues/{index}/labels/{id}", bodyDefinition: nil, sampleBody: nil)
    package static let permission = GiteaRoute(method: "GET", path: "/repos/{owner}/{repo}/collaborators/{collaborator}/permission", bodyDefinition: nil, sampleBody: nil)

    /// Read by `ka doctor` only (it needs repo admin, as Gitea's hook settings do).
    package static let listHooks = GiteaRoute(method: "GET", path: "/repos/{owner}/{repo}/hooks", bodyDefinition: nil, sampleBody: nil)

    package static let all: [GiteaRoute] = [currentUser, repoComments, listIssues, searchIssues, getIssue, createIssue, editIssue,
                                           issueComments, createComment, editComment, addReaction, listLabels, createLabel,
                                           editLabel, addLabels, replaceLabels, removeLabel, permission, listHooks]
}

struct CreateIssueBody: Codable, Sendable { let title: String; let body: String; let labels: [Int64] }
struct EditIssueBody: Codable, Sendable { let title: String?; let body: String?; let state: String? }
struct BodyOnly: Codable, Sendable { let body: String }
struct ReactionBody: Codable, Sendable { let content: String }
struct LabelBody: Codable, Sendable { let name: String?; let color: String?; let description: String? }
struct LabelNames: Codable, Sendable { let labels: [String] }

package struct GiteaError: Error, CustomStringConvertible, Sendable {
    package let status: Int
    package let method: String
    package let path: String
    package let message: String
    /// A 429's wait (seconds, from its Retry-After): no request goes to the host before it has passed.
    package var retryAfter: Double? = nil
    package var description: String { "Gitea \(method) \(path) → \(status): \(message)" }
    /// Worth sending again: a 5xx, a transport error (0), or a 429 once its pause is over (a 429 was not carried out).
    package var isRetryable: Bool { status >= 500 || status == 0 || status == 429 }
    /// Gitea refused the request itself (a 4xx but 408 and 429): sent again unchanged, it is likely refused again.
    package var isRefusal: Bool { (400..<500).contains(status) && status != 408 && status != 429 }
}

/// `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date, in any of the three date forms a recipient
/// must accept. Seconds from `now`; nil when absent or unreadable.
package enum RetryAfter {
    package static func seconds(_ value: String?, now: Date) -> Double? {
        guard let v = value?.trimmingCharacters(in: .whitespaces), !v.isEmpty else { return nil }
        if v.allSatisfy(\.isASCII), v.allSatisfy(\.isNumber) { return Double(v) }
        for format in ["EEE, dd MMM yyyy HH:mm:ss zzz", "EEEE, dd-MMM-yy HH:mm:ss zzz", "EEE MMM d HH:mm:ss yyyy"] {
            let f = DateFormatter()
            f.locale = Locale(identifier: "en_US_POSIX")
            f.timeZone = TimeZone(identifier: "GMT")
            f.dateFormat = format
            if let date = f.date(from: v) { return max(0, date.timeIntervalSince(now)) }
        }
        return nil
    }
}

/// The host-wide pause a 429 asks for: every request to the host waits until it has passed.
final class HostPause: Sendable {
    private let until = NIOLockedValueBox(Date.distantPast)
    var resumesAt: Date { until.withLockedValue { $0 } }
    func extend(to date: Date) { until.withLockedValue { $0 = max($0, date) } }
}

/// AsyncHTTPClient (on NIO's shared event loops, as the server's) with token auth, paging until a short page, and
/// retries with backoff and jitter on 5xx and transport errors for every call but a create. 4xx surface at once
/// with Gitea's own message.
///
/// A 429 (Gitea has no limiter of its own, but a proxy in front of it may) pauses every request to the host for
/// its Retry-After (1 s without one, at most an hour). A request meeting a pause waits it out when it is short
/// (`maxPauseWait`); otherwise it is not sent and fails with the 429 and the time left, for its caller to retry.
package final class DefaultGiteaClient: GiteaAPI, GiteaHooksAPI, Sendable {
    package let baseURL: URL        // e.g. https://git.example/ (the /api/v1 is added here)
    package let owner: String
    package let repo: String
    let token: String
    let maxAttempts: Int
    let baseDelay: Double
    /// Each request's deadline, its response read included.
    let timeout: TimeAmount
    /// The longest pause a request waits out in place (seconds); beyond it, it fails at once with the time left.
    let maxPauseWait: Double
    let pause = HostPause()
    /// A 429 without a readable Retry-After pauses this long; a longer Retry-After than `maxRetryAfter` is cut to it.
    static let defaultRetryAfter = 1.0
    static let maxRetryAfter = 3600.0
    /// The largest response read (a page of 50 issues is well under 1 MiB).
    static let maxResponseBytes = 32 << 20
    /// Counts requests sent (for the idle-poll figure and tests).
    package var requestCount: Int { requests.withLockedValue { $0 } }
    private let requests = NIOLockedValueBox(0)

    package static let pageSize = 50   // Gitea caps limit at 50 (MAX_RESPONSE_ITEMS)

    /// One HTTP client for the process, never shut down (AsyncHTTPClient asks that a client be shut down before
    /// it is freed; this one lives as long as the process). Its pool keeps a connection for each outbox lane and a
    /// few for the poller, the permission checks and block lookups.
    static let http: HTTPClient = {
        var c = HTTPClient.Configuration()
        c.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: ControlPlaneConfig.maxOutboxParallel + 4)
        c.timeout = .init(connect: .seconds(10))
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: c)
    }()

    package init(baseURL: URL, owner: String, repo: String, token: String, maxAttempts: Int = 8, baseDelay: Double = 0.1,
                timeout: TimeInterval = 10, maxPauseWait: Double = 10) {
        self.baseURL = baseURL; self.owner = owner; self.repo = repo; self.token = token
        self.maxAttempts = maxAttempts; self.baseDelay = baseDelay; self.maxPauseWait = maxPauseWait
        self.timeout = .milliseconds(Int64(timeout * 1000))
    }

    private func countRequest() { requests.withLockedValue { $0 += 1 } }

    func path(_ route: GiteaRoute, _ params: [String: String] = [:]) -> String {
        var p = route.path.replacingOccurrences(of: "{owner}", with: owner).replacingOccurrences(of: "{repo}", with: repo)
        for (k, v) in params { p = p.replacingOccurrences(of: "{\(k)}", with: v.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? v) }
        return p
    }

    /// A response: its status, its Retry-After (the one header read) and its body.
    struct Response { let status: Int; let retryAfter: String?; let body: Data }

    func send(_ route: GiteaRoute, params: [String: String] = [:], query: [URLQueryItem] = [], body: (any Encodable)? = nil) async throws -> Response {
        let p = path(route, params)
        var comps = URLComponents(url: baseURL.appendingPathComponent("api/v1" + p), resolvingAgainstBaseURL: false)
        if !query.isEmpty { comps?.queryItems = query }
        guard let url = comps?.url else { throw GiteaError(status: 0, method: route.method, path: p, message: "bad URL") }
        var req = HTTPClientRequest(url: url.absoluteString)
        req.method = HTTPMethod(rawValue: route.method)
        req.headers.add(name: "Authorization", value: "token \(token)")
        req.headers.add(name: "Accept", value: "application/json")
        if let body {
            req.headers.add(name: "Content-Type", value: "application/json")
            req.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(body)))
        }
        var attempt = 0
        while true {
            attempt += 1
            try await waitOutPause(route.method, p)
            countRequest()
            do {
                let resp = try await Self.http.execute(req, timeout: timeout)
                let bytes = try await resp.body.collect(upTo: Self.maxResponseBytes)
                let http = Response(status: Int(resp.status.code), retryAfter: resp.headers.first(name: "Retry-After"), body: Data(bytes.readableBytesView))
                if (200..<300).contains(http.status) { return http }
                let message = Self.message(in: http.body)
                var err = GiteaError(status: http.status, method: route.method, path: p, message: message)
                if http.status == 429 {
                    let wait = min(Self.maxRetryAfter, RetryAfter.seconds(http.retryAfter, now: Date()) ?? Self.defaultRetryAfter)
                    pause.extend(to: Date().addingTimeInterval(wait))
                    err.retryAfter = wait
                    if !route.idempotent || attempt >= maxAttempts { throw err }
                    continue   // the pause is the backoff
                }
                if !err.isRetryable || !route.idempotent || attempt >= maxAttempts { throw err }
            } catch let e as GiteaError {
                if !e.isRetryable || !route.idempotent || attempt >= maxAttempts { throw e }
            } catch {
                // transport: timeout, refused, reset — retry what is safe to repeat
                if !route.idempotent || attempt >= maxAttempts {
                    throw GiteaError(status: 0, method: route.method, path: p, message: Self.transportMessage(error))
                }
            }
            let delay = min(5.0, baseDelay * pow(2, Double(attempt - 1))) * Double.random(in: 0.5...1.5)
            try await Task.sleep(nanoseconds: UInt64(delay * 1e9))
        }
    }

    /// A transport failure in words (AsyncHTTPClient's errors describe themselves by case name).
    static func transportMessage(_ error: any Error) -> String {
        switch error {
        case let e as HTTPClientError where e == .deadlineExceeded: return "no answer within the request's deadline"
        case let e as HTTPClientError where e == .remoteConnectionClosed: return "the connection was closed before the answer"
        case let e as HTTPClientError: return "HTTP client: \(e)"
        default: return "\(error)"
        }
    }

    /// Waits while the host is paused by a 429, or, when the pause is longer than `maxPauseWait`, fails without
    /// sending.
    func waitOutPause(_ method: String, _ path: String) async throws {
        while true {
            let left = pause.resumesAt.timeIntervalSinceNow
            if left <= 0 { return }
            guard left <= maxPauseWait else {
                throw GiteaError(status: 429, method: method, path: path,
                                 message: "not sent: Gitea asked for a pause until \(GiteaTime.format(pause.resumesAt))", retryAfter: left)
            }
            try await Task.sleep(nanoseconds: UInt64(left * 1e9) + 1_000_000)
        }
    }

    /// Gitea's `message`, or the start of a body that has none (a proxy's HTML page).
    static func message(in data: Data) -> String {
        struct ErrorBody: Decodable { let message: String? }
        do {
            if let m = try JSONDecoder().decode(ErrorBody.self, from: data).message { return m }
        } catch {
            // not Gitea's JSON error body: the start of the text says more
        }
        return String(decoding: data.prefix(300), as: UTF8.self)
    }

    func decode<T: Decodable>(_ t: T.Type, _ route: GiteaRoute, params: [String: String] = [:], query: [URLQueryItem] = [], body: (any Encodable)? = nil) async throws -> T {
        let data = try await send(route, params: params, query: query, body: body).body
        do { return try JSONDecoder().decode(T.self, from: data) } catch {
            throw GiteaError(status: 0, method: route.method, path: path(route, params), message: "undecodable response: \(error)")
        }
    }

    /// Pages with limit=50 until a page comes back short (some lists carry no Link header).
    func all<T: Decodable>(_ t: T.Type, _ route: GiteaRoute, params: [String: String] = [:], query: [URLQueryItem] = []) async throws -> [T] {
        var out: [T] = []
        var page = 1
        while true {
            let items = try await decode([T].self, route, params: params,
                                         query: query + [URLQueryItem(name: "page", value: "\(page)"), URLQueryItem(name: "limit", value: "\(Self.pageSize)")])
            out += items
            if items.count < Self.pageSize { return out }
            page += 1
        }
    }

    package func currentUser() async throws -> GiteaUser { try await decode(GiteaUser.self, .currentUser) }

    package func listRepoComments(since: Date?) async throws -> [GiteaComment] {
        try await all(GiteaComment.self, .repoComments, query: since.map { [URLQueryItem(name: "since", value: GiteaTime.format($0))] } ?? [])
    }

    package func listIssues(state: String, since: Date?) async throws -> [GiteaIssue] {
        var q = [URLQueryItem(name: "state", value: state), URLQueryItem(name: "type", value: "issues")]
        if let since { q.append(URLQueryItem(name: "since", value: GiteaTime.format(since))) }
        return try await all(GiteaIssue.self, .listIssues, query: q)
    }

    package func searchIssues(query: String, state: String) async throws -> [GiteaIssue] {
        try await all(GiteaIssue.self, .searchIssues, query: [URLQueryItem(name: "q", value: query), URLQueryItem(name: "state", value: state),
                                                           URLQueryItem(name: "type", value: "issues"), URLQueryItem(name: "owner", value: owner)])
    }

    package func getIssue(_ number: Int) async throws -> GiteaIssue { try await decode(GiteaIssue.self, .getIssue, params: ["index": "\(number)"]) }

    package func createIssue(title: String, body: String, labelIDs: [Int64]) async throws -> GiteaIssue {
        try await decode(GiteaIssue.self, .createIssue, body: CreateIssueBody(title: title, body: body, labels: labelIDs))
    }

    package func editIssue(_ number: Int, title: String?, body: String?, state: String?) async throws -> GiteaIssue {
        try await decode(GiteaIssue.self, .editIssue, params: ["index": "\(number)"], body: EditIssueBody(title: title, body: body, state: state))
    }

    package func listIssueComments(_ number: Int) async throws -> [GiteaComment] {
        try await decode([GiteaComment].self, .issueComments, params: ["index": "\(number)"])   // not paged by Gitea
    }

    package func createComment(issue: Int, body: String) async throws -> GiteaComment {
        try await decode(GiteaComment.self, .createComment, params: ["index": "\(issue)"], body: BodyOnly(body: body))
    }

    package func editComment(id: Int64, body: String) async throws -> GiteaComment {
        try await decode(GiteaComment.self, .editComment, params: ["id": "\(id)"], body: BodyOnly(body: body))
    }

    package func addReaction(commentID: Int64, content: String) async throws {
        _ = try await send(.addReaction, params: ["id": "\(commentID)"], body: ReactionBody(content: content))
    }

    package func listLabels() async throws -> [GiteaLabel] { try await all(GiteaLabel.self, .listLabels) }

    package func createLabel(name: String, color: String, description: String) async throws -> GiteaLabel {
        try await decode(GiteaLabel.self, .createLabel, body: LabelBody(name: name, color: color, description: description))
    }

    package func editLabel(id: Int64, name: String?, color: String?, description: String?) async throws -> GiteaLabel {
        try await decode(GiteaLabel.self, .editLabel, params: ["id": "\(id)"], body: LabelBody(name: name, color: color, description: description))
    }

    package func addLabels(issue: Int, names: [String]) async throws -> [GiteaLabel] {
        try await decode([GiteaLabel].self, .addLabels, params: ["index": "\(issue)"], body: LabelNames(labels: names))
    }

    package func replaceLabels(issue: Int, names: [String]) async throws -> [GiteaLabel] {
        try await decode([GiteaLabel].self, .replaceLabels, params: ["index": "\(issue)"], body: LabelNames(labels: names))
    }

    package func removeLabel(issue: Int, labelID: Int64) async throws {
        _ = try await send(.removeLabel, params: ["index": "\(issue)", "id": "\(labelID)"])
    }

    package func listHooks() async throws -> [GiteaHook] { try await all(GiteaHook.self, .listHooks) }

    package func permission(of login: String) async throws -> String {
        try await decode(GiteaPermission.self, .permission, params: ["collaborator": login]).permission
    }
}

