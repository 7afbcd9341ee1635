import Foundation
import Testing
import KATestSupport
@testable import KernelAgent

/// Retention (issue 9 §3): the prune decision as a pure function of listings and a clock, the listing parsers, the
/// config, and the stored pause. The box tests (RetentionBoxTests) run the same over ssh.
@Suite struct RetentionTests {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)
    static func ago(_ days: Double) -> Date { now.addingTimeInterval(-days * 86400) }
    static func job(_ n: Int, host: String = "fresnel") -> String { "\(host)-20261101-1200-\(String(format: "%04x", n))" }

    static func decide(_ inv: PruneInventory) -> [String: PruneItem] {
        Dictionary(PruneRules.decide(inv, now: now, signer: "hertz", logHost: "hertz").map { ("\($0.host):\($0.path)", $0) }, uniquingKeysWith: { a, _ in a })
    }

    @Test func backupsGoAfterSevenDaysButNeverAHostsNewest() {
        var inv = PruneInventory()
        let dir = "/sparfuxdata/kernel-agent-backups"
        inv.backups = [
            .init(host: "fresnel", version: "7.0-1", modified: Self.ago(8), path: "\(dir)/fresnel/7.0-1"),
            .init(host: "fresnel", version: "7.0-2", modified: Self.ago(6), path: "\(dir)/fresnel/7.0-2"),
            // one backup only, a month old: the newest of its host, so it stays
            .init(host: "ohm", version: "6.1-3", modified: Self.ago(30), path: "\(dir)/ohm/6.1-3"),
            // every backup old: the newest still stays, the rest go
            .init(host: "noether", version: "7.0-1", modified: Self.ago(20), path: "\(dir)/noether/7.0-1"),
            .init(host: "noether", version: "7.0-2", modified: Self.ago(10), path: "\(dir)/noether/7.0-2"),
        ]
        let d = Self.decide(inv)
        #expect(d["hertz:\(dir)/fresnel/7.0-1"]?.action == .remove)
        #expect(d["hertz:\(dir)/fresnel/7.0-1"]?.why == "backup 8 days old (kept 7 days)")
        #expect(d["hertz:\(dir)/fresnel/7.0-2"]?.action == .leave)
        #expect(d["hertz:\(dir)/ohm/6.1-3"]?.action == .leave)
        #expect(d["hertz:\(dir)/ohm/6.1-3"]?.why.contains("newest backup of ohm") == true)
        #expect(d["hertz:\(dir)/noether/7.0-1"]?.action == .remove)
        #expect(d["hertz:\(dir)/noether/7.0-2"]?.action == .leave)
        // the same listing a day earlier: the 8-day-old one was 7 days old and goes too (the limit is inclusive)…
        let earlier = PruneRules.decide(inv, now: Self.ago(1), signer: "hertz", logHost: "hertz")
        #expect(earlier.first { $0.path.hasSuffix("fresnel/7.0-1") }?.action == .remove)
        // …two days earlier it stayed
        let before = PruneRules.decide(inv, now: Self.ago(2), signer: "hertz", logHost: "hertz")
        #expect(before.first { $0.path.hasSuffix("fresnel/7.0-1") }?.action == .leave)
    }

    @Test func keptJobsStayAndFailedBuildsGoAfterFourteenDays() {
        var inv = PruneInventory()
        let future = Self.now.addingTimeInterval(3 * 86400).formatted(.iso8601)
        let past = Self.ago(1).formatted(.iso8601)
        inv.buildDirs = [
            .init(host: "boltzmann", area: .keep, name: Self.job(1), modified: Self.ago(40), keepMark: "forever"),
            .init(host: "boltzmann", area: .keep, name: Self.job(2), modified: Self.ago(20), keepMark: future),
            .init(host: "boltzmann", area: .keep, name: Self.job(3), modified: Self.ago(20), keepMark: past),
            .init(host: "boltzmann", area: .keep, name: Self.job(4), modified: Self.ago(10)),
            .init(host: "boltzmann", area: .keep, name: Self.job(5), modified: Self.ago(15)),
            .init(host: "boltzmann", area: .keep, name: Self.job(6), modified: Self.ago(90), keepMark: "next tuesday"),
            // a kept succeeded build: neither archived nor removed, its output dir neither
            .init(host: "fermi", area: .source, name: Self.job(7), modified: Self.ago(3), keepMark: "forever"),
            .init(host: "fermi", area: .output, name: Self.job(7), modified: Self.ago(3)),
        ]
        inv.jobStates = [Self.job(1): .failed, Self.job(2): .failed, Self.job(3): .failed, Self.job(4): .failed, Self.job(5): .failed,
                         Self.job(6): .failed, Self.job(7): .succeeded]
        let d = Self.decide(inv)
        func at(_ host: String, _ area: String, _ n: Int) -> PruneItem? { d["\(host):/srv/kernel-agent/\(area)/\(Self.job(n))"] }
        #expect(at("boltzmann", "keep", 1)?.action == .leave)
        #expect(at("boltzmann", "keep", 1)?.why == "kept forever (ka keep)")
        #expect(at("boltzmann", "keep", 2)?.action == .leave)
        #expect(at("boltzmann", "keep", 2)?.why.hasPrefix("kept until") == true)
        #expect(at("boltzmann", "keep", 3)?.action == .remove)
        #expect(at("boltzmann", "keep", 3)?.why.contains("ka keep date has passed") == true)
        #expect(at("boltzmann", "keep", 3)?.keepMark == past, "the removal re-checks the mark it saw")
        #expect(at("boltzmann", "keep", 4)?.action == .leave)
        #expect(at("boltzmann", "keep", 5)?.action == .remove)
        #expect(at("boltzmann", "keep", 5)?.why == "failed build, 15 days old (kept 14 days)")
        #expect(at("boltzmann", "keep", 6)?.action == .leave, "an unreadable mark keeps the tree")
        #expect(at("fermi", "source", 7)?.action == .leave)
        #expect(at("fermi", "output", 7)?.action == .leave)
        // a keep mark of `forever` still holds a century later
        let later = PruneRules.decide(inv, now: Self.now.addingTimeInterval(100 * 365 * 86400), signer: "hertz", logHost: "hertz")
        #expect(later.first { $0.job == Self.job(1) }?.action == .leave)
        #expect(later.first { $0.job == Self.job(2) }?.action == .remove)
    }

    @Test func succeededBuildsAreArchivedAndOthersLeftByState() {
        var inv = PruneInventory()
        inv.buildDirs = [
            .init(host: "boltzmann", area: .source, name: Self.job(1), modified: Self.ago(0)),
            .init(host: "boltzmann", area: .output, name: Self.job(1), modified: Self.ago(0)),
            .init(host: "boltzmann", area: .source, name: Self.job(2), modified: Self.ago(30)),   // running
            .init(host: "boltzmann", area: .source, name: Self.job(3), modified: Self.ago(30)),   // another agent's
            .init(host: "boltzmann", area: .source, name: "lost+found", modified: Self.ago(300)),
            .init(host: "boltzmann", area: .source, name: Self.job(4), modified: Self.ago(20)),   // failed, its move to keep/ failed
        ]
        inv.jobStates = [Self.job(1): .succeeded, Self.job(2): .running, Self.job(4): .failed]
        let d = Self.decide(inv)
        func at(_ area: String, _ name: String) -> PruneItem? { d["boltzmann:/srv/kernel-agent/\(area)/\(name)"] }
        #expect(at("source", Self.job(1))?.action == .archive)
        #expect(at("output", Self.job(1))?.action == .remove)
        #expect(at("source", Self.job(2))?.action == .leave)
        #expect(at("source", Self.job(2))?.why == "job is running")
        #expect(at("source", Self.job(3))?.why == "no job of this state dir")
        #expect(at("source", "lost+found")?.why == "not a job id")
        #expect(at("source", Self.job(4))?.action == .remove)
    }

    @Test func archivesAndPublishedLogsGoAfterAYear() {
        var inv = PruneInventory()
        inv.archives = [.init(path: "/sparfuxdata/kernel-agent-archive/\(Self.job(1))", modified: Self.ago(366)),
                        .init(path: "/sparfuxdata/kernel-agent-archive/\(Self.job(2))", modified: Self.ago(300))]
        inv.publishedLogs = [.init(path: "/srv/packages/logs/fresnel/\(Self.job(1))", modified: Self.ago(400))]
        let items = PruneRules.decide(inv, now: Self.now, signer: "hertz", logHost: "lagrange")
        #expect(items.map(\.line) == [
            "remove hertz:/sparfuxdata/kernel-agent-archive/\(Self.job(1)) — archive 366 days old (kept 365 days)",
            "remove lagrange:/srv/packages/logs/fresnel/\(Self.job(1)) — published log 400 days old (kept 365 days)",
        ])
    }

    @Test func listingsParseAndRefuseWhatTheyCannotRead() throws {
        let host = try HostName("boltzmann")
        let dirs = try PruneRemote.parseBuildDirs("source\t\(Self.job(1))\t1800000000\t-\nkeep\t\(Self.job(2))\t1700000000\tforever\n", host: host)
        #expect(dirs == [.init(host: "boltzmann", area: .source, name: Self.job(1), modified: Self.now),
                         .init(host: "boltzmann", area: .keep, name: Self.job(2), modified: Date(timeIntervalSince1970: 1_700_000_000), keepMark: "forever")])
        #expect(throws: KAError.self) { try PruneRemote.parseBuildDirs("source\tx\n", host: host) }
        #expect(throws: KAError.self) { try PruneRemote.parseBuildDirs("tmp\tx\t1\t-\n", host: host) }
        let dir = "/sparfuxdata/kernel-agent-backups"
        let dated = try PruneRemote.parseDated("\(dir)/fresnel/7.0-1\t1800000000\n", under: dir, host: try HostName("hertz"))
        #expect(PruneRemote.backups(dated, under: dir) == [.init(host: "fresnel", version: "7.0-1", modified: Self.now, path: "\(dir)/fresnel/7.0-1")])
        // a path outside the listed dir is refused, not pruned
        #expect(throws: KAError.self) { try PruneRemote.parseDated("/etc/passwd\t1\n", under: dir, host: try HostName("hertz")) }
        #expect(PruneRemote.subject(of: try JobID(Self.job(3, host: "pinebook-pro"))) == "pinebook-pro")
    }

    @Test func removalIsConfinedToTheDirsPruneManages() throws {
        var p = PipelineConfig(file: nil)
        p.signing = .init(host: try HostName("hertz"), key: nil, gnupgHome: "/srv/kernel-agent/gnupg", stagingDir: "/srv/kernel-agent/staging",
                          repoName: "marfrit", repoDir: "/srv/packages/arch/aarch64", repoURL: nil, debianRepo: nil, origin: "test")
        p.logs = .init(host: try HostName("hertz"), dir: "/srv/packages/logs", url: "http://hertz:8080/logs", origin: "test")
        #expect(PruneVerb.allowed("/srv/kernel-agent/keep/\(Self.job(1))", isBuildDir: true, p))
        #expect(!PruneVerb.allowed("/srv/kernel-agent/ccache", isBuildDir: true, p))
        #expect(!PruneVerb.allowed("/srv/kernel-agent/keep", isBuildDir: true, p))
        #expect(PruneVerb.allowed("/sparfuxdata/kernel-agent-backups/fresnel/7.0-1", isBuildDir: false, p))
        #expect(!PruneVerb.allowed("/sparfuxdata/kernel-agent-backups/fresnel", isBuildDir: false, p))
        #expect(PruneVerb.allowed("/sparfuxdata/kernel-agent-archive/\(Self.job(1))", isBuildDir: false, p))
        #expect(PruneVerb.allowed("/srv/packages/logs/fresnel/\(Self.job(1))", isBuildDir: false, p))
        #expect(!PruneVerb.allowed("/srv/packages/arch/aarch64", isBuildDir: false, p))
    }

    @Test func configReadsTheLogHostAndTheRetentionDirs() throws {
        let yaml = """
        signing:
          host: hertz
          repo: {name: marfrit, dir: /srv/packages/arch/aarch64}
          archive_dir: /sparfuxdata/kernel-agent-archive/fleet
        logs: {host: lagrange, dir: /srv/packages/logs, url: "https://logs.reauktion.de/"}
        """
        let p = try PipelineConfig.parse(yaml, file: "ka.yaml")
        #expect(p.signing?.backupsDir == "/sparfuxdata/kernel-agent-backups")
        #expect(p.signing?.archiveDir == "/sparfuxdata/kernel-agent-archive/fleet")
        #expect(p.logs?.link(subject: "fresnel", job: try JobID(Self.job(1))) == "https://logs.reauktion.de/fresnel/\(Self.job(1))/")
        let outside = yaml.replacingOccurrences(of: "/sparfuxdata/kernel-agent-archive/fleet", with: "/var/tmp/archive")
        let refused = #expect(throws: KAError.self) { try PipelineConfig.parse(outside, file: "ka.yaml") }
        #expect(refused.map { "\($0)".contains("ka.yaml:4:") && "\($0)".contains("outside the agent's roots") } == true, "\(String(describing: refused))")
        let badURL = yaml.replacingOccurrences(of: "https://logs.reauktion.de/", with: "ftp://x")
        let bad = #expect(throws: KAError.self) { try PipelineConfig.parse(badURL, file: "ka.yaml") }
        #expect(bad.map { "\($0)".contains("not an http(s) URL") } == true, "\(String(describing: bad))")
    }

    @Test func pauseIsStoredWithWhoAndWhenAndStatusShowsIt() async throws {
        let s = try PromoteTests.tree()
        let store = try SQLiteStateStore.open(s.ws)
        let at = Self.now
        var ctx = VerbContext(workspace: s.ws, state: store, blocks: store, now: { at })
        ctx.actor = "markus"
        let paused = try await PausePruneVerb.parse(["--reason", "debugging a build"]).execute(in: ctx).1.text
        #expect(paused.contains("paused by markus since \(at.formatted(.iso8601)) (debugging a build)"), "\(paused)")
        // a second pause keeps the first one's who and when
        var other = ctx
        other.actor = "anna"
        let again = try await PausePruneVerb.parse([]).execute(in: other).1.text
        #expect(again.contains("already paused by markus"), "\(again)")
        // stored: a new store on the same file sees it, and ka status prints it under the table
        let reopened = try SQLiteStateStore.open(s.ws)
        #expect(try reopened.prunePause()?.by == "markus")
        let status = try await StatusVerb.parse([]).execute(in: VerbContext(workspace: s.ws, state: reopened, blocks: reopened)).1.text
        #expect(status.contains("pruning: paused by markus since"), "\(status)")
        let resumed = try await ResumePruneVerb.parse([]).execute(in: other).1.text
        #expect(resumed.contains("pruning resumed (it was paused by markus") && resumed.contains("resumed by anna"), "\(resumed)")
        #expect(try reopened.prunePause() == nil)
        let after = try await StatusVerb.parse([]).execute(in: VerbContext(workspace: s.ws, state: reopened, blocks: reopened)).1.text
        #expect(!after.contains("pruning:"))
        #expect(try await ResumePruneVerb.parse([]).execute(in: ctx).1.text.contains("was not paused"))
    }

    @Test func pruneDoesNothingWhilePausedAndSaysSo() async throws {
        let s = try PromoteTests.tree()
        let store = MemoryStateStore()
        _ = try store.pausePrune(PrunePauseRecord(by: "markus", at: Self.now, reason: nil))
        let bob = FakeTransport(host: try HostName("bob"))
        let jobs = MemoryJobStore()
        let ctx = VerbContext(workspace: s.ws, state: store, blocks: store, jobs: jobs, transports: StaticTransports([try HostName("bob"): bob]))
        let verb = try PruneVerb.parse([])
        let steps = try verb.steps(in: ctx)
        #expect(steps.count == 3)
        let runner = JobRunner(store: jobs, workspace: s.ws, transports: ctx.transports)
        let job = try runner.create(verb: "prune", arguments: [], pins: [], subject: "prune", origin: .cli(user: "t"), steps: steps)
        let ended = try await runner.run(job.id, steps: steps)
        #expect(ended.state == .succeeded)
        #expect(bob.calls.isEmpty, "a paused prune reached a host: \(bob.calls.map(\.argv))")
        let summary = verb.summary(of: ended, in: ctx)
        #expect(summary.contains("pruning is paused by markus") && summary.contains("nothing was archived or removed"), "\(summary)")
        #expect(ended.steps.allSatisfy { $0.outcome?.contains("paused by markus") == true }, "\(ended.steps)")
    }
}
