import Foundation
import NIOConcurrencyHelpers
import Testing
import KATestSupport
@testable import KernelAgent

/// migrate-tree, import, close and abandon.
@Suite struct TreeVerbTests {
    static func hashes(_ s: Sandbox) throws -> [String: [String]] { Fleet.contentHashes(s.ws, policy: try s.ctx.policy()) }

    @Test func migrateTreeMovesRewritesAndKeepsContentHashes() async throws {
        let s = try PromoteTests.tree()
        try s.write("fleet/h2.yaml", "# h2 keeps its comment\nhost: h2\nbaseline: {repo: r, ref: v7.0}\nkernel_suffix: h2\ninclude:\n  - \"board/b1/0002-second.patch\"  # quoted on purpose\n")
        let before = try Self.hashes(s)
        #expect(before["h1"]?.count == 6 && before["h2"]?.count == 1)
        _ = try await MigrateTreeVerb.parse(["--from", "board/b1", "--to", "board/b1-renamed"]).execute(in: s.ctx)
        #expect(!s.exists("patches/board/b1"))
        let moved = try s.read("patches/board/b1-renamed/0001-first.patch")
        #expect(moved.contains("\nScope: board/b1-renamed\n---\n"))
        #expect(try s.read("fleet/h1.yaml").contains("  - board/b1-renamed\n"))
        #expect(try s.read("fleet/h1.yaml").contains("  - board/b1-renamed/0001-first.patch"))
        #expect(try s.read("fleet/h2.yaml") == "# h2 keeps its comment\nhost: h2\nbaseline: {repo: r, ref: v7.0}\nkernel_suffix: h2\ninclude:\n  - \"board/b1-renamed/0002-second.patch\"  # quoted on purpose\n")
        #expect(try Self.hashes(s) == before)
        // the moved patches still pass the scope rule: promote works
        _ = try await PromoteVerb.parse(["h1"]).execute(in: s.ctx)
    }

    @Test func theSeedCaseStaleIncludeRefusesAndMigrateTreePreventsIt() async throws {
        // What happened: the dir was renamed by a merge, ohm.yaml kept the old include → promote exit 2.
        let s = try Sandbox()
        let text = try s.read("fleet/ohm.yaml")
        try s.write("fleet/ohm.yaml", text.replacingOccurrences(of: "arch/arm64/scs-arm-neon-build-fix", with: "arch/arm64/xor-neon-ffixed-x18-scs-build-fix-danctnix"))
        do {
            _ = try await PromoteVerb.parse(["ohm"]).execute(in: s.ctx); Issue.record("stale include must refuse")
        } catch let e as KAError {
            #expect(e.exitCode == 2)
            #expect(e.message.hasPrefix("fleet/ohm.yaml:") && e.message.hasSuffix("→ include arch/arm64/xor-neon-ffixed-x18-scs-build-fix-danctnix → no such patch dir"), "\(e.message)")
            #expect(e.hint?.contains("did you mean 'arch/arm64/scs-arm-neon-build-fix'") == true, "\(e.hint ?? "")")
        }
        // The atomic way: start from the old name, rename with migrate-tree; the include follows.
        let t = try Sandbox()
        _ = try await MigrateTreeVerb.parse(["--from", "arch/arm64/scs-arm-neon-build-fix", "--to", "arch/arm64/xor-neon-ffixed-x18-scs-build-fix-danctnix"]).execute(in: t.ctx)
        let before = try Self.hashes(t)
        _ = try await MigrateTreeVerb.parse(["--from", "arch/arm64/xor-neon-ffixed-x18-scs-build-fix-danctnix", "--to", "arch/arm64/scs-arm-neon-build-fix"]).execute(in: t.ctx)
        #expect(try t.read("fleet/ohm.yaml") == text)
        #expect(try Self.hashes(t) == before)
        _ = try await PromoteVerb.parse(["ohm"]).execute(in: t.ctx)
    }

