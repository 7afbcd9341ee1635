import Foundation
import NIOConcurrencyHelpers
import Testing
@testable import KernelAgent

/// Helpers for the transport tests (local and over the fleet-in-a-box).
enum TransportTestSupport {
    /// Bytes a remote shell could trip on, and bytes that are not UTF-8.
    static let nastyBytes: [UInt8] = Array(" '\"\\;$()`|&<>*?[]{}~#!\n\t\r=%^,-".utf8) + [0x80, 0xbf, 0xc0, 0xc3, 0xfe, 0xff, 0xe2, 0x28]

    /// 1…6 arguments, some empty, mostly made of `nastyBytes` with some letters and a quoted-looking run now and then.
    static func randomArgv(_ rng: inout SeededRandom) -> [RemoteArgument] {
        let count = Int.random(in: 1...6, using: &rng)
        return (0..<count).map { _ in
            let length = Int.random(in: 0...3, using: &rng) == 0 ? 0 : Int.random(in: 1...24, using: &rng)
            var bytes: [UInt8] = []
            for _ in 0..<length {
                switch Int.random(in: 0..<10, using: &rng) {
                case 0..<6: bytes.append(nastyBytes[Int.random(in: 0..<nastyBytes.count, using: &rng)])
                case 6..<8: bytes.append(UInt8.random(in: 0x61...0x7a, using: &rng))
                case 8: bytes.append(contentsOf: Array("'\\''".utf8))
                default: bytes.append(UInt8.random(in: 1...0xff, using: &rng))   // anything but NUL
                }
            }
            return RemoteArgument(bytes)
        }
    }

    /// `printf '%s\0' args…`, whose output is each argument followed by a NUL: what the shell handed over.
    static func echoArgv(_ args: [RemoteArgument]) -> [RemoteArgument] { ["printf", "%s\\0"] + args }

    static func splitNUL(_ bytes: [UInt8]) -> [[UInt8]] {
        var parts = bytes.split(separator: 0, omittingEmptySubsequences: false).map(Array.init)
        if parts.last == [] { parts.removeLast() }
        return parts
    }

    /// Gone, or a zombie waiting for a reaper (it runs no more): orphans are reaped by whoever is pid 1 here.
    static func isGone(_ pid: pid_t) -> Bool {
        if kill(pid, 0) != 0 && errno == ESRCH { return true }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return true }
        return stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
    }

    /// Polls `condition` until it holds or `timeout` passes; returns whether it held.
    static func eventually(_ timeout: Swift.Duration = .seconds(60), every interval: Swift.Duration = .milliseconds(20),
                           _ condition: () async throws -> Bool) async rethrows -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return true }
            try? await Task.sleep(for: interval)
        }
        return try await condition()
    }

    static func tempDir(_ label: String) throws -> URL {
        // Short on purpose: the ssh control sockets live under it.
        let u = URL(fileURLWithPath: "/tmp/ka-\(label)-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))")
        try FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
        return u
    }
}

/// Collects the lines a handler saw, in order.
final class LineCollector: Sendable {
    private let lines = NIOLockedValueBox<[OutputLine]>([])
    var handler: @Sendable (OutputLine) -> Void { { line in self.lines.withLockedValue { $0.append(line) } } }
    var all: [OutputLine] { lines.withLockedValue { $0 } }
    func texts(_ stream: OutputLine.Stream) -> [String] { all.filter { $0.stream == stream }.map(\.text) }
}
