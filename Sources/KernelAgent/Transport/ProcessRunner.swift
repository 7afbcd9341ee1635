import Foundation
import Subprocess
import NIOConcurrencyHelpers
#if canImport(Glibc)
import Glibc
#endif

/// Runs one local program (an argv, never a shell string) in a process group of its own, streams its output line
/// by line, keeps a bounded tail of each stream, and ends the whole group on a timeout or a cancelled task:
/// SIGTERM to the group, SIGKILL after a grace. Built on swift-subprocess.
package enum ProcessRunner {
    /// What the program reads on stdin.
    package enum Input: Sendable {
        case none
        case bytes([UInt8])
        /// Streamed from a local file.
        case file(URL)
    }

    /// Where stdout goes: split into lines for the handler (and the kept tail), or written to a local file as is.
    package enum Sink: Sendable {
        case lines
        case file(URL)
    }

    /// Why the runner ended the program before it finished by itself.
    package enum Stop: String, Sendable, Equatable {
        case timedOut = "timed out"
        case cancelled
    }

    package enum Termination: Sendable, Equatable {
        case exited(Int32)
        case signalled(Int32)
    }

    package struct Outcome: Sendable {
        /// The program's pid, which is also its process group id (0 if it never started).
        package let pid: pid_t
        /// nil when the task was cancelled before the exit status could be read.
        package let termination: Termination?
        /// The last `tailBytes` of each stream (stdout is empty with a file sink).
        package let stdout: [UInt8]
        package let stderr: [UInt8]
        package let stop: Stop?
        package let elapsed: Swift.Duration

        /// The shell's convention: the exit code, or 128 + the signal; -1 when unknown.
        package var status: Int32 {
            switch termination {
            case let .exited(code): return code
            case let .signalled(signal): return 128 + signal
            case nil: return -1
            }
        }
    }

    package static let defaultTailBytes = 64 * 1024
    /// A line longer than this reaches the handler in pieces of this size, so one endless line cannot grow memory.
    package static let maxLineBytes = 64 * 1024

    /// Runs `argv` to the end, or until `timeout` or the task's cancellation. A program that cannot be started is
    /// a `KAError` failure; everything after the start is reported in the `Outcome`, never thrown.
    package static func run(
        _ argv: [[UInt8]],
        stdin: Input = .none,
        stdout sink: Sink = .lines,
        environment: [String: String]? = nil,
        workingDirectory: String? = nil,
        timeout: Swift.Duration,
        grace: Swift.Duration = .seconds(2),
        tailBytes: Int = defaultTailBytes,
        onLine: (@Sendable (OutputLine) -> Void)? = nil
    ) async throws -> Outcome {
        guard let program = argv.first, !program.isEmpty else {
            throw KAError.failure("run a program", "empty argv")
        }
        let name = String(decoding: program, as: UTF8.self)
        guard argv.allSatisfy({ !$0.contains(0) }) else {
            throw KAError.failure(name, "an argument holds a NUL byte, which no argv can carry")
        }
        let start = ContinuousClock.now
        let state = RunState(tailBytes: tailBytes, onLine: onLine)
        var options = PlatformOptions()
        options.processGroupID = 0   // a group of its own, pgid = pid: one kill(-pgid) reaches its descendants
        // The library's own teardown (on cancel) goes to the whole group too; we sweep the group again afterwards.
        options.teardownSequence = [.send(signal: .terminate, toProcessGroup: true, allowedDurationToNextStep: grace)]
        // A bare name is looked up on PATH here, once per name: the library's own lookup costs milliseconds of
        // CPU per call (FilePath work), which a job of many short remote steps would pay every time.
        let path = program.contains(UInt8(ascii: "/")) ? name : ExecutableLookup.resolve(name, path: environment?["PATH"])
        let executable: Executable = path.map { .path(.init(stringLiteral: $0)) } ?? .name(name)
        let env: Environment = environment.map { .custom(Dictionary(uniqueKeysWithValues: $0.map { (Environment.Key(stringLiteral: $0.key), $0.value) })) } ?? .inherit
        // swift-subprocess 1.0.2 hands raw-byte arguments to strdup(): each must carry its own terminating NUL.
        let terminated = argv.map { $0 + [0] }
        var config = Configuration(executable: executable,
                                   arguments: Arguments(executablePathOverride: terminated[0], remainingValues: Array(terminated.dropFirst())),
                                   environment: env, platformOptions: options)
        if let workingDirectory { config.workingDirectory = .init(stringLiteral: workingDirectory) }

        let stdinFile: FileHandle?
        if case let .file(url) = stdin {
            do { stdinFile = try FileHandle(forReadingFrom: url) } catch {
                throw KAError.failure(name, "cannot read stdin file \(url.path): \(error.localizedDescription)", cause: error)
            }
        } else { stdinFile = nil }
        defer { try? stdinFile?.close() }   // a read-only handle: closing it cannot lose data
        let stdoutFile: FileHandle?
        if case let .file(url) = sink {
            guard FileManager.default.createFile(atPath: url.path, contents: nil),
                  let handle = FileHandle(forWritingAtPath: url.path) else {
                throw KAError.failure(name, "cannot create the output file \(url.path)")
            }
            stdoutFile = handle
        } else { stdoutFile = nil }
        defer { try? stdoutFile?.close() }   // its bytes were already checked by synchronize() on success
        if case let .bytes(b) = stdin, !b.isEmpty { ignoreSIGPIPE }
        if stdinFile != nil { ignoreSIGPIPE }

        var termination: Termination?
        var lostTrack: (any Error)?
        do {
            let result = try await runStreaming(config) { execution in
                let pid = execution.processIdentifier.value
                state.started(pid)
                let watchdog = Task {
                    try await Task.sleep(for: timeout)
                    state.stop(.timedOut)
                    await ProcessGroup.end(pid, grace: grace)
                }
                defer { watchdog.cancel() }
                await withTaskGroup(of: Void.self) { group in
                    group.addTask {
                        let writer = execution.standardInputWriter
                        do {
                            switch stdin {
                            case .none: break
                            case let .bytes(bytes):
                                var offset = 0
                                while offset < bytes.count {
                                    let end = min(offset + 64 * 1024, bytes.count)
                                    _ = try await writer.write(Array(bytes[offset..<end]))
                                    offset = end
                                }
                            case .file:
                                while let chunk = try stdinFile?.read(upToCount: 64 * 1024), !chunk.isEmpty {
                                    _ = try await writer.write(Array(chunk))
                                }
                            }
                        } catch {
                            // The program closed its stdin (EPIPE) or was ended: what it did not read is its choice.
                        }
                        try? await writer.finish()
                    }
                    group.addTask {
                        do {
                            for try await buffer in execution.standardOutput {
                                let bytes = buffer.withUnsafeBytes { Array($0) }
                                if let stdoutFile { try stdoutFile.write(contentsOf: bytes) } else { state.feed(.stdout, bytes) }
                            }
                        } catch { state.readFailed(.stdout, error) }
                        state.finish(.stdout)
                    }
                    group.addTask {
                        do {
                            for try await buffer in execution.standardError { state.feed(.stderr, buffer.withUnsafeBytes { Array($0) }) }
                        } catch { state.readFailed(.stderr, error) }
                        state.finish(.stderr)
                    }
                }
            }
            switch result.terminationStatus {
            case let .exited(code): termination = .exited(code)
            case let .signaled(signal): termination = .signalled(signal)
            }
        } catch {
            if state.pid == 0 && !Task.isCancelled {
                throw KAError.failure(name, "cannot start: \(error)", cause: error, hint: "check that \(name) is installed and on PATH")
            }
            if state.pid == 0 { return state.outcome(termination: nil, stop: .cancelled, elapsed: ContinuousClock.now - start) }
            // Started, then cancelled (the group is ended below) or the library lost track of the process.
            lostTrack = error
        }
        if Task.isCancelled { state.stop(.cancelled) }
        let stop = state.stopReason
        if stop != nil || lostTrack != nil, state.pid > 0 {
            // The leader may be gone while a child that ignored SIGTERM lives on in the group.
            let pid = state.pid
            await Task { await ProcessGroup.end(pid, grace: grace) }.value
        }
        if let lostTrack, stop == nil {
            throw KAError.failure(name, "lost track of pid \(state.pid) (its process group was ended): \(lostTrack)")
        }
        if let stdoutFile, stop == nil, termination == .exited(0) {
            do { try stdoutFile.synchronize() } catch {
                throw KAError.failure(name, "cannot write the output file: \(error.localizedDescription)", cause: error)
            }
        }
        if let failure = state.readFailure, stop == nil {
            throw KAError.failure(name, "reading its output failed: \(failure)")
        }
        return state.outcome(termination: termination, stop: stop, elapsed: ContinuousClock.now - start)
    }

    /// Convenience for text argv.
    package static func run(_ argv: [String], stdin: Input = .none, environment: [String: String]? = nil,
                           workingDirectory: String? = nil, timeout: Swift.Duration, grace: Swift.Duration = .seconds(2),
                           tailBytes: Int = defaultTailBytes,
                           onLine: (@Sendable (OutputLine) -> Void)? = nil) async throws -> Outcome {
        try await run(argv.map { Array($0.utf8) }, stdin: stdin, environment: environment, workingDirectory: workingDirectory,
                      timeout: timeout, grace: grace, tailBytes: tailBytes, onLine: onLine)
    }

    /// Writing to a pipe whose reader is gone raises SIGPIPE, which would end this process; ignored, the write
    /// fails with EPIPE instead. Children start with default signal handling (swift-subprocess resets it).
    private static let ignoreSIGPIPE: Void = { _ = signal(SIGPIPE, SIG_IGN) }()
}

