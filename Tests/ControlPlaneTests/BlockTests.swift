import Foundation
import Testing
@testable import KAControlPlane
@testable import KernelAgent

@Suite(.serialized) struct BlockTests {
    @Test func openBlockIssuesHaltTheirPatchesAndClosingLiftsThem() async throws {
        let h = try Harness()
        try await h.start(giteaBlocks: true)
        let g = h.gitea
        let patch = "board/pinebook-pro/0002-arm64-dts-rk3399-pinebook-pro-enable-hdmi-sound.patch"
        // a block whose title looks right but has no marker is not a block; one with the marker is
        g.createIssue(by: "markus", title: "[ka:patch-fail] looks like a block", body: "no marker here")
        let block = g.createIssue(by: "markus", title: "[ka:patch-fail] hdmi sound breaks", body: "found on fresnel\n\n<!-- ka:block kind=patch-fail scope=patches=\(patch) -->")
        let issue = g.createIssue(by: "markus", title: "promote")
        g.comment(by: "markus", on: issue, body: "/ka-promote fresnel")
        #expect(await h.settle { g.botComments(on: issue).count == 1 })
        #expect(g.botComments(on: issue)[0].body.contains("blocked by open [ka:patch-fail] #\(block): [ka:patch-fail] hdmi sound breaks"))
        g.withLock { g.issues[block]?.state = "closed" }
        g.comment(by: "markus", on: issue, body: "/ka-promote fresnel")
        #expect(await h.settle { g.botComments(on: issue).count == 2 })
        #expect(g.botComments(on: issue)[1].body.contains("will:"))
    }

    @Test func applyFailuresFileOnePatchFailIssueEachIdempotently() async throws {
        let h = try Harness()
        try await h.start(giteaBlocks: true)
        let g = h.gitea
        let empty = h.root.appendingPathComponent("empty-tree")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        let issue = g.createIssue(by: "markus", title: "promote")
        g.comment(by: "markus", on: issue, body: "/ka-promote ohm --tree empty-tree")
        #expect(await h.settle { g.botComments(on: issue).count == 1 })
        let nonce = try #require(Harness.nonce(in: g.botComments(on: issue).last!.body))
        g.comment(by: "markus", on: issue, body: "/ka-yes \(nonce)")
        #expect(await h.settle { g.botComments(on: issue).last?.body.contains("❌ failed") == true })
        #expect(g.botComments(on: issue).last!.body.contains("apply check failed"))
        _ = await h.loop.outbox.drain()
        // the filed block now halts that patch; filing again finds it by its marker instead of opening another
        g.comment(by: "markus", on: issue, body: "/ka-promote ohm --tree empty-tree")
        #expect(await h.settle { g.botComments(on: issue).count == 3 })
        #expect(g.botComments(on: issue)[2].body.contains("blocked by open [ka:patch-fail] #"))
        let store = GiteaBlockStore(api: h.api, ledger: h.ledger, authorizer: h.authorizer)
        let again = try await store.file(kind: .patchFail, scope: .patches(["arch/arm64/scs-arm-neon-build-fix/0001-arm64-xor-neon-keep-ffixed-x18-with-SCS.patch"]), title: "x", body: "y")
        #expect(again.id.hasPrefix("#"))
        _ = await h.loop.outbox.drain()
        let blocks = g.withLock { g.issues.values.filter { $0.title.hasPrefix("[ka:patch-fail]") } }
        #expect(blocks.count == 1, "one block for the one failing patch, filed once: \(blocks.map(\.title))")
        #expect(blocks.first?.body.contains("<!-- ka:block kind=patch-fail scope=patches=arch/arm64/scs-arm-neon-build-fix/0001-arm64-xor-neon-keep-ffixed-x18-with-SCS.patch -->") == true)
    }

    static let hdmiPatch = "board/pinebook-pro/0002-arm64-dts-rk3399-pinebook-pro-enable-hdmi-sound.patch"

