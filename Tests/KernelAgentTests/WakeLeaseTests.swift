import Foundation
import KATestSupport
import NIOConcurrencyHelpers
import Testing
@testable import KernelAgent

/// The idle release of on-demand hosts (issue 8 §2): a stored timer per host, handed back to His when due.
@Suite(.serialized, .holdsBoxHosts("his-standin")) struct WakeLeaseTests {
    static func stateDir() throws -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("ka-leases-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }

    @Test func aDueLeaseIsReleasedThroughTheStandInOverMCPAndForgotten() async throws {
        let bed = try await HisTests.Bed()
        let his = try MCPHisOps(config: HisTests.config(.stdio(command: bed.stdioCommand())))
        _ = try await his.wakeHost(HisTests.ampere)
        try await HisTests.waitFor(.up, HisTests.ampere, on: his)
        let state = try Self.stateDir()
        defer { try? FileManager.default.removeItem(at: state) }
        try WakeLeases(stateDir: state).hold(HisTests.ampere, job: try JobID("fresnel-20261201-0800-abcd"), for: 0)
        // another process (a restart) finds it
        let leases = WakeLeases(stateDir: state)
        #expect(try leases.all().leases.map(\.host) == ["ampere"])
        let notes = try await leases.release(due: his)
        #expect(notes == ["ampere: ampere released: asleep"], "\(notes)")
        #expect(try await his.hostStatus(HisTests.ampere) == .asleep)
        #expect(try bed.count("release-host") == 1)
        #expect(try leases.all().leases.isEmpty)
        await his.close()
    }

    @Test func aLeaseNotYetDueIsKeptAndEveryUsePushesItBack() async throws {
        let state = try Self.stateDir()
        defer { try? FileManager.default.removeItem(at: state) }
        let clock = TestClock(Date(timeIntervalSince1970: 1_800_000_000))
        let leases = WakeLeases(stateDir: state, now: { clock.now })
        let his = FakeHisOps(power: [HisTests.ampere: .up])
        let j1 = try JobID("fresnel-20261201-0800-0001"), j2 = try JobID("ohm-20261201-0800-0002")
        try leases.hold(HisTests.ampere, job: j1, for: 30 * 60)
        clock.advance(29 * 60)
        try leases.hold(HisTests.ampere, job: j1, for: 30 * 60)   // used again
        clock.advance(29 * 60)
        #expect(try await leases.release(due: his).isEmpty, "used 29 min ago: not idle for 30 yet")
        // a second job builds on it for up to its 4 h cap: the first job's end does not release it
        try leases.hold(HisTests.ampere, job: j2, for: 4 * 3600 + 30 * 60)
        clock.advance(2 * 60)
        #expect(try leases.dueHosts().isEmpty, "ohm's build still holds ampere")
        #expect(try await leases.release(due: his).isEmpty)
        #expect(his.callCount(.releaseHost) == 0)
        try leases.hold(HisTests.ampere, job: j2, for: 30 * 60)   // ohm's build is done with it
        clock.advance(30 * 60)
        #expect(try await leases.release(due: his) == ["ampere: ampere released: asleep"])
        #expect(try await his.hostStatus(HisTests.ampere) == .asleep)
        #expect(try leases.all().leases.isEmpty)
    }

    @Test func anUnreachableHisKeepsTheLeaseAndAHisWithoutTheToolDropsIt() async throws {
        let state = try Self.stateDir()
        defer { try? FileManager.default.removeItem(at: state) }
        let leases = WakeLeases(stateDir: state)
        let fake = FakeHisOps(power: [HisTests.ampere: .up])
        fake.setFault(.unreachable, for: .releaseHost)
        try leases.hold(HisTests.ampere, job: try JobID("fresnel-20261201-0800-0001"), for: 0)
        let first = try await leases.release(due: fake)
        #expect(first.count == 1 && first[0].contains("release failed, tried again later"), "\(first)")
        #expect(fake.callCount(.releaseHost) == 0, "an unreachable His never got the call")
        #expect(try leases.all().leases.count == 1)

        let bed = try await HisTests.Bed()
        let without = try MCPHisOps(config: HisTests.config(.stdio(command: bed.stdioCommand(["--omit", "release-host"]))))
        let second = try await leases.release(due: without)
        #expect(second.count == 1 && second[0].hasPrefix("ampere: His will not release it here") && second[0].contains("has no tool 'release-host'"), "\(second)")
        #expect(try leases.all().leases.isEmpty)
        #expect(try bed.count("release-host") == 0)
        await without.close()
    }
}

final class TestClock: Sendable {
    private let current: NIOLockedValueBox<Date>
    init(_ start: Date) { current = NIOLockedValueBox(start) }
    var now: Date { current.withLockedValue { $0 } }
    func advance(_ seconds: TimeInterval) { current.withLockedValue { $0 = $0.addingTimeInterval(seconds) } }
}