/// Finds a program on PATH the way execvp does (the first executable regular file), caching by PATH and name.
enum ExecutableLookup {
    private static let cache = NIOLockedValueBox<[String: String]>([:])

    static func resolve(_ name: String, path: String?) -> String? {
        let searchPath = path ?? ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        let key = searchPath + "\u{0}" + name
        if let hit = cache.withLockedValue({ $0[key] }) { return hit }
        for dir in searchPath.split(separator: ":", omittingEmptySubsequences: true) {
            let candidate = "\(dir)/\(name)"
            var st = stat()
            if stat(candidate, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, access(candidate, X_OK) == 0 {
                cache.withLockedValue { $0[key] = candidate }
                return candidate
            }
        }
        return nil   // the library's lookup then reports it missing
    }
}

/// The library's streaming `run`, called from file scope: inside `ProcessRunner` the name `run` is ours.
private func runStreaming(
    _ config: Configuration,
    body: (Execution<CustomWriteInput, SequenceOutput, SequenceOutput>) async throws -> Void
) async throws -> ExecutionResult<Void, SequenceOutput, SequenceOutput> {
    try await run(config, input: .inputWriter, output: .sequence, error: .sequence, body: body)
}

/// Signals to a whole process group.
package enum ProcessGroup {
    /// True while a process of the group still runs (EPERM: it exists, but is not ours to signal). Zombies do not
    /// count: an orphaned member that died waits for pid 1 to reap it, which may take a moment.
    package static func exists(_ pgid: pid_t) -> Bool {
        guard pgid > 0, kill(-pgid, 0) == 0 || errno == EPERM else { return false }
        return hasLiveMember(pgid)
    }

    /// Scans /proc for a member of the group that is not a zombie; true when /proc cannot tell.
    static func hasLiveMember(_ pgid: pid_t) -> Bool {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return true }
        for entry in entries where entry.utf8.allSatisfy(NameBytes.isDigit) {
            // /proc/<pid>/stat: "pid (comm) state ppid pgrp …"; comm may hold spaces and parentheses.
            let data = readProcFile("/proc/\(entry)/stat")
            guard let close = data.lastIndex(of: UInt8(ascii: ")")) else { continue }
            let fields = data[data.index(after: close)...].split(separator: UInt8(ascii: " "))
            guard fields.count > 2, let pgrp = pid_t(String(decoding: fields[2], as: UTF8.self)), pgrp == pgid else { continue }
            if fields[0].first != UInt8(ascii: "Z") { return true }
        }
        return false
    }

