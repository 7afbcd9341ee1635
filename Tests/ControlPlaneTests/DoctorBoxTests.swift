import Foundation
import KATestSupport
import KernelAgent
import Testing
@testable import KAControlPlane

/// `ka doctor` (issue 17) against the Gitea stand-in and the fleet-in-a-box: all pass on a good install, and each
/// fault (a wrong token, a missing webhook, labels not synced, an unreachable host) is named with its fix.
@Suite(.serialized, .holdsBoxHosts("fresnel")) struct DoctorBoxTests {
    static let hookURL = "http://127.0.0.1:8087/webhook"

    struct Report: Decodable { let ok: Bool; let checks: [DoctorCheck] }

    /// `ka doctor --json` in the harness root with the box's KA_CONFIG (or `config`) and the stand-in's Gitea.
    static func doctor(_ h: Harness, token: String = "bot-token", config: URL? = nil) async throws -> (Int32, Report, String) {
        var env = try JobBoxTests.boxEnvironment()
        env["KA_ROOT"] = h.root.path
        env["KA_STATE_DIR"] = h.root.appendingPathComponent(".ka").path
        env["KA_GITEA_URL"] = h.gitea.baseURL.absoluteString
        env["KA_REPO"] = "\(h.gitea.owner)/\(h.gitea.repo)"
        env["KA_GITEA_TOKEN"] = token
        env["KA_WEBHOOK_SECRET"] = "test-secret"
        env["KA_WEBHOOK_URL"] = hookURL
        if let config { env["KA_CONFIG"] = config.path }
        let r = try await Harness.runOffPool([ChaosTests.kaBinary, "doctor", "--json"], cwd: h.root, environment: env)
        let report = try JSONDecoder().decode(Report.self, from: Data(r.stdoutText.utf8))
        return (r.status, report, r.stderrText)
    }

    static func check(_ r: Report, _ area: String, _ name: String) -> DoctorCheck? { r.checks.first { $0.area == area && $0.name == name } }

    static func syncLabels(_ h: Harness) async throws {
        let api = DefaultGiteaClient(baseURL: h.gitea.baseURL, owner: h.gitea.owner, repo: h.gitea.repo, token: "bot-token")
        let specs = try LabelSpec.load(h.root.appendingPathComponent("labels/labels.yaml"), display: "labels/labels.yaml")
        try await LabelSync.apply(LabelSync.plan(desired: specs, current: try await api.listLabels()), api: api)
    }

    @Test func aGoodInstallPassesEveryCheck() async throws {
        let h = try Harness()
        try await h.gitea.start()
        try await Self.syncLabels(h)
        h.gitea.addHook(url: Self.hookURL, secret: "test-secret")
        let (status, report, stderr) = try await Self.doctor(h)
        let failed = report.checks.filter { !$0.ok }.map(\.rendered)
        #expect(status == 0 && report.ok, "\(failed.joined(separator: "\n"))\n\(stderr)")
        for (area, name) in [("gitea", "URL"), ("gitea", "token"), ("gitea", "repo admin"), ("gitea", "webhook"), ("gitea", "labels"),
                             ("config", "KA_CONFIG"), ("config", "host addresses"), ("checkout", "fleet registry"), ("checkout", "Scope: trailers"),
                             ("hosts", "preflight fresnel"), ("hosts", "preflight boltzmann"), ("hosts", "preflight hertz"),
                             ("signing", "signing key"), ("his", "His")] {
            #expect(Self.check(report, area, name)?.ok == true, "\(area): \(name) missing or failed")
        }
        #expect(Self.check(report, "hosts", "preflight ampere")?.detail.contains("says asleep") == true, "an on-demand host is not woken for a check")
    }

    @Test func eachFaultIsNamedWithItsFix() async throws {
        let h = try Harness()
        try await h.gitea.start()
        // no labels synced, no webhook, a wrong token, fresnel moved to an address in the box's /24 where nothing answers
        let moved = try BuildBoxTests.config(h, "moved.yaml") { text in
            text.replacingOccurrences(of: "10.213.77.14\n", with: "10.213.77.99\n").replacingOccurrences(of: "ssh:\n  dir:", with: "ssh:\n  connect_timeout: 3\n  dir:")
        }
        var (status, report, _) = try await Self.doctor(h, token: "not-a-token", config: moved)
        #expect(status == 1 && !report.ok)
        let token = try #require(Self.check(report, "gitea", "token"))
        #expect(!token.ok && token.fix?.contains("KA_GITEA_TOKEN") == true, "\(token.rendered)")
        let fresnel = try #require(Self.check(report, "hosts", "preflight fresnel"))
        #expect(!fresnel.ok && fresnel.detail.contains("10.213.77.99") && fresnel.fix != nil, "\(fresnel.rendered)")
        #expect(Self.check(report, "hosts", "preflight boltzmann")?.ok == true, "one unreachable host does not fail the others")
        // with the token right: the missing webhook and the labels
        (status, report, _) = try await Self.doctor(h)
        #expect(status == 1)
        let hook = try #require(Self.check(report, "gitea", "webhook"))
        #expect(!hook.ok && hook.detail.contains("no hook delivers to \(Self.hookURL)") && hook.fix?.contains("Webhooks") == true, "\(hook.rendered)")
        let labels = try #require(Self.check(report, "gitea", "labels"))
        #expect(!labels.ok && labels.fix == "ka labels sync --confirm", "\(labels.rendered)")
        // a hook to another URL, inactive or without comments, is still not the one
        h.gitea.addHook(url: "http://elsewhere.invalid/hook", secret: "x")
        h.gitea.addHook(url: Self.hookURL, events: ["push"], secret: "test-secret")
        (_, report, _) = try await Self.doctor(h)
        #expect(Self.check(report, "gitea", "webhook")?.detail.contains("does not send issue comments") == true)
        // the human text: ✗ lines each with a fix line, and exit 1
        var env = try JobBoxTests.boxEnvironment()
        env["KA_ROOT"] = h.root.path
        env["KA_STATE_DIR"] = h.root.appendingPathComponent(".ka").path
        env["KA_GITEA_URL"] = h.gitea.baseURL.absoluteString
        env["KA_REPO"] = "\(h.gitea.owner)/\(h.gitea.repo)"
        env["KA_GITEA_TOKEN"] = "bot-token"
        let text = try await Harness.runOffPool([ChaosTests.kaBinary, "doctor"], cwd: h.root, environment: env)
        #expect(text.status == 1 && text.stdoutText.contains("✗ gitea: webhook — KA_WEBHOOK_SECRET is not set"), "\(text.stdoutText)")
        let lines = text.stdoutText.split(separator: "\n")
        for (i, line) in lines.enumerated() where line.hasPrefix("✗ ") {
            #expect(i + 1 < lines.count && lines[i + 1].hasPrefix("    fix: "), "\(line) has no fix line")
        }
    }
}
