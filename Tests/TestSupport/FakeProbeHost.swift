import Foundation
@testable import KernelAgent
import NIOConcurrencyHelpers

/// A scripted probe host for tests: files, device-tree entries and commands set by the test; what is not set
/// is missing (a command: exit 127). `failNext` makes the next calls fail the way an unreachable host does, and
/// `calls` counts every question asked, failed or not, so a test can assert the retries.
public final class FakeProbeHost: ProbeHost, Sendable {
    private struct State {
        var files: [String: ProbeRead] = [:]
        var deviceTree: [String: ProbeRead] = [:]
        var commands: [[String]: ProbeRun] = [:]
        var failures: [KAError] = []
        var calls = 0
        var commandTimeouts: [Swift.Duration] = []
    }

    public let host: HostName
    public let hasDeviceTree: Bool
    private let state = NIOLockedValueBox(State())

    public init(host: HostName, hasDeviceTree: Bool = true) {
        self.host = host; self.hasDeviceTree = hasDeviceTree
    }

    public func setFile(_ path: String, _ read: ProbeRead) { state.withLockedValue { $0.files[path] = read } }
    /// A file holding `text` (sysfs style: end it with "\n" yourself).
    public func setFile(_ path: String, text: String) { setFile(path, .content(Array(text.utf8), truncated: false)) }
    public func setDeviceTree(_ path: String, _ read: ProbeRead) { state.withLockedValue { $0.deviceTree[path] = read } }
    public func setCommand(_ argv: [String], _ run: ProbeRun) { state.withLockedValue { $0.commands[argv] = run } }

    /// The next `count` questions fail before reaching the host, with the transport's unreachable error.
    public func failNext(_ count: Int, with error: KAError? = nil) {
        let e = error ?? TransportError.unreachable(host, "fake", "connection refused")
        state.withLockedValue { $0.failures += Array(repeating: e, count: count) }
    }

    /// Every question asked, the failed ones included.
    public var calls: Int { state.withLockedValue { $0.calls } }
    /// The timeouts `run` was given, in order.
    public var commandTimeouts: [Swift.Duration] { state.withLockedValue { $0.commandTimeouts } }

    private func ask() throws {
        let failure = state.withLockedValue { s -> KAError? in
            s.calls += 1
            return s.failures.isEmpty ? nil : s.failures.removeFirst()
        }
        if let failure { throw failure }
    }

    public func readFile(_ path: String) async throws -> ProbeRead {
        try ask()
        return state.withLockedValue { $0.files[path] } ?? .missing
    }

    public func readDeviceTree(_ path: String) async throws -> ProbeRead {
        try ask()
        guard hasDeviceTree else { return .notApplicable("the host has no /proc/device-tree") }
        return state.withLockedValue { $0.deviceTree[path] } ?? .missing
    }

    public func run(_ argv: [String], timeout: Swift.Duration) async throws -> ProbeRun {
        state.withLockedValue { $0.commandTimeouts.append(timeout) }
        try ask()
        return state.withLockedValue { $0.commands[argv] } ?? ProbeRun(status: 127, stdout: [], stderr: Array("\(argv.first ?? ""): command not found".utf8))
    }
}
