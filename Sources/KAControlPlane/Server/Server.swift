import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import KernelAgent
import Logging
import ServiceLifecycle

/// `ka serve`: the webhook receiver, health and metrics endpoints, and the control loop, in one ServiceGroup.
package enum ControlPlaneServer {
    package static func buildRouter(intake: WebhookIntake, metrics: Metrics, ledger: Ledger, page: DashboardPageCache? = nil) -> Router<BasicRequestContext> {
        let engine = intake.engine
        let router = Router()
        router.post("/webhook") { request, _ -> Response in
            var req = request
            let buffer = try await req.collectBody(upTo: WebhookIntake.maxBody)   // > 1 MiB → 413
            let bytes = Array(buffer.readableBytesView)
            let (status, text) = await intake.handle(header: { name in
                HTTPField.Name(name).flatMap { request.headers[$0] }
            }, body: bytes)
            return Response(status: .init(code: status), body: .init(byteBuffer: ByteBuffer(string: text + "\n")))
        }
        // The bare endpoint: the ingest benchmark's same-server baseline.
        router.post("/bare") { request, _ -> Response in
            var req = request
            _ = try await req.collectBody(upTo: WebhookIntake.maxBody)
            return Response(status: .ok)
        }
        router.get("/healthz") { _, _ in "ok\n" }
        if let page { addDashboard(to: router, page: page) }
        router.get("/metrics") { _, _ -> Response in
            let gauges = ["outbox_pending": (try? ledger.outboxPendingCount()) ?? -1,   // -1: the ledger could not be read
                          "events_in_flight": engine.eventsInFlight, "plans_running": engine.plansRunning]
            var text = metrics.render(gauges: gauges)
            do { text += try engine.jobMetricsText() } catch {
                text += "# the job store could not be read: \(String(describing: error).replacingOccurrences(of: "\n", with: " "))\n"
            }
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                            body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        return router
    }

    /// The read-only dashboard: `GET /` (HTML) and `GET /api/status` (what `ka status --json` prints). Neither
    /// holds the webhook secret or the token; every value in the page is HTML-escaped by its template.
    package static func addDashboard(to router: Router<BasicRequestContext>, page: DashboardPageCache) {
        @Sendable func answer(_ text: String, _ type: String) -> Response {
            Response(status: .ok, headers: [.contentType: type, .cacheControl: "no-store",
                                            HTTPField.Name("Content-Security-Policy")!: "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'"],
                     body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        @Sendable func failed(_ error: any Error) -> Response {
            Response(status: .internalServerError, headers: [.contentType: "text/plain; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(string: "the dashboard cannot be read: \((error as? KAError)?.description ?? "\(error)")\n")))
        }
        router.get("/") { _, _ -> Response in
            do { return answer(try await page.current().page, "text/html; charset=utf-8") } catch { return failed(error) }
        }
        router.get("/api/status") { _, _ -> Response in
            do { return answer(try await page.current().json, "application/json") } catch { return failed(error) }
        }
    }

    /// HTTP/1.1 with oversized requests refused from their head (see `BodyLimitHandler`).
    package static var httpServer: HTTPServerBuilder {
        .http1(configuration: .init(additionalChannelHandlers: [BodyLimitHandler(limit: WebhookIntake.maxBody)]))
    }

    package static func run(config: ControlPlaneConfig, logger: Logger) async throws {
        guard !config.webhookSecrets.isEmpty else {
            throw KAError.refusal("config", "missing KA_WEBHOOK_SECRET", hint: "export KA_WEBHOOK_SECRET (the Gitea hook's secret); during rotation also KA_WEBHOOK_SECRET_OLD")
        }
        let faults = try ServeFaults.fromEnvironment()
        if !faults.isEmpty { logger.warning("KA_SERVE_FAULT is set: faults are injected (tests only)") }
        let api = DefaultGiteaClient(baseURL: config.giteaURL, owner: config.owner, repo: config.repo, token: config.token)
        let bot: String
        if let b = config.botLogin { bot = b } else { bot = try await api.currentUser().login }
        let ws = Workspace(root: config.root, stateDir: config.stateDir)
        // KA_CONFIG once, for the server's life: every verb it runs reads these settings
        let settings = SettingsSource(try Settings.load(stateDir: ws.stateDir))
        let plane = try ControlPlane(config: config, api: api, botLogin: bot, transports: HostTransports.lazy(ws, settings: settings),
                                     settings: settings, faults: faults, logger: logger)
        let (intake, metrics, ledger, loop) = (plane.intake, plane.metrics, plane.ledger, plane.loop)
        let app = Application(router: buildRouter(intake: intake, metrics: metrics, ledger: ledger, page: plane.page), server: httpServer,
                              configuration: .init(address: .hostname(config.listenHost, port: config.listenPort), serverName: "kernel-agent"),
                              logger: logger)
        let group = ServiceGroup(configuration: .init(services: [.init(service: app), .init(service: loop)],
                                                      gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        logger.info("ka serve: \(config.owner)/\(config.repo) as \(bot), listening on \(config.listenHost):\(config.listenPort)")
        try await group.run()
    }
}
