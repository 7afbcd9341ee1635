import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import KATestSupport
import NIOConcurrencyHelpers
import Testing
@testable import KAControlPlane
@testable import KernelAgent

/// The `[ka:dashboard]` issue and the `GET /` page (issue 10).
@Suite(.serialized) struct DashboardTests {
    static let t0 = Date(timeIntervalSince1970: 1_790_000_000)
    static let links = DashboardLinks(giteaURL: URL(string: "http://gitea.example/"), owner: "marfrit", repo: "kernel-agent")

    static func job(_ host: String, _ verb: String = "build", state: String = "succeeded", args: [String]? = nil, ago: Double,
                    took: Double = 600, status: String? = nil) -> DashboardModel.Job {
        let start = t0.addingTimeInterval(-ago)
        let id = JobID.make(subject: host, at: start, random: UInt16(ago.truncatingRemainder(dividingBy: 65_000))).value
        return DashboardModel.Job(id: id, verb: verb, arguments: args ?? [host], state: state, createdAt: start, startedAt: start,
                                  finishedAt: state == "running" ? nil : start.addingTimeInterval(took),
                                  steps: ["✓ 1. route", "✓ 2. build"], currentStep: state == "running" ? "build" : nil, statusComment: status)
    }

    static func host(_ name: String, state: String = "locked", note: String? = nil, blocks: [DashboardModel.Link] = [],
                     job: DashboardModel.Job? = nil, next: String? = nil) -> DashboardModel.Host {
        DashboardModel.Host(host: name, roles: ["target"], arch: "aarch64", note: note, state: state, detail: nil,
                            lockB2sum: "0123456789abcdef0123", lockedSuffix: "ka7", runningVersion: nil, lockedVersion: nil, lastJob: job,
                            blocks: blocks, nextReminder: nil,
                            nextCommand: next ?? DashboardSource.nextCommand(host: name, state: state, job: job))
    }

    /// Three targets, one blocked, one building; a consent and an installable waiting; signing blocked; pruning paused.
    static func fixture() -> DashboardModel {
        let building = job("ohm", state: "running", ago: 300)
        let done = job("fresnel", ago: 86_400, status: "http://gitea.example/marfrit/kernel-agent/issues/3#issuecomment-77")
        let hosts = [
            host("fresnel", state: "locked", note: "Pinebook Pro", job: done),
            host("ohm", state: "building", job: building),
            host("ampere", state: "pending", blocks: [.init(text: "[ka:build-fail] #12", url: links.issue(12)),
                                                      .init(text: "[ka:host-drifted] #14", url: links.issue(14))]),
        ]
        return DashboardModel(
            generatedAt: t0, repo: "marfrit/kernel-agent", hosts: hosts,
            buildHosts: [DashboardModel.BuildHost(host: "boltzmann", arch: "aarch64", state: "up", job: building, blocks: []),
                         DashboardModel.BuildHost(host: "ampere", arch: "aarch64", state: "asleep", job: nil, blocks: [])],
            consents: [.init(nonce: "abc123", command: "/ka-build fresnel", issue: .init(text: "#4", url: links.issue(4)), expires: t0.addingTimeInterval(3600))],
            installables: [.init(host: "ohm", version: "6.1.0-ka7-1", issue: .init(text: "#7", url: links.issue(7)), filedAt: t0.addingTimeInterval(-3 * 3600))],
            signingFail: [.init(text: "[ka:signing-fail] #9", url: links.issue(9))],
            prunePause: .init(by: "markus", at: t0.addingTimeInterval(-600)),
            jobs: [building, done], status: [])
    }

    // MARK: the issue body