    /// A /proc file says its size is 0, so it is read until EOF (at most 4 KiB; a stat line is far shorter).
    static func readProcFile(_ path: String) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        var total = 0
        while total < buffer.count {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + total, $0.count - total) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            total += n
        }
        return Array(buffer[..<total])
    }

    /// SIGTERM to the group, then SIGKILL to whatever is left after `grace`; returns when the group is gone (or
    /// after one more second, for a process stuck in the kernel).
    package static func end(_ pgid: pid_t, grace: Swift.Duration) async {
        guard pgid > 0, kill(-pgid, 0) == 0 else { return }
        _ = kill(-pgid, SIGTERM)
        _ = kill(-pgid, SIGCONT)   // a stopped process acts on SIGTERM only once it runs again
        let clock = ContinuousClock()
        let termDeadline = clock.now + grace
        // A cancelled caller (the watchdog, once the program ended by itself) stops here; the sweep after the run
        // is never cancelled. Polled: a group's exit wakes nobody (its members need not be our children).
        do {
            while exists(pgid) && clock.now < termDeadline { try await clock.sleep(for: .milliseconds(10)) }
            // Whatever is left, zombies included (SIGKILL to a zombie is harmless).
            guard kill(-pgid, SIGKILL) == 0 else { return }
            let killDeadline = clock.now + .seconds(1)
            while exists(pgid) && clock.now < killDeadline { try await clock.sleep(for: .milliseconds(10)) }
        } catch {
            return
        }
    }
}

