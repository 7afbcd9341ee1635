import Foundation

/// Named points where a test may kill the process with SIGKILL, to prove that every write path survives a crash.
/// `KA_CRASH_AT=N` kills at the N-th point reached; `KA_CRASH_TRACE=FILE` appends each point's label to FILE, so
/// a test first counts the points of a run, then kills at random ones. Both unset (production): one branch.
public enum CrashPoint {
    private final class Counter: @unchecked Sendable {
        let lock = NSLock()
        var reached = 0
        let killAt: Int?
        let trace: String?
        init(_ env: [String: String]) {
            killAt = env["KA_CRASH_AT"].flatMap(Int.init)
            trace = env["KA_CRASH_TRACE"]
        }
    }
    private static let counter = Counter(ProcessInfo.processInfo.environment)

    public static func hit(_ label: String) {
        guard counter.killAt != nil || counter.trace != nil else { return }
        counter.lock.lock()
        counter.reached += 1
        let n = counter.reached
        if let trace = counter.trace, let fh = FileHandle(forWritingAtPath: trace) ?? create(trace) {
            fh.seekToEndOfFile()
            fh.write(Data("\(n) \(label)\n".utf8))
            fh.closeFile()
        }
        counter.lock.unlock()
        if n == counter.killAt { kill(getpid(), SIGKILL) }
    }

    private static func create(_ path: String) -> FileHandle? {
        FileManager.default.createFile(atPath: path, contents: nil)
        return FileHandle(forWritingAtPath: path)
    }
}