    @Test func migrateTreeIsAllOrNothingWhenAStepFails() async throws {
        let s = try PromoteTests.tree()
        try s.write("fleet/h2.yaml", "host: h2\nbaseline: {repo: r, ref: v7.0}\nkernel_suffix: h2\ninclude: [board/b1/0002-second.patch]\n")
        let snapshot = s.snapshot()
        // count the steps once, then fail at each of them in turn (including the final verify)
        final class Steps: Sendable {
            private let list = NIOLockedValueBox<[String]>([])
            var names: [String] { list.withLockedValue { $0 } }
            func append(_ name: String) { list.withLockedValue { $0.append(name) } }
        }
        let probe = try PromoteTests.tree()
        try probe.write("fleet/h2.yaml", "host: h2\nbaseline: {repo: r, ref: v7.0}\nkernel_suffix: h2\ninclude: [board/b1/0002-second.patch]\n")
        let steps = Steps()
        _ = try await MigrateTreeVerb.parse(["--from", "board/b1", "--to", "board/b2"]).execute(in: probe.ctx(faults: { steps.append($0) }))
        #expect(steps.names.count == 6)   // move, 2 patch rewrites, 2 manifests, verify
        for failAt in steps.names {
            struct Injected: Error {}
            do {
                _ = try await MigrateTreeVerb.parse(["--from", "board/b1", "--to", "board/b2"])
                    .execute(in: s.ctx(faults: { if $0 == failAt { throw Injected() } }))
                Issue.record("no failure at \(failAt)")
            } catch let e as KAError {
                #expect(e.message.hasPrefix("rolled back, nothing changed"), "\(e.message)")
            }
            #expect(s.snapshot() == snapshot, "tree changed after a failure at \(failAt)")
            let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: s.url(".ka/txn").path)) ?? []
            #expect(leftovers.isEmpty)
        }
    }

    @Test func anInterruptedMigrationIsRolledBackOnTheNextRun() throws {
        let s = try PromoteTests.tree()
        let snapshot = s.snapshot()
        // simulate kill -9 after step 2: run the steps by hand without the rollback
        let txn = TreeTransaction(s.ws)
        txn.add(.move(from: "patches/board/b1", to: "patches/board/zz"))
        txn.add(.write(path: "fleet/h1.yaml", data: Data("garbage".utf8)))
        txn.add(.write(path: "fleet/h9.yaml", data: Data("new".utf8)))
        struct Crash: Error {}
        // commit() rolls back on error; to model a crash, copy the journal before the rollback runs
        let crashDir = s.url("crash")
        #expect(throws: KAError.self) {
            try txn.commit(faults: { step in
                if step.hasPrefix("step 3/") {
                    try FileManager.default.copyItem(at: s.url(".ka/txn"), to: crashDir)
                    throw Crash()
                }
            })
        }
        // put the half-done state back as a crash would have left it, then recover
        #expect(s.snapshot() == snapshot)
        try FileManager.default.moveItem(at: s.url("patches/board/b1"), to: s.url("patches/board/zz"))
        try s.write("fleet/h1.yaml", "garbage")
        try FileManager.default.removeItem(at: s.url(".ka/txn"))
        try FileManager.default.moveItem(at: crashDir, to: s.url(".ka/txn"))
        // the next holder of the tree lock recovers it (the journal's owner is dead: it holds no lock)
        let lock = try TreeLock.acquire(s.ws, access: .read, state: s.store, holder: "test")
        lock.release()
        let left = (try? FileManager.default.contentsOfDirectory(atPath: s.url(".ka/txn").path)) ?? []
        #expect(left.isEmpty, "journals left: \(left)")
        #expect(s.snapshot() == snapshot)
    }

    @Test func migrateTreeRefusals() async throws {
        let s = try PromoteTests.tree()
        for (args, expected) in [
            (["--from", "board/nope", "--to", "board/x"], "--from board/nope → no such patch dir under patches/"),
            (["--from", "board/b1", "--to", "soc/rockchip"], "--to soc/rockchip → already exists"),
            (["--from", "board/b1", "--to", "board/b1/sub"], "one lies inside the other"),
            (["--from", "board/b1", "--to", "../x"], "escapes patches/"),
            (["--from", "board/b1", "--to", "misc/x"], "unscoped"),
        ] {
            let snap = s.snapshot()
            do { _ = try await MigrateTreeVerb.parse(args).execute(in: s.ctx); Issue.record("\(args) did not refuse") }
            catch let e as KAError { #expect(e.message.contains(expected), "\(e.message)"); #expect(e.exitCode == 2) }
            #expect(s.snapshot() == snap)
        }
    }

    // MARK: import

    func campaignCheckout(_ s: Sandbox) throws -> URL {
        try s.write("campaigns/besser/out/0001-a.patch", Sandbox.mail(subject: "a", trailers: ["Signed-off-by: m <m@r>"],
            diff: Sandbox.diff(file: "drivers/staging/bes2600/a.c", lines: PromoteTests.baseLines, at: 10, added: "a")))
        try s.write("campaigns/besser/out/0002-b.patch", Sandbox.mail(subject: "b", trailers: ["Signed-off-by: m <m@r>", "Campaign: besser"],
            diff: Sandbox.diff(file: "drivers/staging/bes2600/b.c", lines: PromoteTests.baseLines, at: 10, added: "b")))
        try s.write("campaigns/besser/notes.txt", "not a patch")
        return s.url("campaigns/besser")
    }

    @Test func importAddsTrailersThatGitSeesAndIsIdempotent() async throws {
        let s = try PromoteTests.tree()
        let checkout = try campaignCheckout(s)
        _ = try await ImportVerb.parse(["besser", "out/*.patch", "--to", "driver/bes2600", "--checkout", checkout.path]).execute(in: s.ctx)
        let a = try s.read("patches/driver/bes2600/0001-a.patch")
        let git = try await TestCommand.run(["git", "interpret-trailers", "--parse"], stdin: Data(a.utf8))
        #expect(git.stdoutText == "Signed-off-by: m <m@r>\nCampaign: besser\nScope: driver/bes2600\n")
        let b = try s.read("patches/driver/bes2600/0002-b.patch")
        #expect(b.contains("Campaign: besser\nScope: driver/bes2600\n---"))
        #expect(try s.store.campaign("besser")?.status == .active)
        // the whole mail still applies with git am semantics: the diff is untouched
        #expect(PatchFile(bytes: Data(a.utf8)).contentHash == PatchFile(bytes: try Data(contentsOf: checkout.appendingPathComponent("out/0001-a.patch"))).contentHash)
        // again: a no-op
        let snap = s.snapshot()
        let (_, again) = try await ImportVerb.parse(["besser", "out/*.patch", "--to", "driver/bes2600", "--checkout", checkout.path]).execute(in: s.ctx)
        #expect(again.text.contains("imported 0 patch(es)"))
        #expect(s.snapshot() == snap)
    }

    @Test func importRefusesConflictingTrailersAndLandsNothing() async throws {
        let s = try PromoteTests.tree()
        let checkout = try campaignCheckout(s)
        try s.write("campaigns/besser/out/0003-c.patch", Sandbox.mail(subject: "c", trailers: ["Scope: driver/other"],
            diff: Sandbox.diff(file: "x.c", lines: PromoteTests.baseLines, at: 10, added: "c")))
        let snap = s.snapshot()
        do {
            _ = try await ImportVerb.parse(["besser", "out/*.patch", "--to", "driver/bes2600", "--checkout", checkout.path]).execute(in: s.ctx)
            Issue.record("must refuse")
        } catch let e as KAError {
            #expect(e.message == "besser:out/0003-c.patch → carries 'Scope: driver/other', not driver/bes2600")
        }
        #expect(s.snapshot() == snap, "0001 and 0002 must not land when 0003 is refused")
        for (args, expected) in [
            (["besser", "notes.txt", "--to", "driver/x"], "not a patch (no diff in it)"),
            (["besser", "nothing*", "--to", "driver/x"], "matches no file"),
            (["besser", "../x", "--to", "driver/x"], "without '..'"),
            (["bad name", "out/*", "--to", "driver/x"], "not a valid campaign name"),
            (["besser", "out/0001-a.patch", "--to", "nowhere/x"], "unscoped"),
        ] {
            do { _ = try await ImportVerb.parse(args + ["--checkout", checkout.path]).execute(in: s.ctx); Issue.record("\(args)") }
            catch let e as KAError { #expect(e.message.contains(expected), "\(e.message)") }
        }
    }

    // MARK: close / abandon

    @Test func closeRecordsSuccessAndNeverPromotes() async throws {
        let s = try PromoteTests.tree()
        let (plan, out) = try await CloseVerb.parse(["camp", "--status", "success"]).execute(in: s.ctx)
        #expect(try s.store.campaign("camp")?.status == .closedSuccess)
        #expect(plan.steps.last == "hosts carrying it: h1 (promote them yourself)")
        #expect(out.text.contains("closed campaign camp"))
        #expect(!s.exists("out"), "close must not promote")
        await #expect(throws: KAError.self) { try await CloseVerb.parse(["nobody", "--status", "success"]).execute(in: s.ctx) }
        #expect(throws: (any Error).self) { try CloseVerb.parse(["camp", "--status", "great"]) }
    }

    @Test func abandonRefusesWithoutExactlyOneFlag() async throws {
        let s = try PromoteTests.tree()
        let snap = s.snapshot()
        for args in [["camp"], ["camp", "--keep-as-archive", "--purge-from-fleet"]] {
            do { _ = try await AbandonVerb.parse(args).execute(in: s.ctx); Issue.record("\(args)") }
            catch let e as KAError { #expect(e.exitCode == 2); #expect(e.message.hasPrefix("abandon → ")) }
        }
        #expect(s.snapshot() == snap)
        _ = try await AbandonVerb.parse(["camp", "--keep-as-archive"]).execute(in: s.ctx)
        #expect(s.snapshot() == snap)
        #expect(try s.store.campaign("camp")?.status == .abandonedArchived)
    }

    @Test func purgeRemovesPatchesAndIncludesAndMarksHostsDrifted() async throws {
        let s = try PromoteTests.tree()
        // one patch of another campaign stays in board/b1; the soc and arch dirs are all "camp"
        try s.write("patches/board/b1/0003-keep.patch", Sandbox.mail(subject: "keep", trailers: ["Campaign: keep", "Scope: board/b1"],
            diff: Sandbox.diff(file: "src/z.c", lines: PromoteTests.baseLines, at: 10, added: "z")))
        try s.write("fleet/h2.yaml", "host: h2\nbaseline: {repo: r, ref: v7.0}\nkernel_suffix: h2\nscopes: [board/b1]\n")
        try s.write("fleet/hosts.yaml", Sandbox.miniRegistry)
        _ = try await PromoteVerb.parse(["h1"]).execute(in: s.ctx)
        _ = try await AbandonVerb.parse(["camp", "--purge-from-fleet"]).execute(in: s.ctx)
        #expect(try PatchTree(s.ws).allPatches().map(\.value) == ["board/b1/0003-keep.patch"])
        let h1 = try s.read("fleet/h1.yaml")
        #expect(h1.contains("  - board/b1\n") && !h1.contains("soc/rockchip") && !h1.contains("arch/arm64/x") && !h1.contains("0001-first"))
        #expect(try s.store.drift(host: "h1") != nil)
        #expect(try s.store.drift(host: "h2") != nil)
        #expect(try s.store.campaign("camp")?.status == .abandonedPurged)
        let rows = try await StatusVerb.parse([]).rows(in: s.ctx)
        #expect(rows.first { $0.host == "h1" }?.state == "drifted")
        // every manifest still resolves
        _ = try await PromoteVerb.parse(["h1"]).execute(in: s.ctx)
    }

    @Test func purgeRollsBackWhenAStepFails() async throws {
        let s = try PromoteTests.tree()
        let snap = s.snapshot()
        struct Injected: Error {}
        await #expect(throws: KAError.self) {
            try await AbandonVerb.parse(["camp", "--purge-from-fleet"]).execute(in: s.ctx(faults: { if $0.hasPrefix("step 4/") { throw Injected() } }))
        }
        #expect(s.snapshot() == snap)
        #expect(try s.store.drift(host: "h1") == nil)
    }
}
