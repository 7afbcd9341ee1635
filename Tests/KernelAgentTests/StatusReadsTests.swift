import Foundation
import NIOConcurrencyHelpers
import Testing
@testable import KernelAgent

/// `ka status` reads the state store once for all hosts (issue 11 §4): two reads per host, each its own SQLite
/// transaction, were a fifth of its time.
@Suite struct StatusReadsTests {
    /// A store that counts the per-host reads it is asked for, and otherwise is the memory store.
    final class CountingStore: StateStore, BlockStore, Sendable {
        let inner = MemoryStateStore()
        let perHostReads = NIOLockedValueBox(0)
        let batchReads = NIOLockedValueBox(0)
        let blockListings = NIOLockedValueBox(0)
        func prunePause() throws -> PrunePauseRecord? { try inner.prunePause() }
        func pausePrune(_ r: PrunePauseRecord) throws -> PrunePauseRecord { try inner.pausePrune(r) }
        func resumePrune() throws -> PrunePauseRecord? { try inner.resumePrune() }
        func recordPromotion(_ r: PromotionRecord) throws { try inner.recordPromotion(r) }
        func recordInstallable(_ r: InstallableRecord) throws { try inner.recordInstallable(r) }
        func installable(job: String) throws -> InstallableRecord? { try inner.installable(job: job) }
        func installables(_ hosts: [String]) throws -> [String: InstallableRecord] { perHostReads.withLockedValue { $0 += 1 }; return try inner.installables(hosts) }
        func promotion(host: String) throws -> PromotionRecord? { perHostReads.withLockedValue { $0 += 1 }; return try inner.promotion(host: host) }
        func setCampaign(_ name: String, status: CampaignStatus, at: Date) throws { try inner.setCampaign(name, status: status, at: at) }
        func campaign(_ name: String) throws -> CampaignRecord? { try inner.campaign(name) }
        func deleteCampaign(_ name: String) throws { try inner.deleteCampaign(name) }
        func markDrifted(host: String, reason: String, at: Date) throws { try inner.markDrifted(host: host, reason: reason, at: at) }
        func clearDrift(host: String) throws { try inner.clearDrift(host: host) }
        func drift(host: String) throws -> DriftRecord? { perHostReads.withLockedValue { $0 += 1 }; return try inner.drift(host: host) }
        func upsertReminder(issue: Int, filedAt: Date, open: Bool) throws { try inner.upsertReminder(issue: issue, filedAt: filedAt, open: open) }
        func snoozeReminder(issue: Int, until: Date) throws -> Bool { try inner.snoozeReminder(issue: issue, until: until) }
        func dueReminders(now: Date, limit: Int) throws -> [ReminderRecord] { try inner.dueReminders(now: now, limit: limit) }
        func advanceReminder(issue: Int, stage: Int, nextDue: Date) throws { try inner.advanceReminder(issue: issue, stage: stage, nextDue: nextDue) }
        func openReminders() throws -> [ReminderRecord] { try inner.openReminders() }
        func hostRecords(_ hosts: [String]) throws -> (promotions: [String: PromotionRecord], drifts: [String: DriftRecord], installables: [String: InstallableRecord]) {
            batchReads.withLockedValue { $0 += 1 }
            return try inner.hostRecords(hosts)
        }
        func openBlocks() async throws -> [Block] { blockListings.withLockedValue { $0 += 1 }; return try inner.openBlocks() }
        func file(kind: BlockKind, scope: BlockScope, title: String, body: String) throws -> Block {
            try inner.file(kind: kind, scope: scope, title: title, body: body)
        }
        func close(id: String) throws { try inner.close(id: id) }
        var installs: any InstallStore { inner.installs }
    }

    @Test func statusReadsEveryHostsRecordsInOneRead() async throws {
        let s = try PromoteTests.tree()
        let store = CountingStore()
        _ = try await PromoteVerb.parse(["h1"]).execute(in: VerbContext(workspace: s.ws, state: store, blocks: store))
        try store.markDrifted(host: "h2", reason: "kernel differs", at: Date(timeIntervalSince1970: 0))
        let ctx = VerbContext(workspace: s.ws, state: store, blocks: store)
        let rows = try await StatusVerb().rows(in: ctx)
        #expect(rows.count == 4)
        #expect(store.perHostReads.withLockedValue { $0 } == 0, "status read the store per host")
        #expect(store.batchReads.withLockedValue { $0 } == 1)
        // and what it read is what it shows
        #expect(rows.first { $0.host == "h1" }?.state == "locked")
        #expect(rows.first { $0.host == "h1" }?.lockB2sum == (try store.promotion(host: "h1"))?.lockB2sum)
        #expect(rows.first { $0.host == "h2" }?.state == "drifted")
    }

    /// The open blocks are listed once per context (a CLI run, or one phase of the bot's: the plan for consent, then
    /// the pin check and the run), not once per host or per patch; a new context lists them again, so a block
    /// filed or closed in between is seen.
    @Test func openBlocksAreListedOncePerContext() async throws {
        let s = try PromoteTests.tree()
        let store = CountingStore()
        let ctx = VerbContext(workspace: s.ws, state: store, blocks: store)
        _ = try await StatusVerb().rows(in: ctx)
        let plan = try await PromoteVerb.parse(["h1"]).plan(in: ctx)
        _ = try await PromoteVerb.parse(["h1"]).run(plan, in: ctx)
        #expect(store.blockListings.withLockedValue { $0 } == 1)
        try store.file(kind: .hostDrifted, scope: .host("h2"), title: "drifted", body: "")
        let next = VerbContext(workspace: s.ws, state: store, blocks: store)
        let rows = try await StatusVerb().rows(in: next)
        #expect(store.blockListings.withLockedValue { $0 } == 2)
        #expect(rows.first { $0.host == "h2" }?.openBlocks.count == 1, "the new context sees the block filed since")
    }

    @Test func theSQLiteStoreReadsTheSameRecordsInOneGo() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ka-status-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try SQLiteStateStore(path: dir.appendingPathComponent("state.sqlite"))
        let at = Date(timeIntervalSince1970: 1_700_000_000)
        for h in ["a", "b", "c"] {
            try store.recordPromotion(PromotionRecord(host: h, kernelSuffix: h, lockB2sum: "l-\(h)", cumulativeB2sum: "c-\(h)",
                                                      manifestB2sum: "m-\(h)", patchPaths: "x/\(h).patch", outDir: "/out/\(h)", promotedAt: at))
        }
        try store.markDrifted(host: "b", reason: "differs", at: at)
        try store.markDrifted(host: "z", reason: "not asked for", at: at)
        let batch = try store.hostRecords(["a", "b", "d"])
        #expect(batch.promotions.keys.sorted() == ["a", "b"])
        #expect(batch.drifts.keys.sorted() == ["b"])
        for h in ["a", "b", "d"] {
            #expect(batch.promotions[h] == (try store.promotion(host: h)))
            #expect(batch.drifts[h] == (try store.drift(host: h)))
        }
    }
}
