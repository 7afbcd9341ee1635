import Foundation
import GRDB
import KATestSupport
import KernelAgent
import Testing

/// Issue 20 §2, behaviours the last review found untested, on the fleet-in-a-box: `ka verify` records a later
/// pass and closes the installable; `ka verify` of an unreachable host is an infra error, not a regression; a host
/// that never rebooted is not a regression. In BuildBoxTests' serialized suite, holding fresnel.
extension BuildBoxTests {
    static func regressions(_ h: Harness) throws -> [Block] { try blocks(h).filter { $0.kind == .regression || $0.kind == .hostDrifted } }

    @Test func verifyRecordsALaterPassTreatsAnUnreachableHostAsInfraAndANonRebootIsNoRegression() async throws {
        let h = try Harness()
        let short = try Self.config(h, "short.yaml") { $0.replacingOccurrences(of: "heartbeat_timeout: 120", with: "heartbeat_timeout: 6") }
        try await Self.promoteAndBuild(h, config: short)
        let installed = try await Self.ka(h, ["install", "fresnel"], config: short)
        try #require(installed.status == 0, "\(installed.stdoutText)\n\(installed.stderrText)")
        let record = try #require(try Self.state(h).installs.latest(host: "fresnel"))
        #expect(record.state == .verified)

        // 1. an install whose own verify ended early (state installed, installable open): ka verify records the pass
        let db = try DatabaseQueue(path: h.root.appendingPathComponent(".ka/state.sqlite").path)
        try await db.write { db in
            try db.execute(sql: "UPDATE installs SET state = 'installed' WHERE job = ?", arguments: [record.job])
            try db.execute(sql: "DELETE FROM installable_closures WHERE buildJob = ?", arguments: [record.buildJob])
        }
        let v = try await Self.ka(h, ["verify", "fresnel"], config: short)
        #expect(v.status == 0, "\(v.stdoutText)\n\(v.stderrText)")
        #expect(v.stdoutText.contains("verify fresnel: verified"), "\(v.stdoutText)")
        #expect(try Self.state(h).installs.install(job: record.job)?.state == .verified)
        #expect(try Self.state(h).installs.closure(buildJob: record.buildJob) != nil, "the installable is closed")

        // 2. fresnel does not answer: an infra error (exit 1), no regression, the install stays verified
        _ = try await JobBoxTests.inHost("fresnel", ["pkill", "-x", "sshd"])
        let unreachable = try await Self.ka(h, ["verify", "fresnel"], config: short)
        _ = try await JobBoxTests.inHost("fresnel", ["/usr/sbin/sshd", "-f", "/etc/ssh/sshd_config", "-E", "/var/log/sshd.log"])
        #expect(unreachable.status == 1, "\(unreachable.stdoutText)\n\(unreachable.stderrText)")
        #expect((unreachable.stdoutText + unreachable.stderrText).contains("infra error"), "\(unreachable.stdoutText)\n\(unreachable.stderrText)")
        #expect(try Self.regressions(h).isEmpty, "an unreachable host files no regression")
        #expect(try Self.state(h).installs.install(job: record.job)?.state == .verified)

        // 3. the reboot is accepted but never happens: the new kernel was never booted, so nothing is filed
        _ = try await Self.ka(h, ["build", "fresnel"], config: short)
        _ = try await JobBoxTests.inHost("fresnel", ["sh", "-c", "mv /usr/sbin/reboot /usr/sbin/reboot.ka-hidden && printf '#!/bin/sh\\nexit 0\\n' > /usr/sbin/reboot && chmod 0755 /usr/sbin/reboot"])
        let reboots = try await Self.rebootCount()
        let notRebooted = try await Self.ka(h, ["install", "fresnel"], config: short)
        let restored = try await JobBoxTests.inHost("fresnel", ["mv", "-f", "/usr/sbin/reboot.ka-hidden", "/usr/sbin/reboot"])
        #expect(restored.status == 0, "\(restored.stderrText)")
        #expect(notRebooted.status == 1, "\(notRebooted.stdoutText)\n\(notRebooted.stderrText)")
        #expect((notRebooted.stdoutText + notRebooted.stderrText).contains("did not reboot"), "\(notRebooted.stdoutText)\n\(notRebooted.stderrText)")
        #expect(try await Self.rebootCount() == reboots, "the shim was out of the way: no reboot happened")
        #expect(try Self.regressions(h).isEmpty, "a kernel never booted files no regression")
        let status = try await Self.ka(h, ["status", "--json"], config: short)
        #expect(!status.stdoutText.contains("\"state\" : \"drifted\""), "\(status.stdoutText)")
        // leave fresnel booted into what its extlinux.conf now says, as the next test expects of a host
        let bootBefore = try await Self.inFresnel(["cat", "/proc/sys/kernel/random/boot_id"])
        _ = try await JobBoxTests.inHost("fresnel", ["/usr/sbin/reboot"])
        try await JobBoxTests.waitFor("fresnel to answer after its reboot", timeout: 90) {
            let id = try await JobBoxTests.inHost("fresnel", ["cat", "/proc/sys/kernel/random/boot_id"]).stdoutText
            guard id.trimmingCharacters(in: .whitespacesAndNewlines) != bootBefore else { return false }
            return try await JobBoxTests.inHost("fresnel", ["pgrep", "-x", "sshd"]).status == 0
        }
    }
}
