import Foundation
import KATestSupport
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Hummingbird
import Logging
import Testing
@testable import KAControlPlane
@testable import KernelAgent

/// The stand-in Gitea plus the real control plane (engine, loop, webhook server) in this process, on a copy of
/// the shipped fleet/ and patches/.
final class Harness: @unchecked Sendable {
    let gitea = GiteaStandIn()
    let root: URL
    let secret = Array("test-secret".utf8)
    var config: ControlPlaneConfig!
    var ledger: Ledger!
    var engine: Engine!
    var authorizer: Authorizer!
    var loop: ControlLoop!
    var api: DefaultGiteaClient!
    var metrics = Metrics()
    var dashboard: DashboardIssue!
    var page: DashboardPageCache!
    var serverPort = 0
    private var serverTask: Task<Void, Error>?

    static var projectRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    init() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("ka-cp-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        for d in ["fleet", "patches", "labels", "packaging"] {
            try FileManager.default.copyItem(at: Self.projectRoot.appendingPathComponent(d), to: root.appendingPathComponent(d))
        }
    }

    deinit {
        // servers are left running (see GiteaStandIn.stop); only the stand-in's webhooks stop
        gitea.stop()
        try? FileManager.default.removeItem(at: root)
    }

    /// `configure` sees the config last; the reply rate limit is off unless a test sets it.
    func start(allow: [String: [String]] = [:], consentTTL: Double = 3600, webhook: Bool = true, giteaBlocks: Bool = false,
               faults: ServeFaults = ServeFaults(), transports: any TransportProvider = StaticTransports([:]),
               configure: (inout ControlPlaneConfig) -> Void = { _ in }) async throws {
        try await gitea.start()
        config = ControlPlaneConfig(giteaURL: gitea.baseURL, owner: gitea.owner, repo: gitea.repo, botLogin: nil,
                                    stateDir: root.appendingPathComponent(".ka"), root: root, token: "bot-token", webhookSecrets: [secret])
        config.allow = allow
        config.consentTTL = consentTTL
        config.pollInterval = 1
        config.replyRateLimit = nil
        config.dashboardIssue = false   // a test that wants the [ka:dashboard] issue turns it on
        configure(&config)
        api = DefaultGiteaClient(baseURL: gitea.baseURL, owner: gitea.owner, repo: gitea.repo, token: "bot-token", maxAttempts: 10, baseDelay: 0.005)
        let bot = try await api.currentUser().login
        let plane = try ControlPlane(config: config, api: api, botLogin: bot, transports: transports, faults: faults,
                                     blocksInTracker: giteaBlocks, logger: Logger(label: "test"))
        (ledger, authorizer, engine, loop, metrics) = (plane.ledger, plane.authorizer, plane.engine, plane.loop, plane.metrics)
        (dashboard, page) = (plane.dashboard, plane.page)
        try await loop.poller.pollOnce()   // sets the cursor: history before start is not replayed
        guard webhook else { return }
        let intake = plane.intake
        let portBox = PortBox()
        let app = Application(router: ControlPlaneServer.buildRouter(intake: intake, metrics: metrics, ledger: ledger, page: page),
                              server: ControlPlaneServer.httpServer, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { portBox.set($0.localAddress?.port ?? 0) })
        serverTask = Task { try await app.run() }
        for _ in 0..<500 where portBox.get() == 0 { try await Task.sleep(nanoseconds: 10_000_000) }
        serverPort = portBox.get()
        gitea.webhookURL = URL(string: "http://127.0.0.1:\(serverPort)/webhook")
    }

    /// Turns the loop until `done` holds (or the deadline passes).
    @discardableResult
    func settle(poll: Bool = false, timeout: Double = 20, until done: () -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            await loop.turn(poll: poll)
            await loop.waitForRuns()
            await loop.turn(poll: false)
            if done() { return true }
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
        return done()
    }

    /// Turns the loop every 20 ms, as `ka serve` does, until cancelled.
    func drive() -> Task<Void, Never> {
        Task { [loop] in
            while !Task.isCancelled {
                await loop!.turn(poll: false)
                try? await Task.sleep(nanoseconds: 20_000_000)
            }
        }
    }

    /// Nothing left to do: every stored event handled, no command or run in progress, every write to Gitea sent.
    func quiescent() -> Bool {
        guard engine.eventsInFlight == 0 else { return false }
        let busy = try? ledger.readSync { db in
            try Int.fetchOne(db, sql: """
                SELECT (SELECT COUNT(*) FROM events WHERE processed = 0) + (SELECT COUNT(*) FROM outbox WHERE done = 0)
                     + (SELECT COUNT(*) FROM runs WHERE state IN ('handling', 'queued', 'running'))
                """)
        }
        return busy == 0
    }

    /// Turns the loop until nothing is left to do; records a failure if that takes longer than `timeout`.
    func settleAll(poll: Bool = false, timeout: Double = 30, sourceLocation: SourceLocation = #_sourceLocation) async {
        if !(await settle(poll: poll, timeout: timeout) { quiescent() }) {
            Issue.record("the control plane did not settle within \(timeout) s", sourceLocation: sourceLocation)
        }
    }

    /// Polls `condition` until it holds; records a failure (and returns false) at the deadline.
    @discardableResult
    static func waitFor(_ what: String, timeout: Double = 20, sourceLocation: SourceLocation = #_sourceLocation,
                        _ condition: () throws -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if (try? condition()) == true { return true }
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
        if (try? condition()) == true { return true }
        Issue.record("timed out after \(timeout) s waiting for \(what)", sourceLocation: sourceLocation)
        return false
    }

    /// Runs a program on its own thread: a blocking wait on the (2-thread) cooperative pool would starve the
    /// in-process stand-in the program talks to.
    static func runOffPool(_ argv: [String], cwd: URL, environment: [String: String]) async throws -> TestCommand.Result {
        try await offPool { try TestCommand.runBlocking(argv, cwd: cwd, environment: environment) }
    }

    /// Whether the ledger has stored the comment's event (the webhook or a poll landed).
    func stored(comment id: Int64) -> Bool { (try? ledger.isKnown("comment:\(id)")) == true }

    func post(_ path: String, body: Data, headers: [String: String]) async throws -> (Int, String) {
        var req = URLRequest(url: URL(string: "http://127.0.0.1:\(serverPort)\(path)")!)
        req.httpMethod = "POST"
        req.httpBody = body
        for (k, v) in headers { req.setValue(v, forHTTPHeaderField: k) }
        let (data, resp) = try await URLSession.shared.data(for: req)
        return ((resp as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    static func nonce(in text: String) -> String? {
        guard let r = text.range(of: "/ka-yes ") else { return nil }
        return String(text[r.upperBound...].prefix { $0.isLetter || $0.isNumber })
    }
}