    @Test func bodyShowsEveryHostRowBlockLinkAndNextCommand() {
        let body = DashboardRenderer.body(Self.fixture(), now: Self.t0)
        #expect(body.hasPrefix(DashboardRenderer.marker))
        #expect(body.contains("#### fresnel · locked"))
        #expect(body.contains("#### ohm · building"))
        #expect(body.contains("#### ampere · pending"))
        #expect(body.contains("[\\[ka:build-fail\\] \\#12](http://gitea.example/marfrit/kernel-agent/issues/12)"))
        #expect(body.contains("[\\[ka:host-drifted\\] \\#14](http://gitea.example/marfrit/kernel-agent/issues/14)"))
        #expect(body.contains("- next: `/ka-build fresnel`"))
        #expect(body.contains("- next: `/ka-promote ampere`"))
        #expect(body.contains("- next: `ka jobs show \(Self.fixture().hosts[1].lastJob!.id)`"))
        #expect(body.contains("running unknown vs locked `-ka7`"))
        #expect(body.contains("(http://gitea.example/marfrit/kernel-agent/issues/3#issuecomment-77) build ✅ succeeded"))
        #expect(body.contains("reply `/ka-yes abc123` before"))
        #expect(body.contains("`[ka:installable]` [\\#7](http://gitea.example/marfrit/kernel-agent/issues/7): ohm `6.1.0-ka7-1`, open 3 h"))
        #expect(body.contains("⛔ [\\[ka:signing-fail\\] \\#9](http://gitea.example/marfrit/kernel-agent/issues/9)"))
        #expect(body.contains("paused by markus since"))
        #expect(body.contains("- boltzmann (aarch64): up — running"))
        #expect(body.contains("step: build"))
        #expect(body.contains("- ampere (aarch64): asleep"))
        // rendering twice from the same state gives the same body (an unchanged fleet is never an edit)
        #expect(body == DashboardRenderer.body(Self.fixture(), now: Self.t0.addingTimeInterval(60)))
    }

    @Test func fiftyHostsStayUnderTheLimitAndMoreAreFolded() {
        var m = Self.fixture()
        let note = String(repeating: "a long note about the board, its quirks and its history. ", count: 4)
        m.hosts = (0..<50).map { i in Self.host("host\(i)", note: note, blocks: [.init(text: "[ka:build-fail] #\(100 + i)", url: Self.links.issue(100 + i))],
                                                 job: Self.job("host\(i)", ago: Double(i * 100))) }
        let fifty = DashboardRenderer.body(m, now: Self.t0)
        #expect(fifty.count < DashboardRenderer.maxBody)
        #expect(fifty.contains("#### host49 · locked"), "50 hosts fit with their details")
        m.hosts = (0..<200).map { i in Self.host("host\(i)", note: note, job: Self.job("host\(i)", ago: Double(i * 100))) }
        let folded = DashboardRenderer.body(m, now: Self.t0)
        #expect(folded.count < DashboardRenderer.maxBody)
        #expect(folded.contains("Details folded"))
        #expect(folded.contains("| host199 | locked |"))
        m.hosts = (0..<2000).map { i in Self.host("host\(i)") }
        let cut = DashboardRenderer.body(m, now: Self.t0)
        #expect(cut.count < DashboardRenderer.maxBody)
        #expect(cut.contains("cut at 65536 characters"))
    }

    @Test func trackerAndTreeValuesAreEscaped() {
        var m = Self.fixture()
        m.hosts[0].note = "<script>alert('note')</script> [x](javascript:alert(1)) | # hi"
        m.jobs.append(Self.job("fresnel", args: ["<script>alert('arg')</script>"], ago: 5000))
        m.hosts[0].lastJob = m.jobs.last
        m.hosts[0].blocks = [.init(text: "<img src=x onerror=alert(1)>", url: "javascript:alert(1)")]
        let body = DashboardRenderer.body(m, now: Self.t0)
        #expect(!body.contains("<script"), "no raw HTML from a note reaches the issue")
        #expect(!body.contains("<img"))
        #expect(!body.contains("](javascript:"), "no link to a javascript: URL")
        #expect(body.contains("&lt;script&gt;alert\\('note'\\)&lt;/script&gt; \\[x\\]\\(javascript:alert\\(1\\)\\) \\| \\# hi"))
        let page = DashboardPage.render(m, now: Self.t0)
        #expect(!page.contains("<script"), "the page has no script at all: none of its own, none injected")
        #expect(!page.contains("<img"))
        #expect(!page.contains("href=\"javascript:"))
        #expect(page.contains("&lt;script&gt;alert(&#39;note&#39;)&lt;/script&gt;"))
        #expect(page.contains("&lt;script&gt;alert(&#39;arg&#39;)&lt;/script&gt;"), "the job's argument is in its bar's title, escaped")
    }

    // MARK: the issue, against the Gitea stand-in

    final class Clock: Sendable {
        private let box = NIOLockedValueBox(DashboardTests.t0)
        var now: Date { box.withLockedValue { $0 } }
        func advance(_ s: Double) { box.withLockedValue { $0 = $0.addingTimeInterval(s) } }
    }

