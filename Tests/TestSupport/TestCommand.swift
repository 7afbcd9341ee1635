import Foundation
import NIOConcurrencyHelpers

/// The tests' blocking runner of external tools (git, patch, b2sum, `ka` itself): an argv array, never a shell
/// string. The agent runs its processes through swift-subprocess (ProcessRunner); this stays with the tests,
/// which want the whole output at once. Await it through `offPool`, never on the cooperative pool.
public enum TestCommand {
    public struct Result: Sendable {
        public let status: Int32
        public let stdout: Data
        public let stderr: Data
        public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
        public var stderrText: String { String(decoding: stderr, as: UTF8.self) }
    }

    /// Runs `argv` on a thread of its own and waits without holding a thread of Swift's cooperative pool (2 on a
    /// 2-core machine): a test that blocked the pool (22 s of generating a tree, once) starved every in-process
    /// client of the run, His's MCP client above all. The only way to run a tool from a test.
    public static func run(_ argv: [String], cwd: URL? = nil, stdin: Data? = nil,
                           environment: [String: String]? = nil) async throws -> Result {
        try await offPool { try runBlocking(argv, cwd: cwd, stdin: stdin, environment: environment) }
    }

    /// The blocking runner, for code already on a thread of its own (inside `offPool`).
    public static func runBlocking(_ argv: [String], cwd: URL? = nil, stdin: Data? = nil,
                                   environment: [String: String]? = nil) throws -> Result {
        guard let program = argv.first else { throw TestCommandError.emptyArgv }
        let p = Process()
        if program.contains("/") {
            p.executableURL = URL(fileURLWithPath: program)
            p.arguments = Array(argv.dropFirst())
        } else {
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = argv
        }
        if let cwd { p.currentDirectoryURL = cwd }
        if let environment { p.environment = environment }
        let out = Pipe(), err = Pipe(), inp = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = stdin == nil ? FileHandle.nullDevice : inp
        do { try p.run() } catch {
            throw TestCommandError.cannotStart(program, error)
        }
        if let stdin {
            DispatchQueue.global().async {
                inp.fileHandleForWriting.write(stdin)
                try? inp.fileHandleForWriting.close()
            }
        }
        // Drain both pipes concurrently so a chatty child never blocks on a full pipe.
        let group = DispatchGroup()
        nonisolated(unsafe) var errData = Data()
        group.enter()
        DispatchQueue.global().async {
            errData = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: outData, stderr: errData)
    }
}

public enum TestCommandError: Error, CustomStringConvertible {
    case emptyArgv
    case cannotStart(String, Error)
    public var description: String {
        switch self {
        case .emptyArgv: return "empty argv"
        case let .cannotStart(program, error): return "\(program): cannot start: \(error.localizedDescription)"
        }
    }
}

/// Runs blocking work (a child process, a socket) on a thread of its own and awaits it, so the cooperative pool,
/// 2 threads on a 2-core machine, stays free for the tests' async work and in-process servers. At most
/// `ToolSlots.shared` of them run at once: off the pool, every test of the run could start a tool together, and a
/// His stand-in that needs 1.5 s of CPU to start got 0.9 s in 20 s (a full run's first minute).
public func offPool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    await ToolSlots.shared.acquire()
    defer { ToolSlots.shared.release() }
    return try await withCheckedThrowingContinuation { cont in
        Thread { cont.resume(with: Result { try work() }) }.start()
    }
}

/// A counting semaphore that waits without holding a thread.
public final class ToolSlots: Sendable {
    /// Tools the tests run at once: the cores and two more (a tool is often waiting on I/O or a peer).
    public static let shared = ToolSlots(ProcessInfo.processInfo.activeProcessorCount + 2)
    private struct State { var free: Int; var waiting: [CheckedContinuation<Void, Never>] = [] }
    private let state: NIOLockedValueBox<State>

    public init(_ count: Int) { state = NIOLockedValueBox(State(free: max(1, count))) }

    public func acquire() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLockedValue { s -> Bool in
                if s.free > 0 { s.free -= 1; return true }
                s.waiting.append(c)
                return false
            }
            if now { c.resume() }
        }
    }

    public func release() {
        let next = state.withLockedValue { s -> CheckedContinuation<Void, Never>? in
            if s.waiting.isEmpty { s.free += 1; return nil }
            return s.waiting.removeFirst()
        }
        next?.resume()
    }
}
