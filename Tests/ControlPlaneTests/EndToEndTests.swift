import Foundation
import Testing
@testable import KAControlPlane
@testable import KernelAgent

@Suite(.serialized) struct EndToEndTests {
    @Test func promoteByCommentWithConsent() async throws {
        let h = try Harness()
        try await h.start()
        let g = h.gitea
        let issue = g.createIssue(by: "markus", title: "fresnel: take the vb2 series")
        let ask = g.comment(by: "markus", on: issue, body: "Let's go.\n/ka-promote fresnel")
        #expect(await h.settle { g.botComments(on: issue).count == 1 })
        let plan = try #require(g.botComments(on: issue).first).body
        #expect(plan.contains("`/ka-promote fresnel` will:"))
        #expect(plan.contains("resolve fleet/fresnel.yaml: 5 patch(es)"))
        #expect(plan.contains("| `fleet/fresnel.yaml` | `b2:"))
        let nonce = try #require(Harness.nonce(in: plan))
        #expect(g.withLock { g.reactions.contains { $0.0 == ask && $0.1 == "eyes" && $0.2 == "claude-noether" } })
        #expect(!FileManager.default.fileExists(atPath: h.root.appendingPathComponent("build/fresnel/v7.0").path), "nothing runs before consent")

        // someone without write permission answers: polite refusal, nothing runs
        g.comment(by: "mallory", on: issue, body: "/ka-yes \(nonce)")
        #expect(await h.settle { g.botComments(on: issue).count == 2 })
        #expect(g.botComments(on: issue)[1].body.contains("@mallory sorry, you are not allowed to approve that plan; nothing was done."))
        #expect(!FileManager.default.fileExists(atPath: h.root.appendingPathComponent("build/fresnel/v7.0").path))

        g.comment(by: "markus", on: issue, body: "/ka-yes \(nonce)")
        #expect(await h.settle { g.botComments(on: issue).last?.body.contains("✅ done") == true })
        let status = try #require(g.botComments(on: issue).last).body
        #expect(status.contains("promoted fresnel: 5 patch(es), kernel suffix -fresnel-fourier"), "\(status)")
        #expect(status.contains("manifest.lock    b2sum"))
        #expect(FileManager.default.fileExists(atPath: h.root.appendingPathComponent("build/fresnel/v7.0/manifest.lock").path))
        // one plan reply, one refusal, one status comment (edited in place): nothing more
        #expect(g.botComments(on: issue).count == 3)
        // the same consent cannot be used twice
        g.comment(by: "markus", on: issue, body: "/ka-yes \(nonce)")
        #expect(await h.settle { g.botComments(on: issue).count == 4 })
        #expect(g.botComments(on: issue)[3].body.contains("already"))
    }

    @Test func consentIsVoidWhenAPinnedInputChanges() async throws {
        let h = try Harness()
        try await h.start()
        let g = h.gitea
        let issue = g.createIssue(by: "markus", title: "ohm")
        g.comment(by: "markus", on: issue, body: "/ka-promote ohm")
        #expect(await h.settle { g.botComments(on: issue).count == 1 })
        let nonce = try #require(Harness.nonce(in: g.botComments(on: issue)[0].body))
        let patch = h.root.appendingPathComponent("patches/arch/arm64/scs-arm-neon-build-fix/0001-arm64-xor-neon-keep-ffixed-x18-with-SCS.patch")
        try (String(contentsOf: patch, encoding: .utf8) + "\n").write(to: patch, atomically: true, encoding: .utf8)
        g.comment(by: "markus", on: issue, body: "/ka-yes \(nonce)")
        #expect(await h.settle { g.botComments(on: issue).last?.body.contains("❌ failed") == true })
        let body = try #require(g.botComments(on: issue).last).body
        #expect(body.contains("consent void: pinned inputs changed since the plan"))
        #expect(body.contains("patches/arch/arm64/scs-arm-neon-build-fix/0001-arm64-xor-neon-keep-ffixed-x18-with-SCS.patch: b2:"))
        #expect(!FileManager.default.fileExists(atPath: h.root.appendingPathComponent("build/ohm/v7.0").path))
    }