    final class Source: Sendable {
        private let box = NIOLockedValueBox(DashboardTests.fixture())
        var model: DashboardModel { box.withLockedValue { $0 } }
        func change(_ f: (inout DashboardModel) -> Void) { box.withLockedValue { f(&$0) } }
    }

    struct Stand {
        let gitea: GiteaStandIn
        let api: DefaultGiteaClient
        let dir: URL
        func ledger() throws -> Ledger { try Ledger(path: dir.appendingPathComponent("control.sqlite")) }
        func dashboard(_ ledger: Ledger, clock: Clock, source: Source) -> DashboardIssue {
            DashboardIssue(api: api, ledger: ledger, botLogin: "claude-noether", now: { clock.now }) {
                DashboardRenderer.body(source.model, now: clock.now)
            }
        }
        func count(_ method: String, _ template: String) -> Int {
            gitea.requestLog.filter { $0.method == method && $0.template == template && $0.status < 300 }.count
        }
        var edits: Int { count("PATCH", "repos/{owner}/{repo}/issues/{index}") }
        var creates: Int { count("POST", "repos/{owner}/{repo}/issues") }
        var dashboards: [GiteaStandIn.Issue] {
            gitea.withLock { gitea.issues.values.filter { $0.body.contains(DashboardRenderer.marker) && $0.user.login == "claude-noether" } }
        }
    }

    static func stand() async throws -> Stand {
        let gitea = GiteaStandIn()
        try await gitea.start()
        let api = DefaultGiteaClient(baseURL: gitea.baseURL, owner: gitea.owner, repo: gitea.repo, token: "bot-token", maxAttempts: 3, baseDelay: 0.005)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ka-dash-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return Stand(gitea: gitea, api: api, dir: dir)
    }

    @Test func anUnchangedStateMakesNoEditAndAChangeMakesOne() async throws {
        let s = try await Self.stand()
        let (clock, source) = (Clock(), Source())
        let dash = s.dashboard(try s.ledger(), clock: clock, source: source)
        #expect(await dash.tick() == .created)
        #expect(s.creates == 1)
        let afterCreate = s.gitea.requestLog.count
        clock.advance(31)
        dash.markDirty()
        #expect(await dash.tick() == .unchanged)
        clock.advance(31)
        #expect(await dash.tick() == .unchanged, "the periodic re-render finds nothing new either")
        #expect(s.edits == 0, "no edit when the rendered body is unchanged, counted at the stand-in")
        #expect(s.gitea.requestLog.count == afterCreate, "comparing the rendered body costs no request")
        source.change { $0.hosts[0].state = "installable" }
        dash.markDirty()
        clock.advance(31)
        #expect(await dash.tick() == .edited)
        #expect(s.edits == 1)
        #expect(s.dashboards.count == 1)
        #expect(s.dashboards.first?.body.contains("#### fresnel · installable") == true)
    }

    /// Issue 20: a dashboard that cannot be made (every create fails) backs off instead of paging through the
    /// repo's issues every cycle, and is made once Gitea takes it again.
    @Test func aFailingCreateBacksOffAndRecovers() async throws {
        let s = try await Self.stand()
        let (clock, source) = (Clock(), Source())
        let dash = s.dashboard(try s.ledger(), clock: clock, source: source)
        for _ in 0..<200 { s.gitea.schedule(.init(timing: .beforeWrite, kind: .status500), method: "POST", template: "repos/{owner}/{repo}/issues") }
        var failed = 0
        for _ in 0..<40 {   // 40 cycles of 31 s: 20 minutes
            if case .failed = await dash.tick() { failed += 1 }
            clock.advance(31)
        }
        let listings = s.gitea.requestLog.filter { $0.method == "GET" && $0.template == "repos/{owner}/{repo}/issues" }.count
        let served = s.gitea.faultsServed.count
        #expect(failed >= 3 && failed <= 6, "\(failed) failed updates in 40 cycles: it must back off (60 s, 120 s, … an hour)")
        #expect(served >= failed && served <= failed * 3, "each failed update is one create (the client may retry it): \(served) faults for \(failed)")
        #expect(listings <= failed * 3, "\(listings) listings for \(failed) updates")
        // Gitea takes it again: the next update after the wait makes the one dashboard
        s.gitea.withLock { s.gitea.clearScheduledFaults() }
        clock.advance(3600)
        #expect(await dash.tick() == .created)
        #expect(s.dashboards.count == 1)
    }

