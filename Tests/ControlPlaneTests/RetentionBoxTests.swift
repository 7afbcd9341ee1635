import Foundation
import KATestSupport
import KernelAgent
import Testing

/// Retention on the fleet-in-a-box (issue 9 §3–4): `ka prune` over real ssh against boltzmann's build dirs and
/// hertz's backups, archive and published logs, with a kept job, a pause, a 6- and an 8-day-old backup and the
/// newest-backup rule; then `ka restore-archive` and `ka debug` on the restored tree. Things are aged by their
/// mtimes on the hosts (what prune reads there); the rules' own clock is tested in RetentionTests. The box's hosts
/// are shared, so these run one at a time, and every name they make is their own (fresh job ids, backup hosts
/// named retain-*), removed at the end.
@Suite(.serialized) struct RetentionBoxTests {
    static var boxDir: URL { BuildBoxTests.boxDir }
    static let root = "/srv/kernel-agent"
    static let archiveDir = "/sparfuxdata/kernel-agent-archive"
    static let backupsDir = "/sparfuxdata/kernel-agent-backups"
    static let logsDir = "/srv/packages/logs"

    /// A path on a box host, seen from here (each host's /srv, /sparfuxdata are bind mounts of these dirs).
    static func onHost(_ host: String, _ path: String) -> URL { boxDir.appendingPathComponent("hosts/\(host)/fs\(path)") }

    /// The box's ka.yaml, with the log host when the running box's file predates it, and without the sections of
    /// stages this branch does not read (a box brought up by a newer fleet-box writes them).
    static func config(_ h: Harness) throws -> URL {
        try BuildBoxTests.config(h, "retain.yaml") { text in
            var keep = true
            let known = text.split(separator: "\n", omittingEmptySubsequences: false).filter { line in
                if let first = line.first, first != " ", first != "#", let colon = line.firstIndex(of: ":") {
                    keep = AgentConfig.topLevelKeys.contains(String(line[..<colon]))
                }
                return keep
            }.joined(separator: "\n")
            return known.contains("\nlogs:") ? known : known + "\nlogs:\n  host: hertz\n  dir: \(logsDir)\n  url: http://hertz:8080/logs\n"
        }
    }

    static func ka(_ h: Harness, _ args: [String]) async throws -> TestCommand.Result {
        try await BuildBoxTests.ka(h, args, config: try config(h))
    }

    static func store(_ h: Harness) throws -> SQLiteStateStore {
        try SQLiteStateStore.open(Workspace(root: h.root, stateDir: h.root.appendingPathComponent(".ka")))
    }

    /// Makes `files` under `path` on `host`, owned by the build user like the dir above it, with the dir's mtime
    /// `daysOld` days back.
    static func make(_ host: String, _ path: String, files: [String: String], daysOld: Double = 0) async throws {
        let dir = onHost(host, path)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for (name, text) in files { try Data(text.utf8).write(to: dir.appendingPathComponent(name)) }
        let owner = onHost(host, (path as NSString).deletingLastPathComponent)
        let chown = try await TestCommand.run(["chown", "-R", "--reference=\(owner.path)", dir.path])
        #expect(chown.status == 0, "\(chown.stderrText)")
        try age(host, path, daysOld)
    }

