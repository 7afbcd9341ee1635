import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Hummingbird
import KAControlPlane
import KernelAgent
import Logging
import NIOConcurrencyHelpers

// scripts/bench-dashboard's harness (issue 10):
//  1. GET / of a fleet of HOSTS target hosts with JOBS jobs over the last 30 days, against GET /healthz on the same
//     server in the same run, requests alternating, one at a time: p50 and p99 of each (target: GET / p99 <= 20 ms).
//  2. The [ka:dashboard] issue during a burst of 100 state changes, on an injected clock (no minutes of waiting),
//     against a Gitea that counts edits: the most edits in any 30 s window (target: 1).
// Usage: ka-bench-dashboard [HOSTS] [JOBS] [REQUESTS]; defaults 50 5000 2000. Exits 1 when anything it times fails.

nonisolated(unsafe) var scratch: URL?

func cleanUp() {
    guard let dir = scratch else { return }
    do { try FileManager.default.removeItem(at: dir) } catch {
        FileHandle.standardError.write(Data("bench-dashboard: cannot remove \(dir.path): \(error)\n".utf8))
    }
}

func fail(_ text: String) -> Never {
    FileHandle.standardError.write(Data("bench-dashboard: \(text)\n".utf8))
    cleanUp()
    exit(1)
}

let argv = CommandLine.arguments.dropFirst().map { Int($0) }
guard argv.allSatisfy({ $0 != nil }) else { fail("usage: ka-bench-dashboard [HOSTS] [JOBS] [REQUESTS] (numbers)") }
let hostCount = argv.first.flatMap { $0 } ?? 50
let jobCount = argv.dropFirst().first.flatMap { $0 } ?? 5000
let requests = argv.dropFirst(2).first.flatMap { $0 } ?? 2000

// MARK: the fixture: a fleet of target hosts (two build hosts route them) and a job journal

let root = FileManager.default.temporaryDirectory.appendingPathComponent("ka-bench-dashboard-\(UUID().uuidString)")
scratch = root
do {
    try FileManager.default.createDirectory(at: root.appendingPathComponent("fleet"), withIntermediateDirectories: true)
    try FileManager.default.createDirectory(at: root.appendingPathComponent("patches"), withIntermediateDirectories: true)
    var yaml = "hosts:\n  bench-build-a:\n    roles: [build]\n    build_tier: primary\n    arch: aarch64\n    distro: arch\n    wake: always\n"
    yaml += "  bench-build-b:\n    roles: [build]\n    build_tier: secondary\n    arch: aarch64\n    distro: arch\n    wake: always\n"
    for i in 0..<hostCount {
        yaml += "  host\(i):\n    roles: [target]\n    arch: aarch64\n    distro: arch\n    wake: always\n    notes: bench host \(i)\n"
    }
    yaml += "routing:\n  aarch64: [bench-build-a, bench-build-b]\n"
    try yaml.write(to: root.appendingPathComponent("fleet/hosts.yaml"), atomically: true, encoding: .utf8)
} catch { fail("cannot write the fixture fleet: \(error)") }

let ws = Workspace(root: root, stateDir: root.appendingPathComponent(".ka"))
let store: SQLiteStateStore
do { store = try SQLiteStateStore.open(ws) } catch { fail("cannot open the state store: \(error)") }
let now = Date()
do {
    let outcomes: [JobState] = [.succeeded, .succeeded, .failed, .succeeded, .cancelled]
    for i in 0..<jobCount {
        let host = "host\(i % max(1, hostCount))"
        let start = now.addingTimeInterval(-Double(i + 1) * 29 * 86_400 / Double(jobCount + 1))
        var job = JobRecord(id: JobID.make(subject: host, at: start, random: UInt16(i % 65_536)), verb: "build", arguments: [host], pins: [],
                            lanes: ["host:\(host)"], origin: .cli(user: "bench"),
                            steps: ["route", "check the lock", "render", "ship", "build", "fetch", "sign", "publish", "file installable"], at: start)
        job.state = outcomes[i % outcomes.count]
        job.startedAt = start
        job.finishedAt = start.addingTimeInterval(Double(600 + (i % 40) * 60))
        for s in job.steps.indices { job.steps[s].state = .succeeded; job.steps[s].outcome = "ok" }
        try store.jobs.insert(job)
    }
} catch { fail("cannot store the fixture jobs: \(error)") }

// MARK: 1. GET / against GET /healthz

