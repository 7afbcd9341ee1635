import Foundation
import NIOConcurrencyHelpers

/// The probe host over the agent's transport (OpenSSH for the fleet). Reads are one fixed `sh -c` script each,
/// with the path passed as an argument (`$1`), never spliced into the script; `cmd` probes run their argv as it
/// is. A transport failure (unreachable, timed out, cancelled) is thrown: the evaluator makes it an infra-error.
package struct TransportProbeHost: ProbeHost {
    package let transport: any HostTransport
    /// The hard cap on one read.
    package let readTimeout: Swift.Duration

    package init(transport: any HostTransport, readTimeout: Swift.Duration = .seconds(30)) {
        self.transport = transport; self.readTimeout = readTimeout
    }

    /// Exit 3: a directory; 4: nothing there; 5: no device tree; 6: the path resolves (symlinks, /proc links) to a
    /// place a probe may not read, printed; otherwise head's own status. The tree is read where /proc/device-tree
    /// links to, /sys/firmware/devicetree/base (the fleet-in-a-box shows the booted DTB there too). `[ -L ]` keeps a
    /// dangling symlink "there" (head then fails and says why). What is read is the resolved path, so a link swapped
    /// after the check leads nowhere new.
    static let readScript = """
        p=$1; n=$2
        if [ -n "$3" ]; then [ -d /sys/firmware/devicetree/base ] || exit 5; p=/sys/firmware/devicetree/base$1; fi
        [ -d "$p" ] && exit 3
        [ -e "$p" ] || [ -L "$p" ] || exit 4
        r=$(readlink -f -- "$p") || exit 4
        case "$r" in
          \(ProbeParser.procEscapes.sorted().map { "/proc/*/\($0)|/proc/*/\($0)/*|/proc/*/task/*/\($0)|/proc/*/task/*/\($0)/*" }.joined(separator: "|"))) printf '%s' "$r"; exit 6;;
          \(ProbeParser.fileRoots.map { "\($0)/*" }.joined(separator: "|"))) ;;
          *) printf '%s' "$r"; exit 6;;
        esac
        exec head -c "$n" -- "$r"
        """

    package func readFile(_ path: String) async throws -> ProbeRead {
        try await read(path, deviceTree: false)
    }

    package func readDeviceTree(_ path: String) async throws -> ProbeRead {
        try await read(path, deviceTree: true)
    }

    func read(_ path: String, deviceTree: Bool) async throws -> ProbeRead {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        guard path.hasPrefix("/"), !path.utf8.contains(0), !parts.contains(where: { $0 == ".." || $0 == "." }) else {
            throw KAError.refusal(TransportError.context(transport.host, transport.address), "probe path '\(path)'",
                                  "not a plain absolute path")
        }
        // readScript is a constant; the checked path reaches it only as $1 (one round trip tells dir, missing and content)
        let argv: [RemoteArgument] = ["sh", "-c", RemoteArgument(Self.readScript), "ka-probe", RemoteArgument(path),
                                      RemoteArgument(String(ProbeLimits.fileBytes + 1)), RemoteArgument(deviceTree ? "dt" : "")]
        let r = try await transport.run(RemoteCommand(argv, timeout: readTimeout))
        switch r.status {
        case 0: return .content(Array(r.stdout.prefix(ProbeLimits.fileBytes)), truncated: r.stdout.count > ProbeLimits.fileBytes)
        case 3: return .directory
        case 4: return .missing
        case 5: return .notApplicable("the host has no device tree (/sys/firmware/devicetree/base, /proc/device-tree)")
        case 6:
            let real = String(decoding: r.stdout.prefix(300), as: UTF8.self)
            return .unreadable("\(path) resolves to \(real), outside what a probe may read")
        case 126, 127:
            throw TransportError.failed(transport.host, transport.address, "read \(path)", "sh could not run head (exit \(r.status)): \(r.stderrText)")
        default:
            let why = r.stderrText.trimmingCharacters(in: .whitespacesAndNewlines)
            return .unreadable(why.isEmpty ? "head exited \(r.status)" : String(why.suffix(500)))
        }
    }

    package func run(_ argv: [String], timeout: Swift.Duration) async throws -> ProbeRun {
        guard !argv.isEmpty else {
            throw KAError.refusal(TransportError.context(transport.host, transport.address), "probe command", "empty argv")
        }
        let kept = KeptOutput(limit: ProbeLimits.outputBytes)
        let r = try await transport.run(RemoteCommand(argv.map { RemoteArgument($0) }, timeout: timeout)) { line in
            if line.stream == .stdout { kept.append(line.bytes) }
        }
        let (stdout, truncated) = kept.value
        return ProbeRun(status: r.status, stdout: stdout, truncated: truncated, stderr: Array(r.stderr.suffix(ProbeLimits.shownBytes)))
    }
}

/// The first `limit` bytes of a stream of lines (each given back its newline), and whether there were more.
final class KeptOutput: Sendable {
    private struct State { var bytes: [UInt8] = []; var truncated = false }
    private let state = NIOLockedValueBox(State())
    let limit: Int

    init(limit: Int) { self.limit = limit }

    func append(_ line: [UInt8]) {
        state.withLockedValue { s in
            guard !s.truncated else { return }
            let room = limit - s.bytes.count
            if line.count + 1 <= room {
                s.bytes += line
                s.bytes.append(UInt8(ascii: "\n"))
            } else {
                s.bytes += line.prefix(max(0, room))
                s.truncated = true
            }
        }
    }

    var value: ([UInt8], Bool) { state.withLockedValue { ($0.bytes, $0.truncated) } }
}