/// The mutable state of one run, shared by its reader tasks, the watchdog and the caller.
private final class RunState: Sendable {
    private struct Inner {
        var pid: pid_t = 0
        var stop: ProcessRunner.Stop?
        var splitters: [OutputLine.Stream: LineSplitter] = [.stdout: LineSplitter(), .stderr: LineSplitter()]
        var tails: [OutputLine.Stream: TailBuffer]
        var readFailure: String?
    }
    private let inner: NIOLockedValueBox<Inner>
    /// Held while calling the handler, so it never runs twice at once and sees each stream's lines in order.
    private let handlerLock = NIOLockedValueBox(())
    private let onLine: (@Sendable (OutputLine) -> Void)?

    init(tailBytes: Int, onLine: (@Sendable (OutputLine) -> Void)?) {
        inner = NIOLockedValueBox(Inner(tails: [.stdout: TailBuffer(limit: tailBytes), .stderr: TailBuffer(limit: tailBytes)]))
        self.onLine = onLine
    }

    var pid: pid_t { inner.withLockedValue { $0.pid } }
    var stopReason: ProcessRunner.Stop? { inner.withLockedValue { $0.stop } }
    var readFailure: String? { inner.withLockedValue { $0.readFailure } }

    func started(_ pid: pid_t) { inner.withLockedValue { $0.pid = pid } }
    /// The first reason wins: a timeout that fires while a cancel is being handled stays a cancel.
    func stop(_ reason: ProcessRunner.Stop) { inner.withLockedValue { if $0.stop == nil { $0.stop = reason } } }
    func readFailed(_ stream: OutputLine.Stream, _ error: any Error) {
        if error is CancellationError { return }
        inner.withLockedValue { if $0.readFailure == nil { $0.readFailure = "\(stream): \(error)" } }
    }

    func feed(_ stream: OutputLine.Stream, _ bytes: [UInt8]) {
        handlerLock.withLockedValue { _ in
            let lines = inner.withLockedValue { s -> [[UInt8]] in
                s.tails[stream]?.append(bytes)
                return s.splitters[stream]?.feed(bytes) ?? []
            }
            if let onLine { for line in lines { onLine(OutputLine(stream, line)) } }
        }
    }

    func finish(_ stream: OutputLine.Stream) {
        handlerLock.withLockedValue { _ in
            let last = inner.withLockedValue { $0.splitters[stream]?.finish() }
            if let onLine, let last { onLine(OutputLine(stream, last)) }
        }
    }

    func outcome(termination: ProcessRunner.Termination?, stop: ProcessRunner.Stop?, elapsed: Swift.Duration) -> ProcessRunner.Outcome {
        inner.withLockedValue { s in
            ProcessRunner.Outcome(pid: s.pid, termination: termination, stdout: s.tails[.stdout]?.bytes ?? [],
                                  stderr: s.tails[.stderr]?.bytes ?? [], stop: stop, elapsed: elapsed)
        }
    }
}

/// Splits a byte stream into lines (without their `\n`); a line longer than `ProcessRunner.maxLineBytes` is cut
/// into pieces of that size.
struct LineSplitter: Sendable {
    private var pending: [UInt8] = []

    mutating func feed(_ bytes: [UInt8]) -> [[UInt8]] {
        var lines: [[UInt8]] = []
        for byte in bytes {
            if byte == UInt8(ascii: "\n") {
                lines.append(pending)
                pending.removeAll(keepingCapacity: true)
            } else {
                pending.append(byte)
                if pending.count >= ProcessRunner.maxLineBytes {
                    lines.append(pending)
                    pending.removeAll(keepingCapacity: true)
                }
            }
        }
        return lines
    }

    /// The last line, if the stream did not end with a newline.
    mutating func finish() -> [UInt8]? {
        defer { pending = [] }
        return pending.isEmpty ? nil : pending
    }
}

/// The last `limit` bytes of a stream.
struct TailBuffer: Sendable {
    let limit: Int
    private var storage: [UInt8] = []

    init(limit: Int) { self.limit = max(0, limit) }

    mutating func append(_ bytes: [UInt8]) {
        guard limit > 0 else { return }
        if bytes.count >= limit {
            storage = Array(bytes.suffix(limit))
            return
        }
        storage.append(contentsOf: bytes)
        // Trim in batches, so a stream of small writes costs amortised O(1) per byte.
        if storage.count > 2 * limit { storage.removeFirst(storage.count - limit) }
    }

    var bytes: [UInt8] { storage.count > limit ? Array(storage.suffix(limit)) : storage }
}