let links = DashboardLinks(giteaURL: URL(string: "http://gitea.example/"), owner: "bench", repo: "fleet")
let buildStarted = Date()
let page = DashboardPageCache {
    try await DashboardSource.build(ctx: VerbContext(workspace: ws, state: store, blocks: store, jobs: store.jobs), ledger: nil, links: links, now: Date())
}
let first: String
do { first = try await page.current().page } catch { fail("the dashboard cannot be built: \(error)") }
let coldMs = Date().timeIntervalSince(buildStarted) * 1000
guard first.components(separatedBy: "<article class=\"card host\"").count - 1 == hostCount else { fail("the page does not show \(hostCount) hosts") }
guard first.components(separatedBy: "<rect class=\"bar ").count - 1 == jobCount else { fail("the page does not show \(jobCount) job bars") }

let router = Router()
router.get("/healthz") { _, _ in "ok\n" }   // as `ka serve` answers it
ControlPlaneServer.addDashboard(to: router, page: page)
/// The port the server listens on, once it runs.
let listening = OneShot<Int>()
var quiet = Logger(label: "bench-dashboard")
quiet.logLevel = .critical   // the server's stop at the end is no error
let app = Application(router: router, server: ControlPlaneServer.httpServer, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                      onServerRunning: { listening.set($0.localAddress?.port ?? 0) }, logger: quiet)
let server = Task { try await app.run() }
guard let port = await listening.value(waitingUpTo: .seconds(5)), port != 0 else { fail("the server did not start") }

