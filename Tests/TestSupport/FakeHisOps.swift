import Foundation
import NIOConcurrencyHelpers
@testable import KernelAgent

/// A scriptable His for tests of the callers (routing, wake-data): per-host power, a wake that takes effect after
/// a delay, faults per tool, and a log of the calls that reached "His". It fails the way `MCPHisOps` does: the same
/// errors, a hang that ends at the cap, a destructive tool refused (and never logged) without leave.
public final class FakeHisOps: HisOps, Sendable {
    public enum Fault: Sendable {
        case unreachable
        /// Accepts the call and never answers: the call fails when `callCap` passes, as the real client's does.
        case hang
        /// His answers the call with a tool error.
        case toolError(String)
    }

    public struct Call: Sendable, Equatable {
        public let tool: HisTool
        public let host: HostName
    }

    private struct State {
        var power: [HostName: HostPower]
        var wakesAt: [HostName: Date] = [:]
        var faults: [HisTool: Fault] = [:]
        var calls: [Call] = []
        var refusedDestructive = 0
    }

    public let endpoint: String
    public let allowDestructive: Set<HisTool>
    /// The wall-clock cap of one call (the real client's his.call_timeout).
    public let callCap: Int
    /// How long a woken host takes to report `up`.
    public let wakeDelay: TimeInterval
    private let now: @Sendable () -> Date
    private let state: NIOLockedValueBox<State>

    public init(endpoint: String = "His (fake)", power: [HostName: HostPower] = [:], wakeDelay: TimeInterval = 0,
                allowDestructive: Set<HisTool> = [], callCap: Int = 20, now: @escaping @Sendable () -> Date = { Date() }) {
        self.endpoint = endpoint; self.allowDestructive = allowDestructive; self.callCap = callCap
        self.wakeDelay = wakeDelay; self.now = now
        state = NIOLockedValueBox(State(power: power))
    }

    public func setPower(_ power: HostPower, for host: HostName) { state.withLockedValue { $0.power[host] = power; $0.wakesAt[host] = nil } }
    public func setFault(_ fault: Fault?, for tool: HisTool) { state.withLockedValue { $0.faults[tool] = fault } }
    /// The calls that reached His, in order.
    public var calls: [Call] { state.withLockedValue { $0.calls } }
    public func callCount(_ tool: HisTool) -> Int { state.withLockedValue { $0.calls.filter { $0.tool == tool }.count } }
    /// Destructive calls refused before reaching His.
    public var refusedDestructiveCalls: Int { state.withLockedValue { $0.refusedDestructive } }

    public func hostStatus(_ host: HostName) async throws -> HostPower {
        try await perform(.hostStatus, host) { s, now in
            guard let power = s.power[host] else { return .failure(self.unknownHost(.hostStatus, host, s)) }
            if power == .asleep, let at = s.wakesAt[host], now >= at { s.power[host] = .up; s.wakesAt[host] = nil; return .success(.up) }
            return .success(power)
        }
    }

    public func wakeHost(_ host: HostName) async throws -> String {
        try await perform(.wakeHost, host) { s, now in
            guard let power = s.power[host] else { return .failure(self.unknownHost(.wakeHost, host, s)) }
            if power == .up { return .success("\(host) is up") }
            if s.wakesAt[host] == nil { s.wakesAt[host] = now.addingTimeInterval(self.wakeDelay) }
            return .success("waking \(host): up in about \(Int(self.wakeDelay.rounded(.up))) s")
        }
    }

    public func prepareBuildHost(_ host: HostName) async throws -> String {
        try await perform(.prepareBuildHost, host) { s, _ in
            guard s.power[host] != nil else { return .failure(self.unknownHost(.prepareBuildHost, host, s)) }
            return .success("\(host) prepared as a build host")
        }
    }

    public func releaseHost(_ host: HostName) async throws -> String {
        try await perform(.releaseHost, host) { s, _ in
            guard s.power[host] != nil else { return .failure(self.unknownHost(.releaseHost, host, s)) }
            s.power[host] = .asleep; s.wakesAt[host] = nil
            return .success("\(host) released: asleep")
        }
    }

    private func unknownHost(_ tool: HisTool, _ host: HostName, _ s: State) -> KAError {
        HisErrors.toolFailed(endpoint, tool, host, "Error executing tool \(tool): unknown host '\(host)' (His knows: \(s.power.keys.map(\.value).sorted().joined(separator: ", ")))")
    }

    private enum FakeStep { case refused, fault(Fault), run }

    /// The annotations the stand-in and His give: only prepare-build-host is destructive.
    static func isDestructive(_ tool: HisTool) -> Bool { tool == .prepareBuildHost }

    private func perform<T: Sendable>(_ tool: HisTool, _ host: HostName,
                                      _ body: @escaping @Sendable (inout State, Date) -> Result<T, KAError>) async throws -> T {
        let step: FakeStep = state.withLockedValue { state in
            if Self.isDestructive(tool) && !allowDestructive.contains(tool) { state.refusedDestructive += 1; return .refused }
            if case .unreachable = state.faults[tool] { return .fault(.unreachable) }
            state.calls.append(Call(tool: tool, host: host))
            if let fault = state.faults[tool] { return .fault(fault) }
            return .run
        }
        switch step {
        case .refused: throw HisErrors.destructiveRefused(endpoint, tool, host)
        case .fault(.unreachable): throw HisErrors.unreachable(endpoint, tool, host, "connection refused")
        case .fault(.hang):
            try await Task.sleep(for: .seconds(callCap))
            throw HisErrors.timedOut(endpoint, tool, host, cap: callCap)
        case let .fault(.toolError(text)): throw HisErrors.toolFailed(endpoint, tool, host, text)
        case .run:
            let now = self.now()
            return try state.withLockedValue { try body(&$0, now).get() }
        }
    }
}