    static func age(_ host: String, _ path: String, _ days: Double) throws {
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-days * 86400)], ofItemAtPath: onHost(host, path).path)
    }

    static func exists(_ host: String, _ path: String) -> Bool { FileManager.default.fileExists(atPath: onHost(host, path).path) }

    /// A build job of this harness's state dir, as `ka build` leaves it: its record, its log and its build-host note.
    static func job(_ h: Harness, state: JobState, inKeep: Bool = false) throws -> JobID {
        let id = JobID.make(subject: "fresnel", at: Date())
        var record = JobRecord(id: id, verb: "build", arguments: ["fresnel"], pins: [], lanes: ["host:fresnel"], origin: .cli(user: "test"),
                               steps: ["build"], at: Date())
        record.state = state
        record.finishedAt = Date()
        try store(h).jobs.insert(record)
        let dir = h.root.appendingPathComponent(".ka/jobs/\(id)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data("2026-12-01T10:00:00.000Z ka| the build of \(id)\n".utf8).write(to: dir.appendingPathComponent("log"))
        try Data("boltzmann\n".utf8).write(to: dir.appendingPathComponent("build-host"))
        if inKeep { try Data("boltzmann:\(root)/keep/\(id)\n".utf8).write(to: dir.appendingPathComponent("tree")) }
        return id
    }

    /// Removes what a test made on the hosts (cleanup after its assertions; a leftover shows in the next run's listing).
    static func remove(_ host: String, _ paths: [String]) {
        for p in paths { _ = try? FileManager.default.removeItem(at: onHost(host, p)) }
    }

    /// The logs a prune published for this state dir's jobs.
    static func publishedLogs(_ h: Harness) throws -> [String] {
        let jobs = try FileManager.default.contentsOfDirectory(atPath: h.root.appendingPathComponent(".ka/jobs").path)
        return jobs.map { "\(logsDir)/\($0.split(separator: "-").dropLast(3).joined(separator: "-"))/\($0)" }
    }

    @Test func pruneArchivesKeepsPausesAndLeavesEachHostsNewestBackup() async throws {
        let h = try Harness()
        let tag = String(UInt32.random(in: 0 ... .max), radix: 16)
        let ok = try Self.job(h, state: .succeeded)
        let kept = try Self.job(h, state: .failed, inKeep: true)
        let old = try Self.job(h, state: .failed, inKeep: true)
        try await Self.make("boltzmann", "\(Self.root)/source/\(ok)", files: [".ka-env": "KA_MARK=\(tag)\n", "marker": "built \(ok)\n"])
        try await Self.make("boltzmann", "\(Self.root)/output/\(ok)", files: ["linux-fresnel-7.0-1-aarch64.pkg.tar.zst": "pkg"])
        try await Self.make("boltzmann", "\(Self.root)/keep/\(kept)", files: ["marker": "failed"])
        try await Self.make("boltzmann", "\(Self.root)/keep/\(old)", files: ["marker": "failed"], daysOld: 15)
        let keep = try await Self.ka(h, ["keep", kept.value])
        #expect(keep.status == 0, "\(keep.stdoutText)\n\(keep.stderrText)")
        try Self.age("boltzmann", "\(Self.root)/keep/\(kept)", 20)   // kept, and past the 14 days a failed build gets
        if !Self.exists("hertz", Self.backupsDir) { try await Self.make("hertz", Self.backupsDir, files: [:]) }
        let a = "\(Self.backupsDir)/retain-\(tag)a", b = "\(Self.backupsDir)/retain-\(tag)b"
        try await Self.make("hertz", a, files: [:])
        try await Self.make("hertz", b, files: [:])
        try await Self.make("hertz", "\(a)/7.0-1", files: ["Image": "old"], daysOld: 8)
        try await Self.make("hertz", "\(a)/7.0-2", files: ["Image": "newer"], daysOld: 6)
        try await Self.make("hertz", "\(b)/7.0-1", files: ["Image": "only"], daysOld: 30)
        let made = ["\(Self.root)/source/\(ok)", "\(Self.root)/output/\(ok)", "\(Self.root)/keep/\(kept)", "\(Self.root)/keep/\(old)"]
        defer {
            Self.remove("boltzmann", made)
            Self.remove("hertz", [a, b, "\(Self.archiveDir)/\(ok)"] + ((try? Self.publishedLogs(h)) ?? []))
        }

        // Paused: prune reaches no host, says so, and ka status shows who paused it.
        let pause = try await Self.ka(h, ["pause-prune", "--reason", "box test"])
        #expect(pause.status == 0 && pause.stdoutText.contains("pruning is paused by"), "\(pause.stdoutText)\n\(pause.stderrText)")
        let status = try await Self.ka(h, ["status"])
        #expect(status.stdoutText.contains("pruning: paused by") && status.stdoutText.contains("(box test)"), "\(status.stdoutText)")
        let paused = try await Self.ka(h, ["prune"])
        #expect(paused.status == 0 && paused.stdoutText.contains("nothing was archived or removed"), "\(paused.stdoutText)\n\(paused.stderrText)")
        for p in made { #expect(Self.exists("boltzmann", p), "\(p) was removed while paused") }
        #expect(Self.exists("hertz", "\(a)/7.0-1"), "a backup was removed while paused")

        // Resumed: a dry run lists what and why, and changes nothing.
        #expect(try await Self.ka(h, ["resume-prune"]).stdoutText.contains("pruning resumed"))
        let dry = try await Self.ka(h, ["prune", "--dry-run"])
        #expect(dry.status == 0, "\(dry.stdoutText)\n\(dry.stderrText)")
        let listed = dry.stdoutText
        for line in ["archive boltzmann:\(Self.root)/source/\(ok) — build succeeded",
                     "remove boltzmann:\(Self.root)/output/\(ok) — build succeeded",
                     "remove boltzmann:\(Self.root)/keep/\(old) — failed build, 15 days old (kept 14 days)",
                     "leave boltzmann:\(Self.root)/keep/\(kept) — kept forever (ka keep)",
                     "remove hertz:\(a)/7.0-1 — backup 8 days old (kept 7 days)",
                     "leave hertz:\(a)/7.0-2 — the newest backup of retain-\(tag)a (6 days old)",
                     "leave hertz:\(b)/7.0-1 — the newest backup of retain-\(tag)b (30 days old)"] {
            #expect(listed.contains(line), "missing: \(line)\n\(listed)")
        }
        for p in made { #expect(Self.exists("boltzmann", p), "the dry run removed \(p)") }

        // The prune: the succeeded build is archived (checked on hertz) and its dirs go; the kept job and the newest
        // backups stay; the old failed build and the 8-day-old backup go; the build's log is published.
        let run = try await Self.ka(h, ["prune"])
        #expect(run.status == 0, "\(run.stdoutText)\n\(run.stderrText)")
        #expect(!Self.exists("boltzmann", "\(Self.root)/source/\(ok)") && !Self.exists("boltzmann", "\(Self.root)/output/\(ok)"))
        #expect(Self.exists("boltzmann", "\(Self.root)/keep/\(kept)/.ka-keep"), "the kept job was removed")
        #expect(!Self.exists("boltzmann", "\(Self.root)/keep/\(old)"))
        #expect(!Self.exists("hertz", "\(a)/7.0-1"))
        #expect(Self.exists("hertz", "\(a)/7.0-2") && Self.exists("hertz", "\(b)/7.0-1"))
        for f in ["tree.tar.gz", "logs.tar.gz", "job.json", "b2sums", ".complete"] {
            #expect(Self.exists("hertz", "\(Self.archiveDir)/\(ok)/\(f)"), "the archive lacks \(f)")
        }
        let tree = try await TestCommand.run(["tar", "-xzOf", Self.onHost("hertz", "\(Self.archiveDir)/\(ok)/tree.tar.gz").path, "\(ok)/marker"])
        #expect(tree.stdoutText == "built \(ok)\n", "\(tree.stdoutText) \(tree.stderrText)")
        let published = Self.onHost("hertz", "\(Self.logsDir)/fresnel/\(ok)/log.txt")
        let local = try String(contentsOf: h.root.appendingPathComponent(".ka/jobs/\(ok)/log"), encoding: .utf8)
        #expect(try String(contentsOf: published, encoding: .utf8) == local, "the log on the log host differs from the job's")
        // served by the log host's web server, at the link the status comment gives
        let served = try await JobBoxTests.inHost("fresnel", ["python3", "-c", "import sys,urllib.request;sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())",
                                                              "http://hertz:8080/logs/fresnel/\(ok)/log.txt"])
        #expect(served.stdoutText == local, "\(served.stdoutText)\n\(served.stderrText)")
        // a second prune finds nothing more of this test's to remove
        let again = try await Self.ka(h, ["prune", "--dry-run"])
        #expect(!again.stdoutText.contains(ok.value) && !again.stdoutText.contains("remove hertz:\(a)"), "\(again.stdoutText)")
    }

    @Test func restoreArchiveBringsTheTreeBackForKaDebug() async throws {
        let h = try Harness()
        let tag = String(UInt32.random(in: 0 ... .max), radix: 16)
        let ok = try Self.job(h, state: .succeeded)
        try await Self.make("boltzmann", "\(Self.root)/source/\(ok)", files: [".ka-env": "KA_MARK=restored-\(tag)\n", "marker": "built \(ok)\n"])
        let other = try Harness()   // another state dir: the job's record and logs come back from the archive
        defer {
            Self.remove("boltzmann", ["\(Self.root)/source/\(ok)", "\(Self.root)/output/\(ok)"])
            Self.remove("hertz", ["\(Self.archiveDir)/\(ok)"] + ((try? Self.publishedLogs(h)) ?? []) + ((try? Self.publishedLogs(other)) ?? []))
        }
        let pruned = try await Self.ka(h, ["prune"])
        #expect(pruned.status == 0, "\(pruned.stdoutText)\n\(pruned.stderrText)")
        #expect(!Self.exists("boltzmann", "\(Self.root)/source/\(ok)"), "\(pruned.stdoutText)")
        let gone = try await Self.ka(other, ["debug", ok.value])
        #expect(gone.status == 2 && gone.stderrText.contains("no such job"), "\(gone.stderrText)")

        let restored = try await Self.ka(other, ["restore-archive", ok.value])
        #expect(restored.status == 0, "\(restored.stdoutText)\n\(restored.stderrText)")
        #expect(restored.stdoutText.contains("ka debug \(ok)"), "\(restored.stdoutText)")
        #expect(Self.exists("boltzmann", "\(Self.root)/source/\(ok)/.ka-keep"), "the restored tree is not kept from pruning")
        #expect(FileManager.default.fileExists(atPath: other.root.appendingPathComponent(".ka/jobs/\(ok)/log").path), "the job's log was not restored")
        let debug = try await Self.ka(other, ["debug", ok.value, "--exec", "sh", "-c", "echo \"$KA_MARK\"; cat marker"])
        #expect(debug.status == 0, "\(debug.stderrText)")
        #expect(debug.stdoutText == "restored-\(tag)\nbuilt \(ok)\n", "\(debug.stdoutText)")
        let shell = try await Self.ka(other, ["debug", ok.value])
        #expect(shell.stdoutText.contains("boltzmann:\(Self.root)/source/\(ok)"), "\(shell.stdoutText)")
        // a second restore leaves the tree as it is
        let twice = try await Self.ka(other, ["restore-archive", ok.value])
        #expect(twice.status == 0 && twice.stdoutText.contains("was there already"), "\(twice.stdoutText)\n\(twice.stderrText)")
        // a job without an archive is refused, naming where it looked
        let none = try await Self.ka(other, ["restore-archive", JobID.make(subject: "fresnel", at: Date()).value])
        #expect(none.status != 0 && (none.stdoutText + none.stderrText).contains("has no complete archive in hertz:\(Self.archiveDir)/"), "\(none.stdoutText)\n\(none.stderrText)")
    }

    /// `ka serve` on the box with this suite's config (the log host).
    static func serve(_ h: Harness) async throws -> ChaosTests.Server {
        let g = h.gitea
        try await g.start()
        let port = ChaosTests.freePort()
        g.webhookURL = URL(string: "http://127.0.0.1:\(port)/webhook")
        var env = ChaosTests.serveEnvironment(h, port: port).merging(try JobBoxTests.boxEnvironment()) { a, _ in a }
        env["KA_CONFIG"] = try config(h).path
        let server = ChaosTests.Server(port: port, env: env, log: h.root.appendingPathComponent("serve.log"))
        try await server.start()
        try await Task.sleep(nanoseconds: 1_100_000_000)   // as JobBoxTests.serve: the poller's first cursor is "now"
        return server
    }

    static func done(_ h: Harness, _ issue: Int) async throws -> String {
        do {
            try await JobBoxTests.waitFor("the final reply", timeout: 60) {
                h.gitea.botComments(on: issue).contains { $0.body.contains("✅ done") || $0.body.contains("❌") }
            }
        } catch {
            Issue.record("bot comments: \(h.gitea.botComments(on: issue).map(\.body))")
            throw error
        }
        return h.gitea.botComments(on: issue).last { $0.body.contains("✅ done") || $0.body.contains("❌") }?.body ?? ""
    }

    /// Through the bot: the pause names the commenter, a paused prune says so, and the job's status comment links
    /// its log on the log host, which is there.
    @Test func theBotsPauseNamesWhoAndItsJobCommentLinksThePublishedLog() async throws {
        let h = try Harness()
        let server = try await Self.serve(h)
        defer { server.killNow() }
        let paused = try await Self.done(h, try await JobBoxTests().approve(h, "/ka-pause-prune --reason \"bot test\""))
        #expect(paused.contains("✅ done") && paused.contains("pruning is paused by markus since") && paused.contains("(bot test)"), "\(paused)")
        let pruned = try await Self.done(h, try await JobBoxTests().approve(h, "/ka-prune --dry-run"))
        defer { Self.remove("hertz", (try? Self.publishedLogs(h)) ?? []) }
        #expect(pruned.contains("✅ done") && pruned.contains("pruning is paused by markus"), "\(pruned)")
        let job = try #require(try JobBoxTests.jobs(h.root.appendingPathComponent(".ka")).first { $0.verb == "prune" }, "no prune job")
        #expect(pruned.contains("📜 log: http://hertz:8080/logs/prune/\(job.id)/"), "\(pruned)")
        let published = try String(contentsOf: Self.onHost("hertz", "\(Self.logsDir)/prune/\(job.id)/log.txt"), encoding: .utf8)
        #expect(published.contains("pruning is paused by markus"), "\(published)")
        let resumed = try await Self.done(h, try await JobBoxTests().approve(h, "/ka-resume-prune"))
        #expect(resumed.contains("pruning resumed") && resumed.contains("resumed by markus"), "\(resumed)")
        await server.kill9()
        await JobBoxTests.reap(h.root.appendingPathComponent(".ka"))
    }
}