let session = URLSession(configuration: .ephemeral)
func timed(_ path: String) async -> Double {
    let t = Date()
    do {
        let (data, resp) = try await session.data(from: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        guard (resp as? HTTPURLResponse)?.statusCode == 200, !data.isEmpty else { fail("GET \(path) did not answer 200") }
    } catch { fail("GET \(path): \(error)") }
    return Date().timeIntervalSince(t) * 1000
}
for _ in 0..<50 { _ = await timed("/"); _ = await timed("/healthz") }   // warm-up: connections, caches
var pageTimes: [Double] = [], healthTimes: [Double] = []
for i in 0..<requests {
    if i % 2 == 0 { pageTimes.append(await timed("/")); healthTimes.append(await timed("/healthz")) }
    else { healthTimes.append(await timed("/healthz")); pageTimes.append(await timed("/")) }
}
server.cancel()
func pct(_ xs: [Double], _ p: Double) -> Double { let s = xs.sorted(); return s[min(s.count - 1, Int(Double(s.count) * p))] }
let f = { (x: Double) in String(format: "%.2f", x) }
print("GET /         (\(hostCount) hosts, \(jobCount) jobs, \(first.utf8.count / 1024) KiB): p50 \(f(pct(pageTimes, 0.5))) ms  p99 \(f(pct(pageTimes, 0.99))) ms  (\(pageTimes.count) requests)")
print("GET /healthz  (same server, same run):          p50 \(f(pct(healthTimes, 0.5))) ms  p99 \(f(pct(healthTimes, 0.99))) ms  (\(healthTimes.count) requests)")
print("first build of the picture and page (tree, state store, \(jobCount) jobs, render): \(f(coldMs)) ms")

// MARK: 2. the issue during a burst of 100 state changes

/// Gitea for the dashboard alone: one repo's issues in memory, edits counted with the (injected) time they came.
final class CountingGitea: GiteaAPI, Sendable {
    struct State { var issues: [Int: GiteaIssue] = [:]; var editTimes: [Date] = [] }
    let state = NIOLockedValueBox(State())
    let clock: @Sendable () -> Date
    init(clock: @escaping @Sendable () -> Date) { self.clock = clock }
    /// A call the dashboard never makes here (or an issue that is not there): the run fails.
    struct Unused: Error {}
    func currentUser() async throws -> GiteaUser { GiteaUser(id: 1, login: "bot") }
    func listIssues(state: String, since: Date?) async throws -> [GiteaIssue] { self.state.withLockedValue { Array($0.issues.values) } }
    func getIssue(_ number: Int) async throws -> GiteaIssue {
        guard let i = state.withLockedValue({ $0.issues[number] }) else { throw Unused() }
        return i
    }
    /// GiteaIssue's memberwise init is the module's own: made as the client makes it, from Gitea's JSON.
    static func issue(_ n: Int, title: String, body: String, at: Date) throws -> GiteaIssue {
        let json: [String: Any] = ["id": n, "number": n, "title": title, "body": body, "state": "open", "user": ["id": 1, "login": "bot"],
                                   "created_at": GiteaTime.format(at), "updated_at": GiteaTime.format(at)]
        return try JSONDecoder().decode(GiteaIssue.self, from: try JSONSerialization.data(withJSONObject: json))
    }
    func createIssue(title: String, body: String, labelIDs: [Int64]) async throws -> GiteaIssue {
        try self.state.withLockedValue { s in
            let n = s.issues.count + 1
            let i = try Self.issue(n, title: title, body: body, at: clock())
            s.issues[n] = i
            s.editTimes.append(clock())
            return i
        }
    }
    func editIssue(_ number: Int, title: String?, body: String?, state: String?) async throws -> GiteaIssue {
        try self.state.withLockedValue { s in
            guard var i = s.issues[number] else { throw Unused() }
            if let body { i.body = body }
            if let state { i.state = state }
            s.issues[number] = i
            s.editTimes.append(clock())
            return i
        }
    }
    func listRepoComments(since: Date?) async throws -> [GiteaComment] { throw Unused() }
    func searchIssues(query: String, state: String) async throws -> [GiteaIssue] { throw Unused() }
    func listIssueComments(_ number: Int) async throws -> [GiteaComment] { throw Unused() }
    func createComment(issue: Int, body: String) async throws -> GiteaComment { throw Unused() }
    func editComment(id: Int64, body: String) async throws -> GiteaComment { throw Unused() }
    func addReaction(commentID: Int64, content: String) async throws { throw Unused() }
    func listLabels() async throws -> [GiteaLabel] { throw Unused() }
    func createLabel(name: String, color: String, description: String) async throws -> GiteaLabel { throw Unused() }
    func editLabel(id: Int64, name: String?, color: String?, description: String?) async throws -> GiteaLabel { throw Unused() }
    func addLabels(issue: Int, names: [String]) async throws -> [GiteaLabel] { throw Unused() }
    func replaceLabels(issue: Int, names: [String]) async throws -> [GiteaLabel] { throw Unused() }
    func removeLabel(issue: Int, labelID: Int64) async throws { throw Unused() }
    func permission(of login: String) async throws -> String { throw Unused() }
}

final class Box<T: Sendable>: Sendable {
    private let value: NIOLockedValueBox<T>
    init(_ v: T) { value = NIOLockedValueBox(v) }
    var get: T { value.withLockedValue { $0 } }
    func set(_ v: T) { value.withLockedValue { $0 = v } }
}
let clock = Box(now)
let model: DashboardModel
do { model = try await DashboardSource.build(ctx: VerbContext(workspace: ws, state: store, blocks: store, jobs: store.jobs), ledger: nil, links: links, now: now) }
catch { fail("cannot build the picture: \(error)") }
let current = Box(model)
let gitea = CountingGitea(clock: { clock.get })
let ledger: Ledger
do { ledger = try Ledger(path: root.appendingPathComponent("control.sqlite")) } catch { fail("cannot open a ledger: \(error)") }
let dashboard = DashboardIssue(api: gitea, ledger: ledger, botLogin: "bot", now: { clock.get }) {
    DashboardRenderer.body(current.get, now: clock.get)
}
var rng = SystemRandomNumberGenerator()
let burstStart = now
for change in 0..<100 {
    clock.set(clock.get.addingTimeInterval(Double.random(in: 0...1.2, using: &rng)))   // 100 changes in about a minute
    var m = current.get
    m.hosts[change % m.hosts.count].state = change % 2 == 0 ? "building" : "installable"
    m.hosts[change % m.hosts.count].detail = "change \(change)"
    current.set(m)
    dashboard.markDirty()
    if case let .failed(why) = await dashboard.tick() { fail("a dashboard update failed: \(why)") }
}
let burstEnd = clock.get
clock.set(burstEnd.addingTimeInterval(30))
if case let .failed(why) = await dashboard.tick() { fail("a dashboard update failed: \(why)") }   // the burst's last state
let times = gitea.state.withLockedValue { $0.editTimes }
guard gitea.state.withLockedValue({ $0.issues.values.first?.body }) == DashboardRenderer.body(current.get, now: clock.get) else {
    fail("the dashboard does not show the burst's last state")
}
let maxInWindow = times.indices.map { i in times[i...].prefix { $0.timeIntervalSince(times[i]) < 30 }.count }.max() ?? 0
let span = burstEnd.timeIntervalSince(burstStart)
print("[ka:dashboard] during 100 state changes in \(f(span)) s (injected clock): \(times.count) writes (create + edits), "
      + "at most \(maxInWindow) in any 30 s; target: at most 1 per 30 s")
if maxInWindow > 1 { fail("more than one dashboard edit in 30 s") }
cleanUp()
