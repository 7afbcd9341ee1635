import Testing

/// Shared things (the fleet-in-a-box's hosts that a test reboots or whose processes it checks; the His stand-in's
/// cold starts) held by one test at a time across
/// suites and test targets (all run in one process): InstallBoxTests reboots fresnel, and a transport test that
/// checks a remote process is gone must not pass because a reboot killed it.
public actor BoxHostLocks {
    public static let shared = BoxHostLocks()
    private var held: Set<String> = []
    private var waiting: [(hosts: Set<String>, resume: CheckedContinuation<Void, Never>)] = []

    public func acquire(_ hosts: Set<String>) async {
        if held.isDisjoint(with: hosts) { held.formUnion(hosts); return }
        await withCheckedContinuation { waiting.append((hosts, $0)) }
    }

    public func release(_ hosts: Set<String>) {
        held.subtract(hosts)
        // first come, first served among those whose hosts are all free now
        var still: [(hosts: Set<String>, resume: CheckedContinuation<Void, Never>)] = []
        for w in waiting {
            if held.isDisjoint(with: w.hosts) { held.formUnion(w.hosts); w.resume.resume() } else { still.append(w) }
        }
        waiting = still
    }
}

/// `@Test(.holdsBoxHosts("fresnel"))`, or on a suite for each of its tests: the test runs holding those hosts.
public struct BoxHostsTrait: TestTrait, SuiteTrait, TestScoping {
    public let hosts: Set<String>
    public var isRecursive: Bool { true }

    public func scopeProvider(for test: Test, testCase: Test.Case?) -> BoxHostsTrait? { testCase == nil ? nil : self }

    public func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        await BoxHostLocks.shared.acquire(hosts)
        do { try await function() } catch {
            await BoxHostLocks.shared.release(hosts)
            throw error
        }
        await BoxHostLocks.shared.release(hosts)
    }
}

extension Trait where Self == BoxHostsTrait {
    public static func holdsBoxHosts(_ hosts: String...) -> Self { BoxHostsTrait(hosts: Set(hosts)) }
}