    @Test func aBlockFiledByAReadOnlyUserHaltsNothingAndGetsOneComment() async throws {
        let h = try Harness()
        try await h.start(giteaBlocks: true)
        let g = h.gitea
        let forged = g.createIssue(by: "mallory", title: "[ka:patch-fail] hdmi sound breaks",
                                   body: "<!-- ka:block kind=patch-fail scope=patches=\(Self.hdmiPatch) -->")
        let issue = g.createIssue(by: "markus", title: "promote")
        for n in 1...2 {
            g.comment(by: "markus", on: issue, body: "/ka-promote fresnel")
            #expect(await h.settle { g.botComments(on: issue).count == n })
            #expect(g.botComments(on: issue)[n - 1].body.contains("will:"), "not halted: \(g.botComments(on: issue)[n - 1].body)")
        }
        await h.settleAll()
        let notes = g.botComments(on: forged)
        #expect(notes.count == 1, "one comment on the ignored issue, however often blocks are read")
        #expect(notes.first?.body.contains("@mallory this issue carries a `[ka:patch-fail]` block marker, but a block counts only when claude-noether files it or its author may run `/ka-promote` here; it is ignored") == true,
                "\(notes.first?.body ?? "")")
    }

    @Test func theAllowlistAdmitsABlockAuthorAsItAdmitsTheirConsent() async throws {
        let h = try Harness()
        try await h.start(allow: ["promote": ["mallory", "markus"]], giteaBlocks: true)
        let g = h.gitea
        let block = g.createIssue(by: "mallory", title: "[ka:patch-fail] hdmi sound breaks",
                                  body: "<!-- ka:block kind=patch-fail scope=patches=\(Self.hdmiPatch) -->")
        let issue = g.createIssue(by: "markus", title: "promote")
        g.comment(by: "markus", on: issue, body: "/ka-promote fresnel")
        #expect(await h.settle { g.botComments(on: issue).count == 1 })
        #expect(g.botComments(on: issue)[0].body.contains("blocked by open [ka:patch-fail] #\(block)"))
        #expect(g.botComments(on: block).isEmpty)
    }

    /// A block closed, then the same kind and scope failing again (a new job): filed again, not lost to the old ref.
    @Test func aClosedBlockThatFailsAgainIsFiledAgain() async throws {
        let h = try Harness()
        try await h.start(giteaBlocks: true)
        let g = h.gitea
        let store = GiteaBlockStore(api: h.api, ledger: h.ledger, authorizer: h.authorizer)
        _ = try await store.file(kind: .signingFail, scope: .global, title: "signing failed (job fresnel-20261201-0800-0001)", body: "no key")
        _ = try await store.file(kind: .signingFail, scope: .global, title: "signing failed (job fresnel-20261201-0800-0001)", body: "no key")
        _ = await h.loop.outbox.drain()
        let first = g.withLock { g.issues.values.filter { $0.title.hasPrefix("[ka:signing-fail]") } }
        #expect(first.count == 1, "a retry of the same failure files once")
        let number = try #require(first.first?.number)
        try await store.close(id: "#\(number)")
        _ = await h.loop.outbox.drain()
        #expect(g.withLock { g.issues[number]?.state } == "closed")
        _ = try await store.file(kind: .signingFail, scope: .global, title: "signing failed (job fresnel-20261201-0900-0002)", body: "no key")
        _ = await h.loop.outbox.drain()
        let open = g.withLock { g.issues.values.filter { $0.title.hasPrefix("[ka:signing-fail]") && $0.state == "open" } }
        #expect(open.count == 1 && open.first?.number != number, "the new failure is a new issue: \(open.map(\.title))")
    }

    @Test func theBotAdoptsOnlyIssuesItAuthored() async throws {
        let h = try Harness()
        try await h.start(giteaBlocks: true)
        let g = h.gitea
        let scope = BlockScope.patches([Self.hdmiPatch])
        let ref = "block-patch-fail-\(Blake2b.hex(Data((scope.marker + "\nhdmi").utf8), digestLength: 8))"
        // someone opens an issue carrying the marker the bot's own block would carry
        let decoy = g.createIssue(by: "mallory", title: "nothing to see", body: "<!-- ka:ref=\(ref) -->")
        let store = GiteaBlockStore(api: h.api, ledger: h.ledger, authorizer: h.authorizer)
        _ = try await store.file(kind: .patchFail, scope: scope, title: "hdmi", body: "found")
        _ = await h.loop.outbox.drain()
        let filed = g.withLock { g.issues.values.filter { $0.title == "[ka:patch-fail] hdmi" } }
        #expect(filed.count == 1 && filed.first?.user.login == "claude-noether", "the bot filed its own block")
        let adopted = try h.ledger.readSync { try Int.fetchOne($0, sql: "SELECT gitea_id FROM outbox WHERE ref = ?", arguments: [ref]) }
        #expect(adopted == filed.first?.number && adopted != decoy)
        // and someone else's [ka:installable] issue gets no reminders
        let fake = g.createIssue(by: "mallory", title: "[ka:installable] fresnel 7.0-1")
        try h.engine.trackReminder(try await h.api.getIssue(fake))
        let own = g.createIssue(by: "claude-noether", title: "[ka:installable] ohm 7.0-1")
        try h.engine.trackReminder(try await h.api.getIssue(own))
        #expect(try h.engine.sweepReminders() == 1)
        _ = await h.loop.outbox.drain()
        #expect(g.botComments(on: fake).isEmpty)
        #expect(g.botComments(on: own).count == 1)
    }

    /// [ka:installable] is a record issue: ka install closes it with its outcome (a comment, then closed), once, and
    /// only when this bot filed it (a CLI build has no issue; a close of it would wait in the outbox forever).
    @Test func anInstallClosesTheInstallableIssueItFiledWithTheOutcomeOnce() async throws {
        let h = try Harness()
        try await h.start(webhook: false)
        let g = h.gitea
        let store = GiteaBlockStore(api: h.api, ledger: h.ledger, authorizer: h.authorizer)
        try await store.fileRecord(title: "[ka:installable] fresnel 7.0-1", body: "built", label: "ka:installable", ref: "installable-fresnel-1")
        #expect(await h.loop.outbox.drain() == 1)
        let issue = try #require(g.withLock { g.issues.values.first { $0.title == "[ka:installable] fresnel 7.0-1" } })
        try await store.closeRecord(ref: "installable-fresnel-1", outcome: "✅ installed and verified on fresnel")
        try await store.closeRecord(ref: "installable-fresnel-1", outcome: "✅ installed and verified on fresnel")   // a resumed step repeats it
        #expect(await h.loop.outbox.drain() == 1)
        #expect(g.withLock { g.issues[issue.number]?.state } == "closed")
        let comments = g.botComments(on: issue.number)
        #expect(comments.count == 1 && comments[0].body.hasPrefix("✅ installed and verified on fresnel"), "\(comments.map(\.body))")
        // never filed by this bot: nothing is queued
        try await store.closeRecord(ref: "installable-cli-build", outcome: "x")
        #expect(try h.ledger.hasOutboxItem(ref: "close-installable-cli-build") == false)
        #expect(try h.ledger.outboxPendingCount() == 0)
    }
}
