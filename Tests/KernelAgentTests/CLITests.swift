import Foundation
import Testing
@testable import KernelAgent

/// The real `ka` binary: exit codes, messages on stderr, argv[0] dispatch, the hard rules end to end.
@Suite struct CLITests {
    @Test func promoteRefusalExits2AndWritesNothing() async throws {
        let s = try PromoteTests.tree()
        try s.write("fleet/h1.yaml", try s.read("fleet/h1.yaml").replacingOccurrences(of: "arch/arm64/x", with: "arch/arm64/xyz"))
        let r = try await s.ka(["promote", "h1"])
        #expect(r.status == 2)
        #expect(r.stderrText.hasPrefix("ka promote: refused: fleet/h1.yaml:9:5 → include arch/arm64/xyz → no such patch dir\n  fix: did you mean 'arch/arm64/x'?"), "\(r.stderrText)")
        #expect(!s.exists("out"))
        #expect(r.stdoutText.isEmpty)
    }

    @Test func promoteSucceedsAndStatusShowsTheLock() async throws {
        let s = try PromoteTests.tree()
        let r = try await s.ka(["promote", "h1"])
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(r.stdoutText.contains("promoted h1: 6 patch(es), kernel suffix -h1"))
        #expect(r.stdoutText.contains("note: board/b1/0001-first.patch reached 2× (scope board/b1; include board/b1/0001-first.patch), applied once"))
        let st = try await s.ka(["status", "--json"])
        #expect(st.status == 0)
        let rows = try JSONDecoder().decode([StatusVerb.Row].self, from: st.stdout)
        let h1 = try #require(rows.first { $0.host == "h1" })
        #expect(h1.state == "locked")
        #expect(h1.lockedSuffix == "h1")
        #expect(h1.buildHost == "bob")
        #expect(h1.lockB2sum == Blake2b.hex(try Data(contentsOf: s.url("build/h1/v7.0/manifest.lock"))))
        // the tree changes → pending
        try s.write("patches/board/b1/0001-first.patch", try s.read("patches/board/b1/0001-first.patch").replacingOccurrences(of: "+added by", with: "+changed by"))
        let rows2 = try JSONDecoder().decode([StatusVerb.Row].self, from: try await s.ka(["status", "--json"]).stdout)
        #expect(rows2.first { $0.host == "h1" }?.state == "pending")
        let table = try await s.ka(["status"]).stdoutText
        #expect(table.split(separator: "\n").first?.hasPrefix("HOST") == true)
        #expect(table.contains("pending (tree or manifest changed since the lock; run ka promote h1)"))
    }

    @Test func dashNamesDispatchOnArgv0() async throws {
        let s = try PromoteTests.tree()
        let link = s.url("bin/ka-promote")
        try FileManager.default.createDirectory(at: s.url("bin"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: TestEnv.kaBinary)
        let r = try await s.ka(["h1"], argv0: link)
        #expect(r.status == 0, "\(r.stderrText)")
        #expect(s.exists("build/h1/v7.0/manifest.lock"))
        let help = try await s.ka(["--help"], argv0: link)
        #expect(help.stdoutText.contains("USAGE: ka promote <host>"))
    }

    @Test func verbsRefuseBadArgumentsAndDoNothing() async throws {
        let s = try PromoteTests.tree()
        // arguments are validated first
        #expect(try await s.ka(["install", "h9"]).stderrText.contains("unknown host"))
        #expect(try await s.ka(["restore-archive", "--", "-rf"]).stderrText.contains("not a job id"))
        // the build verbs that landed refuse bad input the same way, and change nothing
        let snap = s.snapshot()
        let build = try await s.ka(["build", "h1"])
        #expect(build.status == 2 && build.stderrText.contains("build/h1/v7.0/manifest.lock → no lock") && build.stderrText.contains("run ka promote h1 first"), "\(build.stderrText)")
        for args in [["keep", "job-1", "--for", "7d"], ["debug", "job-1"], ["keep", "--", "-rf"]] {
            let r = try await s.ka(args)
            #expect(r.status == 2 && r.stderrText.contains("not a job id"), "\(args): \(r.stderrText)")
        }
        let soon = try await s.ka(["keep", "h1-20261201-0800-abcd", "--for", "soon"])
        #expect(soon.status == 2 && soon.stderrText.contains("not a duration"), "\(soon.stderrText)")
        let none = try await s.ka(["debug", "h1-20261201-0800-abcd"])
        #expect(none.status == 2 && none.stderrText.contains("no such job"), "\(none.stderrText)")
        #expect(s.snapshot() == snap)
        #expect(try await s.ka(["snooze", "3", "--for", "soon"]).stderrText.contains("not a duration"))
    }

    @Test func snoozeHoldsATrackedReminderAndRefusesAnUnknownIssue() async throws {
        let s = try PromoteTests.tree()
        let unknown = try await s.ka(["snooze", "12", "--for", "6h"])
        #expect(unknown.status == 2)
        #expect(unknown.stderrText.contains("issue #12 → has no open [ka:installable] reminder"))
        let store = try SQLiteStateStore(path: s.url(".ka/state.sqlite"))
        try store.upsertReminder(issue: 12, filedAt: Date(timeIntervalSinceNow: -7200), open: true)
        #expect(try store.dueReminders(now: Date(), limit: 10).map(\.issue) == [12])
        let ok = try await s.ka(["snooze", "12", "--for", "2h"])
        #expect(ok.status == 0, "\(ok.stderrText)")
        #expect(try store.dueReminders(now: Date(), limit: 10).isEmpty)
        #expect(try store.dueReminders(now: Date(timeIntervalSinceNow: 7300), limit: 10).map(\.issue) == [12])
        #expect(try await s.ka(["reminders"]).stdoutText == "no reminders due\n")
    }

    @Test func installNeverTargetsInfraWithoutOptIn() async throws {
        let s = try PromoteTests.tree()
        let r = try await s.ka(["install", "hertz"])
        #expect(r.status == 2)
        #expect(r.stderrText.contains("'hertz' is an infra host"), "\(r.stderrText)")
    }

    @Test func neverReachesIntoHome() async throws {
        let s = try PromoteTests.tree()
        // $HOME outside the checkout (inside it, the checkout's own files would be fair game)
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("ka-home-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: home) }
        for out in ["~/ka-out", home.appendingPathComponent("ka-out").path] {
            let r = try await s.ka(["promote", "h1", "--out", out], env: ["HOME": home.path])
            #expect(r.status == 2, "\(out)")
            #expect(r.stderrText.contains("kernel-agent never reaches into $HOME"), "\(r.stderrText)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: home.path).isEmpty)
        // a symlink that leads into $HOME is caught too
        try FileManager.default.createSymbolicLink(at: s.url("sneaky"), withDestinationURL: home)
        let r = try await s.ka(["promote", "h1", "--out", "/\(s.url("sneaky").path.dropFirst())/x"], env: ["HOME": home.path])
        #expect(r.status == 2, "\(r.stderrText)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: home.path).isEmpty)
    }

    @Test func usageErrorsComeFromTheVerbsOwnParser() async throws {
        let s = try PromoteTests.tree()
        let r = try await s.ka(["abandon"])
        #expect(r.status != 0)
        #expect(r.stderrText.contains("Missing expected argument '<campaign>'"))
        #expect(r.stderrText.contains("Usage: ka abandon <campaign> [--keep-as-archive] [--purge-from-fleet]"))
        let flagless = try await s.ka(["abandon", "camp"])
        #expect(flagless.status == 2)
        #expect(flagless.stderrText.contains("refused without --keep-as-archive or --purge-from-fleet"))
    }
}
