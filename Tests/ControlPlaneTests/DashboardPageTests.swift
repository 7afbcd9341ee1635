import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import KATestSupport
import Testing
@testable import KAControlPlane
@testable import KernelAgent

/// `GET /` and `GET /api/status` of a running control plane (the harness serves the same router as `ka serve`) on a
/// copy of the shipped fleet, with jobs in its state database; and the page in a real headless Chromium.
@Suite(.serialized) struct DashboardPageTests {
    static let note = "<script>alert('note')</script>"
    static let argument = "<script>alert('arg')</script>"

    /// A harness whose fleet has a host note holding `<script>`, and `count` jobs spread over the last 30 days on
    /// its target hosts, one of them with an argument holding `<script>`.
    static func serve(jobs count: Int) async throws -> (Harness, targets: [String], jobs: Int) {
        let h = try Harness()
        let hostsFile = h.root.appendingPathComponent("fleet/hosts.yaml")
        let yaml = try String(contentsOf: hostsFile, encoding: .utf8)
        let patched = yaml.replacingOccurrences(of: "notes: Pinebook Pro (RK3399); bootstrap reference build 2026-05-09",
                                                with: "notes: \"\(note)\"")
        try #require(patched != yaml, "the shipped hosts.yaml has fresnel's note")
        try patched.write(to: hostsFile, atomically: true, encoding: .utf8)
        try await h.start(configure: { $0.dashboardIssue = false })
        let ws = Workspace(root: h.root, stateDir: h.config.stateDir)
        let store = try SQLiteStateStore.open(ws)
        let registry = try HostRegistry.load(ws)
        let targets = registry.hosts.values.filter { $0.roles.contains(.target) }.map(\.name.value).sorted()
        let now = Date()
        let outcomes: [JobState] = [.succeeded, .failed, .succeeded, .cancelled, .succeeded]
        for i in 0..<count {
            let host = targets[i % targets.count]
            let start = now.addingTimeInterval(-Double(i + 1) * 29 * 86_400 / Double(count + 1))
            var job = JobRecord(id: JobID.make(subject: host, at: start, random: UInt16(i)), verb: "build",
                                arguments: i == 0 ? [host, argument] : [host], pins: [], lanes: ["host:\(host)"], origin: .cli(user: "markus"),
                                steps: ["route", "build", "sign"], at: start)
            job.state = outcomes[i % outcomes.count]
            job.startedAt = start
            job.finishedAt = start.addingTimeInterval(Double(300 + 60 * (i % 50)))
            for s in job.steps.indices { job.steps[s].state = job.state == .succeeded ? .succeeded : (s == 0 ? .succeeded : .failed) }
            try store.jobs.insert(job)
        }
        return (h, targets, count)
    }

    static func get(_ h: Harness, _ path: String) async throws -> (Int, String, String?) {
        let (data, resp) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(h.serverPort)\(path)")!)
        let http = resp as? HTTPURLResponse
        return (http?.statusCode ?? 0, String(decoding: data, as: UTF8.self), http?.value(forHTTPHeaderField: "Content-Type"))
    }

