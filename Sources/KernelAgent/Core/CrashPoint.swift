import Foundation
import NIOConcurrencyHelpers

/// Named points where a test may kill the process with SIGKILL, to prove that every write path survives a crash.
/// `KA_CRASH_AT=N` kills at the N-th point reached; `KA_CRASH_TRACE=FILE` appends each point's label to FILE, so
/// a test first counts the points of a run, then kills at random ones. Both unset (production): one branch.
package enum CrashPoint {
    private static let killAt = ProcessInfo.processInfo.environment["KA_CRASH_AT"].flatMap(Int.init)
    private static let trace = ProcessInfo.processInfo.environment["KA_CRASH_TRACE"]
    /// Points reached so far; held while the trace line is written, so lines are in order.
    private static let reached = NIOLockedValueBox(0)

    package static func hit(_ label: String) {
        guard killAt != nil || trace != nil else { return }
        let n = reached.withLockedValue { reached in
            reached += 1
            if let trace, let fh = FileHandle(forWritingAtPath: trace) ?? create(trace) {
                fh.seekToEndOfFile()
                fh.write(Data("\(reached) \(label)\n".utf8))
                fh.closeFile()
            }
            return reached
        }
        if n == killAt { kill(getpid(), SIGKILL) }
    }

    private static func create(_ path: String) -> FileHandle? {
        FileManager.default.createFile(atPath: path, contents: nil)
        return FileHandle(forWritingAtPath: path)
    }
}
