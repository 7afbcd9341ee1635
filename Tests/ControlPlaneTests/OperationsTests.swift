import Foundation
import Testing
@testable import KAControlPlane
@testable import KernelAgent

/// Poller, outbox under failure, reminders, labels, config.
@Suite(.serialized) struct OperationsTests {
    @Test func idlePollIsOneRequestAndThePollerCatchesMissedWebhooks() async throws {
        let h = try Harness()
        try await h.start(webhook: false)
        let g = h.gitea
        for _ in 0..<30 { g.createIssue(by: "markus", title: "noise") }
        try await Task.sleep(nanoseconds: 1_100_000_000)   // the cursor moves past the noise's second
        try await h.loop.poller.pollOnce()
        let before = g.requestLog.count
        try await h.loop.poller.pollOnce()
        try await h.loop.poller.pollOnce()
        #expect(g.requestLog.count - before == 2, "idle cycles: one request each (got \(g.requestLog.suffix(4).map { "\($0.method) \($0.path)?\($0.query ?? "")" }))")
        // webhooks are lost (none configured); the poller still finds the command
        let i = g.createIssue(by: "markus", title: "poll me")
        g.comment(by: "markus", on: i, body: "/ka-help")
        #expect(await h.settle(poll: true) { g.botComments(on: i).count == 1 })
    }

    @Test func everyReplyLandsWhenGiteaFails30PercentOfCalls() async throws {
        let h = try Harness()
        try await h.start(webhook: false)
        let g = h.gitea
        let i = g.createIssue(by: "markus", title: "chaos")
        for n in 0..<40 { g.comment(by: "markus", on: i, body: n % 2 == 0 ? "/ka-help" : "/ka-status") }
        g.setChaos(.init(rate: 0.3), seed: 30)
        #expect(await h.settle(poll: true, timeout: 60) { g.botComments(on: i).count == 40 })
        g.setChaos(nil)
        await h.settleAll()
        #expect(g.faultsServed.contains { $0.fault.timing == .afterWrite }, "some faults came after the write")
        let replies = g.botComments(on: i)
        #expect(replies.count == 40, "each command answered exactly once")
        let refs = replies.compactMap { r in r.body.range(of: "ka:ref=").map { String(r.body[$0.upperBound...]) } }
        #expect(Set(refs).count == 40)
    }

    @Test func remindersEscalateAndSnoozeAndNeverFlood() async throws {
        let h = try Harness()
        try await h.start(webhook: false)
        let g = h.gitea
        let store = try SQLiteStateStore.open(Workspace(root: h.root, stateDir: h.config.stateDir))
        var issues: [Int] = []
        for _ in 0..<15 { issues.append(g.createIssue(by: "claude-noether", title: "[ka:installable] fresnel 7.0-1")) }
        for n in issues { try h.engine.trackReminder(try await h.api.getIssue(n)) }
        // first sweep: capped at 10 (reminder_cap default)
        #expect(try h.engine.sweepReminders() == 10)
        #expect(try h.engine.sweepReminders() == 5)
        #expect(try h.engine.sweepReminders() == 0)
        _ = await h.loop.outbox.drain()
        #expect(g.botComments(on: issues[0]).filter { $0.body.contains("⏰ reminder (filed)") }.count == 1)
        // +1 h is next; snooze one of them for 3 h
        #expect(try store.snoozeReminder(issue: issues[0], until: Date().addingTimeInterval(3 * 3600)))
        let due = try store.dueReminders(now: Date().addingTimeInterval(3700), limit: 100).map(\.issue)
        #expect(due.count == 14 && !due.contains(issues[0]))
        // a long outage: the next reminder skips the missed stages
        let next = ReminderRecord.nextStage(after: Date().addingTimeInterval(3 * 86400), filedAt: Date(), current: 0)
        #expect(next == 5)   // 30 h and 54 h passed unposted; 78 h is next
        // closing the issue stops it
        var closed = try await h.api.getIssue(issues[1]); closed.state = "closed"
        try h.engine.trackReminder(closed)
        #expect(!(try store.dueReminders(now: Date().addingTimeInterval(90 * 86400), limit: 100).map(\.issue).contains(issues[1])))
    }

    @Test func labelSyncFollowsProwSemantics() async throws {
        let h = try Harness()
        try await h.start(webhook: false)
        let specs = try LabelSpec.load(h.root.appendingPathComponent("labels/labels.yaml"), display: "labels/labels.yaml")
        #expect(specs.count == 10)
        _ = try await h.api.createLabel(name: "ka-audit", color: "000000", description: "old")
        _ = try await h.api.createLabel(name: "ka:regression", color: "ee0701", description: "Block: installs to this host halt until triaged")
        _ = try await h.api.createLabel(name: "unrelated", color: "123456", description: "")
        let plan = LabelSync.plan(desired: specs, current: try await h.api.listLabels())
        #expect(plan.filter { if case .rename = $0 { return true }; return false }.map(\.description) == ["rename ka-audit → ka:audit"])
        #expect(plan.filter { if case .create = $0 { return true }; return false }.count == 8)
        #expect(!plan.contains { $0.description.contains("regression") }, "in sync already")
        try await LabelSync.apply(plan, api: h.api)
        let after = try await h.api.listLabels()
        #expect(LabelSync.plan(desired: specs, current: after).isEmpty)
        #expect(after.contains { $0.name == "unrelated" }, "labels not in the file are left alone")
        #expect(!after.contains { $0.name == "ka-audit" })
    }

    @Test func configComesFromFileAndEnvironmentAndNamesWhatIsMissing() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ka-cfg-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("ka.yaml").path
        try "gitea_url: https://git.example\nrepo: marfrit/kernel-agent\nlisten: 127.0.0.1:9000\npoll_interval: \"30\"\nallow:\n  promote: [markus]\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        let c = try ControlPlaneConfig.load(file: file, env: ["KA_GITEA_TOKEN": "t", "KA_WEBHOOK_SECRET": "s", "KA_POLL_INTERVAL": "5", "KA_REPO": "a/b"])
        #expect(c.owner == "a" && c.repo == "b")
        #expect(c.pollInterval == 5)
        #expect(c.listenPort == 9000)
        #expect(c.allow["promote"] == ["markus"])
        #expect(c.webhookSecrets == [Array("s".utf8)])
        func refusal(_ env: [String: String], file: String? = nil) -> String {
            do { _ = try ControlPlaneConfig.load(file: file, env: env); return "" } catch let e as KAError { return e.description } catch { return "\(error)" }
        }
        #expect(refusal([:]).contains("missing gitea_url"))
        #expect(refusal(["KA_GITEA_URL": "https://x", "KA_REPO": "a/b"]).contains("missing KA_GITEA_TOKEN"))
        #expect(refusal(["KA_GITEA_URL": "https://x", "KA_REPO": "ab", "KA_GITEA_TOKEN": "t"]).contains("repo must be owner/name"))
        try "gitea_url: x\nrepoo: a/b\n".write(toFile: file, atomically: true, encoding: .utf8)
        #expect(refusal(["KA_GITEA_TOKEN": "t"], file: file).contains("ka.yaml:2:1: unknown key 'repoo'"))
        // One ka.yaml for the whole agent: ka serve reads its keys and leaves the transport's sections to AgentConfig.
        try "gitea_url: https://git.example\nrepo: a/b\nssh:\n  dir: /var/lib/ka/ssh\nhosts:\n  fresnel: {address: 10.0.0.2}\nsigning: {}\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try ControlPlaneConfig.load(file: file, env: ["KA_GITEA_TOKEN": "t", "KA_WEBHOOK_SECRET": "s"]).repo == "b")
    }
}