    @Test func pageAndStatusAPIFromARunningServe() async throws {
        let (h, targets, jobs) = try await Self.serve(jobs: 12)
        let (status, page, type) = try await Self.get(h, "/")
        #expect(status == 200)
        #expect(type?.hasPrefix("text/html") == true)
        for host in targets { #expect(page.contains("<article class=\"card host\" id=\"host-\(host)\" data-host=\"\(host)\">"), "row for \(host)") }
        #expect(page.components(separatedBy: "<rect class=\"bar ").count - 1 == jobs, "one bar per job")
        #expect(page.contains("<meta http-equiv=\"refresh\""))
        // read-only, and nothing secret
        for word in ["<form", "<button", "<input", "<script", "bot-token", "test-secret"] { #expect(!page.contains(word), "\(word) in the page") }
        #expect(page.contains("&lt;script&gt;alert(&#39;note&#39;)&lt;/script&gt;"), "the host note, escaped")
        #expect(page.contains("&lt;script&gt;alert(&#39;arg&#39;)&lt;/script&gt;"), "the job argument, escaped")
        // GET /api/status is what `ka status --json` prints
        let (apiStatus, json, apiType) = try await Self.get(h, "/api/status")
        #expect(apiStatus == 200)
        #expect(apiType == "application/json")
        let ctx = try h.engine.makeContext()
        let verb = try StatusVerb.parse([])
        let rows = try await verb.rows(in: ctx)
        #expect(json == (try StatusVerb.json(rows)))
        #expect(!json.contains("bot-token"))
    }

    @Test func statusHTMLWritesThePageOffline() async throws {
        let (h, targets, jobs) = try await Self.serve(jobs: 5)
        let ctx = try h.engine.makeContext()
        let page = try await DashboardPage.offline(ctx: ctx, env: ["KA_GITEA_URL": "http://gitea.example", "KA_REPO": "marfrit/kernel-agent"])
        for host in targets { #expect(page.contains("data-host=\"\(host)\"")) }
        #expect(page.components(separatedBy: "<rect class=\"bar ").count - 1 == jobs)
        #expect(!page.contains("http-equiv=\"refresh\""), "an offline file does not reload itself")
    }

    /// Headless Chromium (Debian's `chromium`, installed by scripts/setup) loads the page, screenshots it into
    /// .build/ (a CI artifact, never committed), and its DOM has a row per target host and a bar per job.
    @Test func aRealBrowserSeesARowPerHostAndABarPerJob() async throws {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        let chromium = (path.split(separator: ":").map { "\($0)/chromium" } + ["/usr/bin/chromium"]).first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let chromium else {
            Issue.record("chromium is not installed: run scripts/setup (Debian package chromium); this test does not skip")
            return
        }
        let (h, targets, jobs) = try await Self.serve(jobs: 40)
        let url = "http://127.0.0.1:\(h.serverPort)/"
        let profile = FileManager.default.temporaryDirectory.appendingPathComponent("ka-chromium-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: profile) }
        let common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                      "--user-data-dir=\(profile.path)"]
        var env = ProcessInfo.processInfo.environment
        env["HOME"] = profile.path
        let dom = try await Harness.runOffPool(common + ["--virtual-time-budget=3000", "--dump-dom", url], cwd: Harness.projectRoot, environment: env)
        #expect(dom.status == 0, "chromium --dump-dom: \(dom.stderrText.suffix(2000))")
        let text = dom.stdoutText
        for host in targets { #expect(text.contains("data-host=\"\(host)\""), "the browser's DOM has a row for \(host)") }
        #expect(text.components(separatedBy: "<article class=\"card host\"").count - 1 == targets.count)
        #expect(text.components(separatedBy: "<rect class=\"bar ").count - 1 == jobs, "one SVG bar per job in the DOM")
        #expect(!text.contains("<script"), "nothing injected runs: the note is text in the DOM")
        let shots = Harness.projectRoot.appendingPathComponent(".build/dashboard-screenshots")
        try FileManager.default.createDirectory(at: shots, withIntermediateDirectories: true)
        for (name, size) in [("desktop", "1280,2000"), ("phone", "390,2400")] {
            let file = shots.appendingPathComponent("dashboard-\(name).png")
            if FileManager.default.fileExists(atPath: file.path) { try FileManager.default.removeItem(at: file) }
            let shot = try await Harness.runOffPool(common + ["--hide-scrollbars", "--window-size=\(size)", "--screenshot=\(file.path)", url],
                                                    cwd: Harness.projectRoot, environment: env)
            #expect(shot.status == 0, "chromium --screenshot: \(shot.stderrText.suffix(2000))")
            let bytes = try Data(contentsOf: file)
            #expect(bytes.count > 10_000 && bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]), "\(name): a PNG screenshot in \(file.path)")
        }
    }
}
