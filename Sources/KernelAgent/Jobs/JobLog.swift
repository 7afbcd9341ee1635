import Foundation
import NIOConcurrencyHelpers

/// A job's log, `<state>/jobs/<job-id>/log`: every line a step or its remote command printed, time-stamped,
/// appended as it arrives. It survives the process; a resumed job appends to it.
package final class JobLog: Sendable {
    package let url: URL
    private struct State {
        let handle: FileHandle
        var written: UInt64
        var tailLines: [String] = []
        let stamp = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
    }
    private let state: NIOLockedValueBox<State>
    private static let tailKept = 40

    package static func directory(_ ws: Workspace, _ id: JobID) -> URL {
        ws.stateDir.appendingPathComponent("jobs").appendingPathComponent(id.value)
    }

    package static func url(_ ws: Workspace, _ id: JobID) -> URL { directory(ws, id).appendingPathComponent("log") }

    package init(_ ws: Workspace, _ id: JobID) throws {
        let dir = Self.directory(ws, id)
        url = dir.appendingPathComponent("log")
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            if !FileManager.default.fileExists(atPath: url.path) {
                guard FileManager.default.createFile(atPath: url.path, contents: nil) else {
                    throw KAError.failure(url.path, "cannot create the job log")
                }
            }
            let h = try FileHandle(forWritingTo: url)
            state = NIOLockedValueBox(State(handle: h, written: try h.seekToEnd()))
        } catch let e as KAError { throw e } catch {
            throw KAError.failure(url.path, "cannot open the job log: \(error.localizedDescription)", cause: error)
        }
    }

    deinit { state.withLockedValue { try? $0.handle.close() } }   // closing a log we only appended to cannot lose anything already written

    /// Where the next line will start: a step records it, so its own lines can be found again.
    package var offset: UInt64 { state.withLockedValue { $0.written } }

    /// Appends one line, e.g. `2026-11-30T14:12:03.120Z fresnel stdout| …`. A failed write is reported to the
    /// caller once, and the step goes on: the journal, not the log, is the record of what happened.
    package func append(_ source: String, _ text: String, at date: Date = Date()) throws {
        let clean = text.replacingOccurrences(of: "\n", with: "⏎")
        try state.withLockedValue { s in
            let line = "\(s.stamp.format(date)) \(source)| \(clean)\n"
            s.tailLines.append("\(source)| \(clean)")
            if s.tailLines.count > Self.tailKept { s.tailLines.removeFirst(s.tailLines.count - Self.tailKept) }
            let data = Data(line.utf8)
            do { try s.handle.write(contentsOf: data) } catch {
                throw KAError.failure(url.path, "cannot append to the job log: \(error.localizedDescription)", cause: error)
            }
            s.written += UInt64(data.count)
        }
    }

    /// The last lines this process appended (for the status comment), newest last.
    package func recentLines(_ n: Int) -> [String] {
        state.withLockedValue { Array($0.tailLines.suffix(n)) }
    }

    /// The last `n` lines of a job's log file, read from the end (for `ka jobs show`, in any process).
    package static func tail(_ url: URL, lines n: Int, maxBytes: Int = 256 * 1024) throws -> [String] {
        guard FileManager.default.fileExists(atPath: url.path) else { return [] }
        do {
            let h = try FileHandle(forReadingFrom: url)
            defer { try? h.close() }   // read-only handle
            let size = try h.seekToEnd()
            let start = size > UInt64(maxBytes) ? size - UInt64(maxBytes) : 0
            try h.seek(toOffset: start)
            let data = try h.readToEnd() ?? Data()
            var lines = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
            if start > 0, !lines.isEmpty { lines.removeFirst() }   // a partial first line
            return Array(lines.suffix(n))
        } catch {
            throw KAError.failure(url.path, "cannot read the job log: \(error.localizedDescription)", cause: error)
        }
    }
}
