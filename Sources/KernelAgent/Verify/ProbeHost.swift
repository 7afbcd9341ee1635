import Foundation

/// What reading a file or a device-tree entry on a host found.
package enum ProbeRead: Sendable, Equatable {
    /// The bytes, at most `ProbeLimits.fileBytes`; `truncated` when there were more.
    case content([UInt8], truncated: Bool)
    /// The path is a directory (a device-tree node is one).
    case directory
    /// Nothing is at the path.
    case missing
    /// Something is there but reading it failed (a sysfs attribute that answers EIO, a permission); the host's words.
    case unreadable(String)
    /// The host cannot have this at all (a device-tree probe on a host without /proc/device-tree).
    case notApplicable(String)
}

/// What a `cmd` probe's program did.
package struct ProbeRun: Sendable, Equatable {
    /// The exit status; 127 means the program is not on the host, 126 that it could not be run.
    package let status: Int32
    /// At most `ProbeLimits.outputBytes` of stdout; `truncated` when there was more.
    package let stdout: [UInt8]
    package let truncated: Bool
    /// The tail of stderr, for the result.
    package let stderr: [UInt8]

    package init(status: Int32, stdout: [UInt8], truncated: Bool = false, stderr: [UInt8] = []) {
        self.status = status; self.stdout = stdout; self.truncated = truncated; self.stderr = stderr
    }
}

/// The host a probe reads. Every method throws only when the host could not be asked (unreachable, timed out,
/// cancelled): that is an infra-error. What the host answered, a missing file included, is a value.
/// Real: `TransportProbeHost` (any `HostTransport`); tests: `FakeProbeHost`.
package protocol ProbeHost: Sendable {
    /// Reads an absolute path (a probe's `file` subject).
    func readFile(_ path: String) async throws -> ProbeRead
    /// Reads under /proc/device-tree: `path` is a node path (`/opp-table-1/opp-2184000000`), or a node path and a
    /// property joined by `/` (a property is a file in its node's directory).
    func readDeviceTree(_ path: String) async throws -> ProbeRead
    /// Runs `argv` on the host without a shell.
    func run(_ argv: [String], timeout: Swift.Duration) async throws -> ProbeRun
}
