import Foundation
import KernelAgent
import Logging

/// The one composition root of the control plane: `ka serve` and the test harness both build it here, so what
/// the tests run is what serves.
package struct ControlPlane: Sendable {
    package let ledger: Ledger
    package let authorizer: Authorizer
    package let engine: Engine
    package let loop: ControlLoop
    package let intake: WebhookIntake
    package let metrics: Metrics
    package let dashboard: DashboardIssue
    /// `GET /` and `GET /api/status`.
    package let page: DashboardPageCache

    /// - `blocksInTracker`: blocks are `[ka:*]` issues (what `ka serve` does) and refusals file them; off, the
    ///   local block table is used and nothing is filed (some tests).
    /// - `settings`: KA_CONFIG as the server read it at start (default: read from the environment on first use), the
    ///   same for every verb it runs.
    package init(config: ControlPlaneConfig, api: any GiteaAPI, botLogin: String, transports: any TransportProvider,
                settings: SettingsSource? = nil, faults: ServeFaults = ServeFaults(), blocksInTracker: Bool = true, logger: Logger) throws {
        ledger = try Ledger(path: config.stateDir.appendingPathComponent("control.sqlite"))
        let ws = Workspace(root: config.root, stateDir: config.stateDir)
        let settings = settings ?? .environment(stateDir: config.stateDir)
        let store = try SQLiteStateStore.open(ws)
        authorizer = Authorizer(allow: config.allow, api: api, botLogin: botLogin)
        let blocks: any BlockStore = blocksInTracker ? GiteaBlockStore(api: api, ledger: ledger, authorizer: authorizer) : store
        engine = Engine(config: config, ledger: ledger, api: api, botLogin: botLogin,
                        makeContext: {
                            var ctx = VerbContext(workspace: ws, state: store, blocks: blocks, fileBlocksOnRefusal: blocksInTracker,
                                                  jobs: store.jobs, transports: transports, records: blocks as? RecordFiler, settings: settings)
                            ctx.renderDashboard = { ctx in try await DashboardPage.offline(ctx: ctx, env: ProcessInfo.processInfo.environment) }
                            return ctx
                        },
                        authorizer: authorizer, faults: faults, logger: logger)
        let metrics = Metrics()
        self.metrics = metrics
        let (eng, led) = (engine, ledger)
        let links = DashboardLinks(giteaURL: config.giteaURL, owner: config.owner, repo: config.repo)
        let buildModel: @Sendable () async throws -> DashboardModel = {
            try await DashboardSource.build(ctx: try eng.makeContext(), ledger: led, links: links, now: eng.now())
        }
        page = DashboardPageCache(build: buildModel)
        let dash = DashboardIssue(api: api, ledger: led, botLogin: botLogin, now: eng.now) {
            DashboardRenderer.body(try await buildModel(), now: eng.now())
        }
        dashboard = dash
        eng.watchIssues { dash.observe($0) }
        let loop = ControlLoop(engine: engine, poller: Poller(engine: engine, api: api),
                               outbox: OutboxSender(ledger: ledger, api: api, botLogin: botLogin, parallel: config.outboxParallel),
                               interval: config.pollInterval, metrics: metrics, logger: logger, dashboard: config.dashboardIssue ? dash : nil)
        self.loop = loop
        intake = WebhookIntake(verifier: WebhookVerifier(secrets: config.webhookSecrets), engine: engine, metrics: metrics,
                               onAccepted: { loop.poke() })
    }
}
