import Foundation

/// One line a remote (or local) command printed, as it arrived. Bytes, not text: a remote tool may print anything.
package struct OutputLine: Sendable, Equatable {
    package enum Stream: String, Sendable { case stdout, stderr }
    package let stream: Stream
    package let bytes: [UInt8]
    package init(_ stream: Stream, _ bytes: [UInt8]) { self.stream = stream; self.bytes = bytes }
    package var text: String { String(decoding: bytes, as: UTF8.self) }
}

/// What a finished command left: its exit status and the tail of what it printed (bounded, so a chatty tool
/// cannot grow the agent's memory; every line went to the line handler as it came).
package struct CommandResult: Sendable, Equatable {
    package let status: Int32
    package let stdout: [UInt8]
    package let stderr: [UInt8]
    package init(status: Int32, stdout: [UInt8], stderr: [UInt8]) { self.status = status; self.stdout = stdout; self.stderr = stderr }
    package var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    package var stderrText: String { String(decoding: stderr, as: UTF8.self) }
    package var succeeded: Bool { status == 0 }
}

/// One argument of a remote argv. Bytes, so that a file name which is not UTF-8 reaches the host unchanged.
package struct RemoteArgument: Sendable, Equatable, ExpressibleByStringLiteral, CustomStringConvertible {
    package let bytes: [UInt8]
    package init(_ bytes: [UInt8]) { self.bytes = bytes }
    package init(_ text: String) { self.bytes = Array(text.utf8) }
    package init(stringLiteral value: String) { self.init(value) }
    package var description: String { String(decoding: bytes, as: UTF8.self) }
}

/// A command to run on a host: an argv (never a shell string), optional stdin, and a hard wall-clock cap.
package struct RemoteCommand: Sendable {
    package var argv: [RemoteArgument]
    package var stdin: [UInt8]?
    /// The whole call, connection included. ssh's own timeouts do not bound a half-dead sshd that accepts and
    /// then stalls, so this cap always applies.
    package var timeout: Swift.Duration
    package init(_ argv: [RemoteArgument], stdin: [UInt8]? = nil, timeout: Swift.Duration = .seconds(60)) {
        self.argv = argv; self.stdin = stdin; self.timeout = timeout
    }
    /// The argv as a person would read it in a log or an error.
    package var shown: String { argv.map(\.description).joined(separator: " ") }
}

/// How the agent reaches one host: OpenSSH for real hosts, local for this machine, a fake for unit tests.
/// A timeout or a cancelled task ends the command on both sides, the remote process group included.
package protocol HostTransport: Sendable {
    var host: HostName { get }
    /// Where the host is, shown in every error, e.g. `kbuild@10.77.0.3:22`.
    var address: String { get }
    /// Runs `command`; each output line goes to `onLine` as it arrives. A non-zero exit is a result, not an
    /// error; unreachable, timed out and cancelled are errors naming the host and its address.
    func run(_ command: RemoteCommand, onLine: (@Sendable (OutputLine) -> Void)?) async throws -> CommandResult
    /// Copies a local file to an absolute path on the host (under the roots the seed allows).
    func copy(_ local: URL, toRemote path: String, timeout: Swift.Duration) async throws
    /// Copies an absolute path on the host to a local file.
    func copy(fromRemote path: String, to local: URL, timeout: Swift.Duration) async throws
}

extension HostTransport {
    package func run(_ command: RemoteCommand) async throws -> CommandResult { try await run(command, onLine: nil) }
}
