import Foundation
@testable import KernelAgent
import NIOConcurrencyHelpers

/// A scripted host for unit tests. Each argv gets a scripted behaviour; every call is recorded; copies land in an
/// in-memory file system. It fails the way the real transport does: before the command ran (unreachable), after
/// it ran (the connection dropped once the effect happened), or not at all until the timeout or a cancel, with the
/// same errors. `performed` counts the commands whose effect happened, for tests of "never run twice".
public final class FakeTransport: HostTransport, Sendable {
    public enum Behavior: Sendable {
        /// The command runs: its lines go to the handler, then the result is returned.
        case result(CommandResult, lines: [OutputLine] = [])
        /// The transport fails before the command ran (nothing happened on the host).
        case failBefore(KAError)
        /// The command ran (its effect happened, and `performed` counts it), then the transport failed.
        case failAfter(KAError)
        /// Never finishes: ends with the timed-out error at the command's timeout, or the cancelled error.
        case hang
        /// Anything else: computed per call.
        case custom(@Sendable (RemoteCommand) async throws -> CommandResult)
    }

    public enum CallKind: Sendable, Equatable { case run, copyTo, copyFrom }

    public struct Call: Sendable {
        public let kind: CallKind
        public let argv: [RemoteArgument]
        public let stdin: [UInt8]?
        public let timeout: Swift.Duration
        /// For copies: the remote path.
        public let remotePath: String?
    }

    private struct State {
        var scripts: [[[UInt8]]: [Behavior]] = [:]
        var calls: [Call] = []
        var performed = 0
        var files: [String: [UInt8]] = [:]
        var copyFailure: (to: Behavior?, from: Behavior?) = (nil, nil)
    }

    public let host: HostName
    public let address: String
    private let state = NIOLockedValueBox(State())
    /// What an argv without a script gets; by default a refusal that names the argv, so a test sees what it missed.
    private let fallback: Behavior?

    public init(host: HostName, address: String = "fake", fallback: Behavior? = nil) {
        self.host = host; self.address = address; self.fallback = fallback
    }

    /// Scripts `argv`. Several behaviours for one argv are used in order; the last one repeats.
    public func script(_ argv: [RemoteArgument], _ behaviors: Behavior...) {
        state.withLockedValue { $0.scripts[argv.map(\.bytes), default: []].append(contentsOf: behaviors) }
    }

    /// The next copy to the host behaves like this (`failBefore`: nothing written; `failAfter`: written, then the
    /// error; `hang`: until the timeout or a cancel).
    public func scriptCopyTo(_ behavior: Behavior) { state.withLockedValue { $0.copyFailure.to = behavior } }
    public func scriptCopyFrom(_ behavior: Behavior) { state.withLockedValue { $0.copyFailure.from = behavior } }

    public var calls: [Call] { state.withLockedValue { $0.calls } }
    public var performed: Int { state.withLockedValue { $0.performed } }
    /// The fake host's files, by absolute path.
    public func file(_ path: String) -> [UInt8]? { state.withLockedValue { $0.files[path] } }
    public func setFile(_ path: String, _ bytes: [UInt8]) { state.withLockedValue { $0.files[path] = bytes } }

    public func run(_ command: RemoteCommand, onLine: (@Sendable (OutputLine) -> Void)?) async throws -> CommandResult {
        let key = command.argv.map(\.bytes)
        let behavior = state.withLockedValue { s -> Behavior? in
            s.calls.append(Call(kind: .run, argv: command.argv, stdin: command.stdin, timeout: command.timeout, remotePath: nil))
            guard var list = s.scripts[key], let first = list.first else { return nil }
            if list.count > 1 { list.removeFirst(); s.scripts[key] = list }
            return first
        } ?? fallback
        let what = TransportError.shown(command)
        guard let behavior else {
            throw KAError.refusal(TransportError.context(host, address), "FakeTransport: no script for \(what)")
        }
        return try await play(behavior, command: command, what: what, onLine: onLine)
    }

    public func copy(_ local: URL, toRemote path: String, timeout: Swift.Duration) async throws {
        let target = try RemotePath(path, host: host)
        let what = "copy \(local.path) → \(host):\(target)"
        let behavior = state.withLockedValue { s -> Behavior? in
            s.calls.append(Call(kind: .copyTo, argv: [], stdin: nil, timeout: timeout, remotePath: target.value))
            defer { s.copyFailure.to = nil }
            return s.copyFailure.to
        }
        let bytes: [UInt8]
        do { bytes = Array(try Data(contentsOf: local)) } catch {
            throw KAError.failure(what, "cannot read \(local.path): \(error.localizedDescription)", cause: error)
        }
        let write: @Sendable (RemoteCommand) async throws -> CommandResult = { _ in
            self.state.withLockedValue { $0.files[target.value] = bytes; $0.performed += 1 }
            return CommandResult(status: 0, stdout: [], stderr: [])
        }
        _ = try await play(behavior ?? .custom(write), command: RemoteCommand([], timeout: timeout), what: what, onLine: nil, effect: write)
    }

    public func copy(fromRemote path: String, to local: URL, timeout: Swift.Duration) async throws {
        let source = try RemotePath(path, host: host)
        let what = "copy \(host):\(source) → \(local.path)"
        let behavior = state.withLockedValue { s -> Behavior? in
            s.calls.append(Call(kind: .copyFrom, argv: [], stdin: nil, timeout: timeout, remotePath: source.value))
            defer { s.copyFailure.from = nil }
            return s.copyFailure.from
        }
        let read: @Sendable (RemoteCommand) async throws -> CommandResult = { _ in
            guard let bytes = self.state.withLockedValue({ $0.files[source.value] }) else {
                throw TransportError.failed(self.host, self.address, what, "cat: \(source): No such file or directory")
            }
            try FS.writeAtomically(Data(bytes), to: local)
            return CommandResult(status: 0, stdout: [], stderr: [])
        }
        _ = try await play(behavior ?? .custom(read), command: RemoteCommand([], timeout: timeout), what: what, onLine: nil, effect: read)
    }

    private func play(_ behavior: Behavior, command: RemoteCommand, what: String,
                      onLine: (@Sendable (OutputLine) -> Void)?,
                      effect: (@Sendable (RemoteCommand) async throws -> CommandResult)? = nil) async throws -> CommandResult {
        if Task.isCancelled { throw TransportError.cancelled(host, address, what) }
        switch behavior {
        case let .result(result, lines):
            state.withLockedValue { $0.performed += 1 }
            for line in lines { onLine?(line) }
            return result
        case let .failBefore(error):
            throw error
        case let .failAfter(error):
            if let effect { _ = try await effect(command) } else { state.withLockedValue { $0.performed += 1 } }
            throw error
        case .hang:
            do {
                try await Task.sleep(for: command.timeout)
            } catch {
                throw TransportError.cancelled(host, address, what)
            }
            throw TransportError.timedOut(host, address, what, after: command.timeout)
        case let .custom(body):
            return try await body(command)
        }
    }
}