    @Test func titleVerbsHelpUnknownVerbsBadArgumentsAndNo() async throws {
        let h = try Harness()
        try await h.start()
        let g = h.gitea
        let t = g.createIssue(by: "markus", title: "[ka:status] --json")
        #expect(await h.settle { g.botComments(on: t).count == 1 })
        #expect(g.botComments(on: t)[0].body.contains("`/ka-status --json` will:"))
        let i = g.createIssue(by: "markus", title: "misc")
        g.comment(by: "markus", on: i, body: "/ka-promte fresnel\n/ka-help\n/ka-promote\n/ka-abandon camp")
        #expect(await h.settle { g.botComments(on: i).count == 4 })
        let replies = g.botComments(on: i).map(\.body)
        #expect(replies[0].contains("unknown verb `/ka-promte`. Did you mean `/ka-promote`?"))
        #expect(replies[1].contains("| `/ka-migrate-tree` |"))
        #expect(replies[2].contains("Missing expected argument '<host>'"))
        #expect(replies[2].contains("USAGE: promote <host>"))
        #expect(replies[3].contains("refused without --keep-as-archive or --purge-from-fleet"))
        // /ka-no cancels a pending plan
        g.comment(by: "markus", on: i, body: "/ka-status")
        #expect(await h.settle { g.botComments(on: i).count == 5 })
        let nonce = try #require(Harness.nonce(in: g.botComments(on: i)[4].body))
        g.comment(by: "markus", on: i, body: "/ka-no \(nonce)")
        #expect(await h.settle { g.botComments(on: i).count == 6 })
        #expect(g.botComments(on: i)[5].body.contains("cancelled `/ka-status `"))
    }

    @Test func editsNeverRerunAndTheBotIgnoresItself() async throws {
        let h = try Harness()
        try await h.start()
        let g = h.gitea
        let i = g.createIssue(by: "markus", title: "x")
        g.comment(by: "claude-noether", on: i, body: "/ka-status")   // the bot quoting a command
        let c = g.comment(by: "markus", on: i, body: "/ka-help")
        #expect(await h.settle { g.botComments(on: i).count == 2 })
        // an edit arrives (webhook action "edited"): one note, no re-run
        var edited = g.withLock { g.comments[c]! }
        edited.body = "/ka-help promote"
        let payload = g.withLock { g.commentPayload(edited, action: "edited") }
        g.sendWebhook(event: "issue_comment", type: "issue_comment", payload: payload)
        #expect(await h.settle { g.botComments(on: i).count == 3 })
        #expect(g.botComments(on: i)[2].body.contains("editing a comment does not re-run its commands"))
        await h.settleAll()
        #expect(g.botComments(on: i).count == 3)
    }

    @Test func titlesThatAreNotVerbsGetNoReply() async throws {
        let h = try Harness()
        try await h.start()
        let g = h.gitea
        // other tools' conventions, block and record kinds filed by hand: none of them is a verb
        let titles = ["[ka:cli-build-out] add the build verb", "[ka:experiment] try zstd", "[ka:patch-fail] found by hand",
                      "[ka:installable] fresnel 7.0", "[ka:audit] promote ohm", "[ka:campaign-conflict] x", "[ka:dashboard]"]
        let issues = titles.map { g.createIssue(by: "markus", title: $0) }
        await Harness.waitFor("every issue's webhook") { h.metrics.get("webhook_requests_total") >= titles.count }
        await h.settleAll(poll: true)
        for (t, i) in zip(titles, issues) { #expect(g.comments(on: i).isEmpty, "\(t): \(g.comments(on: i).map(\.body))") }
        #expect(try h.ledger.readSync { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM events") } == 0, "nothing was stored to handle")
        // a verb title still works
        let verb = g.createIssue(by: "markus", title: "[ka:help]")
        #expect(await h.settle { g.botComments(on: verb).count == 1 })
    }
}