    @Test func aBurstOfChangesIsAtMostOneEditPer30Seconds() async throws {
        let s = try await Self.stand()
        let (clock, source) = (Clock(), Source())
        let dash = s.dashboard(try s.ledger(), clock: clock, source: source)
        #expect(await dash.tick() == .created)
        var editTimes: [Date] = []
        for i in 0..<100 {
            clock.advance(0.5)   // 100 changes in 50 s
            source.change { $0.hosts[1].detail = "change \(i)" }
            dash.markDirty()
            if await dash.tick() == .edited { editTimes.append(clock.now) }
        }
        clock.advance(30)
        if await dash.tick() == .edited { editTimes.append(clock.now) }   // the burst's last state lands after it
        #expect(s.edits == editTimes.count)
        #expect(editTimes.count >= 1 && editTimes.count <= 2, "\(editTimes.count) edits for a 50 s burst")
        for (a, b) in zip([Self.t0] + editTimes, editTimes) { #expect(b.timeIntervalSince(a) >= 30) }
        #expect(s.dashboards.first?.body.contains("change 99") == true, "the last change is shown")
    }

    @Test func restartsRenamesAndStrangersNeverMakeASecondDashboard() async throws {
        let s = try await Self.stand()
        let (clock, source) = (Clock(), Source())
        // someone else's issue with the marker and the title is not the dashboard
        s.gitea.createIssue(by: "markus", title: DashboardRenderer.title, body: DashboardRenderer.marker + "\nfake")
        let first = s.dashboard(try s.ledger(), clock: clock, source: source)
        #expect(await first.tick() == .created)
        let number = try #require(first.issueNumber)
        // a person renames it
        s.gitea.withLock { s.gitea.issues[number]?.title = "our fleet" }
        // a restart with the ledger, and one with a lost ledger: both find it by marker and author
        clock.advance(31)
        source.change { $0.hosts[0].state = "pending" }
        let restarted = s.dashboard(try s.ledger(), clock: clock, source: source)
        #expect(await restarted.tick() == .edited)
        #expect(restarted.issueNumber == number)
        try FileManager.default.removeItem(at: s.dir)
        try FileManager.default.createDirectory(at: s.dir, withIntermediateDirectories: true)
        clock.advance(31)
        source.change { $0.hosts[0].state = "locked" }
        let amnesiac = s.dashboard(try s.ledger(), clock: clock, source: source)
        #expect(await amnesiac.tick() == .edited)
        #expect(amnesiac.issueNumber == number)
        // two ticks at once (a duplicate webhook) are one update
        clock.advance(31)
        source.change { $0.hosts[0].state = "drifted" }
        amnesiac.markDirty()
        async let a = amnesiac.tick()
        async let b = amnesiac.tick()
        let both = await [a, b]
        #expect(both.filter { $0 == .edited }.count == 1, "\(both)")
        #expect(s.creates == 1, "one dashboard created over the API (the stranger's issue was made in the stand-in)")
        #expect(s.dashboards.count == 1)
        #expect(s.dashboards.first?.title == "our fleet", "the bot does not fight over the title")
    }

    @Test func aPersonsEditIsOverwrittenAndSaidOnceInAComment() async throws {
        let s = try await Self.stand()
        let (clock, source) = (Clock(), Source())
        let ledger = try s.ledger()
        let dash = s.dashboard(ledger, clock: clock, source: source)
        #expect(await dash.tick() == .created)
        let number = try #require(dash.issueNumber)
        for round in 0..<2 {
            s.gitea.withLock { s.gitea.issues[number]?.body = "/ka-build fresnel\nmy notes \(round)" }
            dash.observe(try await s.api.getIssue(number))   // what the poller or the webhook hands it
            clock.advance(31)
            #expect(await dash.tick() == .edited)
            #expect(s.dashboards.first?.body == DashboardRenderer.body(source.model, now: clock.now), "overwritten")
        }
        let notes = try ledger.readSync { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM outbox WHERE ref LIKE 'dashboard-overwrite-note-%'") ?? 0
        }
        #expect(notes == 1, "said once, however often people edit it")
        #expect(try ledger.unprocessedEvents().isEmpty, "a person's edit of the dashboard runs nothing")
    }
}
