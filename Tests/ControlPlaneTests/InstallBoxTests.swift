import Foundation
import GRDB
import KATestSupport
import KernelAgent
import Testing

/// `ka install` and `ka verify` on the fleet-in-a-box (issue 9): real pacman -U on fresnel (Debian's pacman with the
/// box repo and key), its extlinux.conf, the reboot shim (sshd gone, the extlinux default booted, a new boot id),
/// the backup on hertz's /sparfuxdata. In BuildBoxTests' serialized suite: they share the box's hosts and repo.
extension BuildBoxTests {
    static var fresnelBoot: URL { boxDir.appendingPathComponent("hosts/fresnel/fs/boot") }
    static var hertzSparfux: URL { boxDir.appendingPathComponent("hosts/hertz/fs/sparfuxdata") }

    static func inFresnel(_ argv: [String]) async throws -> String {
        let r = try await JobBoxTests.inHost("fresnel", argv)
        #expect(r.status == 0, "\(argv): \(r.stderrText)")
        return r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func rebootCount() async throws -> Int { Int(try await inFresnel(["cat", "/var/lib/fleet-box/reboot-count"])) ?? -1 }

    static func installedKernel() async throws -> String {
        try await JobBoxTests.inHost("fresnel", ["pacman", "-Q", "linux-fresnel-fourier"]).stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func promoteAndBuild(_ h: Harness, config: URL? = nil) async throws {
        try await promote(h, config: config)
        let b = try await ka(h, ["build", "fresnel"], config: config)
        #expect(b.status == 0, "\(b.stdoutText)\n\(b.stderrText)")
    }

    static func state(_ h: Harness) throws -> SQLiteStateStore {
        try SQLiteStateStore.open(Workspace(root: h.root, stateDir: h.root.appendingPathComponent(".ka")))
    }

    /// Brings fresnel back after a test left it down (a failed boot): boots the extlinux default, starts sshd.
    static func powerOnFresnel() async throws {
        _ = try await JobBoxTests.inHost("fresnel", ["rm", "-f", "/var/lib/fleet-box/hang-next-boot"])
        let r = try await JobBoxTests.inHost("fresnel", ["sh", "-c", "pgrep -x sshd >/dev/null || { /usr/lib/fleet-box/boot && /usr/sbin/sshd -f /etc/ssh/sshd_config -E /var/log/sshd.log; }"])
        #expect(r.status == 0, "\(r.stdoutText)\(r.stderrText)")
    }

    @Test func promoteBuildInstallEndsVerifiedWithTheManagedBlockTheStockEntryAndTheBackupOnTheSigningHost() async throws {
        let h = try Harness()
        try await Self.promoteAndBuild(h)
        let confBefore = try Data(contentsOf: Self.fresnelBoot.appendingPathComponent("extlinux/extlinux.conf"))
        let releaseBefore = try await Self.inFresnel(["uname", "-r"])
        let reboots = try await Self.rebootCount()
        let r = try await Self.ka(h, ["install", "fresnel"])
        #expect(r.status == 0, "\(r.stdoutText)\n\(r.stderrText)")
        #expect(r.stdoutText.contains("install fresnel: verified 7.0-"), "\(r.stdoutText)")
        // pacman -Q shows the package, and the host booted it
        let record = try #require(try Self.state(h).installs.latest(host: "fresnel"))
        #expect(record.state == .verified && record.kernelRelease == "7.0.0-fresnel-fourier", "\(record)")
        #expect(try await Self.installedKernel() == "linux-fresnel-fourier \(record.version)")
        #expect(try await Self.inFresnel(["uname", "-r"]) == "7.0.0-fresnel-fourier")
        #expect(try await Self.rebootCount() == reboots + 1, "one reboot")
        // the managed block, and everything outside it byte for byte (the stock entry is the fallback)
        let conf = try Data(contentsOf: Self.fresnelBoot.appendingPathComponent("extlinux/extlinux.conf"))
        let text = String(decoding: conf, as: UTF8.self)
        #expect(text.contains("# >>> linux-fresnel-fourier (managed) >>>") && text.contains("# <<< linux-fresnel-fourier (managed) <<<"), "\(text)")
        #expect(text.contains("LINUX /Image-fresnel-fourier") && text.contains("FDT /dtbs-fresnel-fourier/rockchip/rk3399-pinebook-pro.dtb"), "\(text)")
        let block = ExtlinuxBlock(suffix: "fresnel-fourier", menuLabel: "", kernel: "", initrd: "", fdt: nil, fdtdir: nil, append: nil)
        #expect(try block.remove(from: conf) == block.remove(from: confBefore), "outside the block, extlinux.conf is unchanged")
        #expect(text.contains("LABEL eos-arm\n    MENU LABEL linux-eos-arm\n    LINUX /Image\n"), "the stock entry stays: \(text)")
        // the backup of /boot as it was, on the signing host, with the checksum the job took
        let backup = try #require(record.backup)
        let file = "fresnel-boot-pre-install-\(record.job).tgz"
        #expect(backup == "hertz:/sparfuxdata/kernel-agent-backups/fresnel/\(releaseBefore)/\(file)", "\(backup)")
        let tgz = Self.hertzSparfux.appendingPathComponent("kernel-agent-backups/fresnel/\(releaseBefore)/\(file)")
        let info = try String(contentsOf: tgz.deletingLastPathComponent().appendingPathComponent("backup-info-\(record.job).txt"), encoding: .utf8)
        #expect(info.contains("b2sum: \(Blake2b.hex(try Data(contentsOf: tgz)))  \(file)"), "\(info)")
        let listing = try await TestCommand.run(["tar", "-tzf", tgz.path]).stdoutText
        #expect(listing.contains("./extlinux/extlinux.conf") && listing.contains("./Image"), "\(listing)")
        // ka status: verified; the installable is closed; ka verify agrees (exit 0, JSON)
        let status = try await Self.ka(h, ["status", "--json"])
        #expect(status.stdoutText.contains("\"state\" : \"verified\""), "\(status.stdoutText)")
        #expect(try Self.state(h).installs.closure(buildJob: record.buildJob) != nil)
        let v = try await Self.ka(h, ["verify", "fresnel", "--json"])
        #expect(v.status == 0 && v.stdoutText.contains("\"passed\" : true"), "\(v.stdoutText)\n\(v.stderrText)")
        // a second install of the same build is refused: its installable is closed
        let again = try await Self.ka(h, ["install", "fresnel"])
        #expect(again.status == 2 && again.stderrText.contains("has no open [ka:installable]"), "\(again.stderrText)")
    }

    @Test func aTargetThatNeverComesBackFailsBarOneFilesRegressionWithTheRestoreCommandsAndDrifts() async throws {
        let h = try Harness()
        let short = try Self.config(h, "short.yaml") { $0.replacingOccurrences(of: "heartbeat_timeout: 120", with: "heartbeat_timeout: 6") }
        try await Self.promoteAndBuild(h, config: short)
        _ = try await Self.inFresnel(["touch", "/var/lib/fleet-box/hang-next-boot"])
        let r = try await Self.ka(h, ["install", "fresnel"], config: short)
        try await Self.powerOnFresnel()
        #expect(r.status == 1, "\(r.stdoutText)\n\(r.stderrText)")
        #expect(r.stdoutText.contains("✗ Bar 1: wait for fresnel's SSH heartbeat"), "\(r.stdoutText)")
        let regression = try #require(try Self.blocks(h).first { $0.kind == .regression }, "a [ka:regression] block")
        #expect(regression.scope == .host("fresnel"))
        let body = try Self.blockBodies(h).joined(separator: "\n")
        #expect(body.contains("Bar 1: SSH heartbeat") && body.contains("no SSH heartbeat from fresnel within 6s"), "\(body)")
        #expect(body.contains("hertz:/sparfuxdata/kernel-agent-backups/fresnel/") && body.contains("sudo tar -C /boot -xzf"), "\(body)")
        let status = try await Self.ka(h, ["status", "--json"], config: short)
        #expect(status.stdoutText.contains("\"state\" : \"drifted\""), "\(status.stdoutText)")
        // installs to fresnel halt while the regression is open
        let b = try await Self.ka(h, ["build", "fresnel"], config: short)
        #expect(b.status == 0, "\(b.stderrText)")
        let halted = try await Self.ka(h, ["install", "fresnel"], config: short)
        #expect(halted.status == 2 && halted.stderrText.contains("installs are halted by the open [ka:regression]"), "\(halted.stderrText)")
    }

    @Test func killDashNineOfServeDuringTheRebootResumesWaitsForTheHeartbeatAndNeverRebootsTwice() async throws {
        let h = try Harness()
        let state = h.root.appendingPathComponent(".ka")
        try await Self.promoteAndBuild(h)
        // fresnel's `reboot` is asked and counted, then holds (a slow shutdown): the kill lands inside the reboot step
        _ = try await Self.inFresnel(["touch", "/var/lib/fleet-box/reboot-hold"])
        defer { Task { _ = try? await JobBoxTests.inHost("fresnel", ["rm", "-f", "/var/lib/fleet-box/reboot-hold"]) } }
        let reboots = try await Self.rebootCount()
        let server = try await JobBoxTests().serve(h)
        defer { server.killNow() }
        let issue = try await JobBoxTests().approve(h, "/ka-install fresnel")
        try await JobBoxTests.waitFor("the reboot to be asked for, its step still running", timeout: 120) {
            let step = try JobBoxTests.jobs(state).first { $0.verb == "install" }?.steps.first { $0.name == "reboot fresnel" }
            guard step?.state == .running else { return false }
            return try await Self.rebootCount() == reboots + 1
        }
        let job = try #require(try JobBoxTests.jobs(state).first { $0.verb == "install" })
        await server.kill9()
        await JobBoxTests.reap(state)
        _ = try await Self.inFresnel(["rm", "-f", "/var/lib/fleet-box/reboot-hold"])   // the shutdown goes on
        try await server.start()
        try await JobBoxTests.waitFor("the resumed install to succeed", timeout: 180) {
            try JobBoxTests.jobs(state).first { $0.id == job.id }?.state == .succeeded
        }
        #expect(try await Self.rebootCount() == reboots + 1, "rebooted once")
        #expect(try await Self.inFresnel(["uname", "-r"]) == "7.0.0-fresnel-fourier")
        let resumed = try #require(try JobBoxTests.jobs(state).first { $0.id == job.id })
        #expect(resumed.steps.first { $0.name == "reboot fresnel" }?.attempts == 1, "the reboot step was not run again: \(resumed.steps)")
        try await JobBoxTests.waitFor("the ✅ reply", timeout: 30) { h.gitea.botComments(on: issue).contains { $0.body.contains("✅ done") } }
        await server.kill9()
        await JobBoxTests.reap(state)
    }

    @Test func slashInstallRunsForNoUnpermittedUserNoExpiredNonceAndNoPackageChangedAfterThePlan() async throws {
        let h = try Harness()
        try await Self.promoteAndBuild(h)
        let reboots = try await Self.rebootCount()
        let installed = try await Self.installedKernel()
        let g = h.gitea
        try await g.start()
        let port = ChaosTests.freePort()
        g.webhookURL = URL(string: "http://127.0.0.1:\(port)/webhook")
        var env = ChaosTests.serveEnvironment(h, port: port).merging(try JobBoxTests.boxEnvironment()) { a, _ in a }
        env["KA_CONSENT_TTL"] = "30s"
        let server = ChaosTests.Server(port: port, env: env, log: h.root.appendingPathComponent("serve.log"))
        try await server.start()
        defer { server.killNow() }
        let issue = g.createIssue(by: "markus", title: "install fresnel")
        func ask() async throws -> String {
            let before = g.botComments(on: issue).compactMap { Harness.nonce(in: $0.body) }
            g.comment(by: "markus", on: issue, body: "/ka-install fresnel")
            try await JobBoxTests.waitFor("a plan") { g.botComments(on: issue).compactMap { Harness.nonce(in: $0.body) }.count > before.count }
            return try #require(g.botComments(on: issue).compactMap { Harness.nonce(in: $0.body) }.last)
        }
        func reply(containing text: String) async throws {
            do {
                try await JobBoxTests.waitFor("a reply with '\(text)'") { g.botComments(on: issue).contains { $0.body.contains(text) } }
            } catch {
                Issue.record("bot comments: \(g.botComments(on: issue).map(\.body))")
                throw error
            }
        }
        // the plan is pinned to the installable's packages
        let first = try await ask()
        let plan = try #require(g.botComments(on: issue).last { Harness.nonce(in: $0.body) == first }?.body)
        #expect(plan.contains("| `installable` |") && plan.contains(".pkg.tar.zst` | `b2:") && plan.contains("reboot fresnel"), "\(plan)")
        // 1. someone without permission
        g.comment(by: "mallory", on: issue, body: "/ka-yes \(first)")
        try await reply(containing: "@mallory sorry, you are not allowed to approve that plan")
        // 2. a new build after the plan: the pinned package changed
        let second = try await ask()
        let rebuilt = try await Self.ka(h, ["build", "fresnel"])
        #expect(rebuilt.status == 0, "\(rebuilt.stderrText)")
        g.comment(by: "markus", on: issue, body: "/ka-yes \(second)")
        try await reply(containing: "consent void: pinned inputs changed")
        // 3. the nonce expired (consent_ttl 30s): wait until the plan says it has, then approve
        let third = try await ask()
        let text = try #require(g.botComments(on: issue).last { Harness.nonce(in: $0.body) == third }?.body)
        let stamp = try #require(text.range(of: "This expires ").map { String(text[$0.upperBound...].prefix(20)) })
        let expiry = try Date(stamp, strategy: .iso8601)
        try await JobBoxTests.waitFor("the plan's expiry", timeout: 60) { Date() > expiry.addingTimeInterval(1) }
        g.comment(by: "markus", on: issue, body: "/ka-yes \(third)")
        try await reply(containing: "that plan expired")
        // none of them installed or rebooted anything
        #expect(try await Self.rebootCount() == reboots)
        #expect(try await Self.installedKernel() == installed)
        #expect(try JobBoxTests.jobs(h.root.appendingPathComponent(".ka")).filter { $0.verb == "install" }.isEmpty)
        await server.kill9()
        await JobBoxTests.reap(h.root.appendingPathComponent(".ka"))
    }

    @Test func aProbeThatFailsFilesARegressionNamingTheProbeAndThePatchesNewSinceTheLastGoodLockAndYankLoopsBack() async throws {
        let h = try Harness()
        // a good install first: its lock is the last good one
        try await Self.promoteAndBuild(h)
        let good = try await Self.ka(h, ["install", "fresnel"])
        #expect(good.status == 0, "\(good.stdoutText)\n\(good.stderrText)")
        let goodRecord = try #require(try Self.state(h).installs.latest(host: "fresnel"))
        #expect(goodRecord.state == .verified && goodRecord.bars.contains("bar3 pass") && goodRecord.bars.contains("bar4 pass"), "\(goodRecord.bars)")
        // a new, harmless patch with a probe that cannot pass on this board
        let name = "0004-ka-test-a-harmless-comment.patch"
        try Self.addPinebookLine(h, patch: name, subject: "a harmless comment in the Pinebook Pro DTS", line: "/* ka test: a harmless comment */")
        let manifest = h.root.appendingPathComponent("fleet/fresnel.yaml")
        let probe = "file /sys/devices/system/cpu/cpufreq/policy4/cpuinfo_max_freq == 2400000"
        try (try String(contentsOf: manifest, encoding: .utf8) + "    - patch: board/pinebook-pro/\(name)\n      probe: \(probe)\n")
            .write(to: manifest, atomically: true, encoding: .utf8)
        try await Self.promoteAndBuild(h)
        let r = try await Self.ka(h, ["install", "fresnel"])
        #expect(r.status == 1, "\(r.stdoutText)\n\(r.stderrText)")
        let regression = try #require(try Self.blocks(h).first { $0.kind == .regression })
        #expect(regression.title.contains("Bar 4"), "\(regression.title)")
        let body = try Self.blockBodies(h).joined(separator: "\n")
        #expect(body.contains("| probe | `\(probe)` (patch `board/pinebook-pro/\(name)`) |"), "\(body)")
        #expect(body.contains("observed: 2184000"), "\(body)")
        #expect(body.contains("Patches new since the last good lock:\n\n- `board/pinebook-pro/\(name)`\n"), "\(body)")
        #expect(body.contains("| last good lock | `b2:\(goodRecord.lockB2sum.prefix(16))…`"), "\(body)")
        #expect(body.contains("/ka-yank fresnel board/pinebook-pro/\(name)"), "\(body)")
        let status = try await Self.ka(h, ["status", "--json"])
        #expect(status.stdoutText.contains("\"state\" : \"drifted\""), "\(status.stdoutText)")
        // the loopback: yank takes the patch out; promote's lock no longer carries it
        let yank = try await Self.ka(h, ["yank", "fresnel", "board/pinebook-pro/\(name)", "--reason", "regression \(regression.id)"])
        #expect(yank.status == 0 && yank.stdoutText.contains("fresnel is drifted; next: ka promote fresnel"), "\(yank.stdoutText)\n\(yank.stderrText)")
        try await Self.promote(h)
        let lock = try String(contentsOf: h.root.appendingPathComponent("build/fresnel/v7.0/manifest.lock"), encoding: .utf8)
        #expect(!lock.contains(name) && lock.contains("0001-arm64-dts-rk3399-pinebook-pro-add-OC-OPP-tables"), "\(lock)")
    }

    @Test func burnInIsAStoredScheduleThatARebootFailsAndThatCompletesWhenItsTimeHasPassed() async throws {
        let h = try Harness()
        let manifest = h.root.appendingPathComponent("fleet/fresnel.yaml")
        try (try String(contentsOf: manifest, encoding: .utf8) + "  burn_in_hours: 2\n").write(to: manifest, atomically: true, encoding: .utf8)
        try await Self.promoteAndBuild(h)
        let r = try await Self.ka(h, ["install", "fresnel"])
        #expect(r.status == 0 && r.stdoutText.contains("burn-in until"), "\(r.stdoutText)\n\(r.stderrText)")
        var record = try #require(try Self.state(h).installs.latest(host: "fresnel"))
        let until = try #require(record.burnInUntil)
        #expect(abs(until.timeIntervalSinceNow - 7200) < 300, "\(until)")
        // an hour in: Bars 1–4 hold, the burn-in runs on
        let running = try await Self.ka(h, ["verify", "fresnel"])
        #expect(running.status == 0 && running.stdoutText.contains("bar5 skip (optional) burn-in: running"), "\(running.stdoutText)\n\(running.stderrText)")
        // its time has passed (the stored schedule moved back, as a clock moving on would): it completes
        let db = try DatabaseQueue(path: h.root.appendingPathComponent(".ka/state.sqlite").path)
        let job = record.job
        try await db.write { try $0.execute(sql: "UPDATE installs SET burnInUntil = ? WHERE job = ?", arguments: [Date().addingTimeInterval(-1), job]) }
        let done = try await Self.ka(h, ["verify", "fresnel"])
        #expect(done.status == 0 && done.stdoutText.contains("bar5 pass (optional) burn-in: complete"), "\(done.stdoutText)\n\(done.stderrText)")
        record = try #require(try Self.state(h).installs.latest(host: "fresnel"))
        #expect(record.burnInUntil == nil && record.bars.contains("bar5 pass"))
        // a second burn-in, and a reboot during it: it fails, files [ka:regression], and the host is drifted
        let again = record.job
        try await db.write { try $0.execute(sql: "UPDATE installs SET burnInUntil = ? WHERE job = ?", arguments: [Date().addingTimeInterval(3600), again]) }
        let before = try await Self.inFresnel(["cat", "/proc/sys/kernel/random/boot_id"])
        _ = try await Self.inFresnel(["reboot"])
        try await JobBoxTests.waitFor("fresnel to come back with a new boot id", timeout: 60) {
            let now = try await JobBoxTests.inHost("fresnel", ["cat", "/proc/sys/kernel/random/boot_id"]).stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
            let up = try await JobBoxTests.inHost("fresnel", ["pgrep", "-x", "sshd"]).status == 0
            return up && !now.isEmpty && now != before
        }
        let failed = try await Self.ka(h, ["verify", "fresnel", "--json"])
        #expect(failed.status == 1 && failed.stdoutText.contains("rebooted during burn-in") && failed.stdoutText.contains("\"passed\" : false"),
                "\(failed.stdoutText)\n\(failed.stderrText)")
        let regression = try #require(try Self.blocks(h).first { $0.kind == .regression })
        #expect(regression.title.contains("Bar 5"), "\(regression.title)")
        let status = try await Self.ka(h, ["status", "--json"])
        #expect(status.stdoutText.contains("\"state\" : \"drifted\""), "\(status.stdoutText)")
    }
}
