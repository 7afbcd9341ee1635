import Foundation
import NIOConcurrencyHelpers

/// A job's lanes, held across processes: one `flock(2)` per lane on `<state>/locks/lanes/<lane>.lock`, the same
/// kind of OS lock as the tree's. A job from the CLI and one from `ka serve` on the same host never run at once,
/// and a holder that dies releases its lanes with its descriptors.
///
/// A job takes all its lanes or none: it never sits on one lane while it waits for another, so two jobs that
/// want {a, b} and {b, c} cannot deadlock, and a waiting job blocks nobody.
package final class LaneLocks: Sendable {
    package let lanes: [String]
    /// Empty once released.
    private let fds: NIOLockedValueBox<[Int32]>
    private let holderFiles: [URL]

    private init(lanes: [String], fds: [Int32], holderFiles: [URL]) {
        self.lanes = lanes; self.fds = NIOLockedValueBox(fds); self.holderFiles = holderFiles
    }

    deinit { release() }

    package func release() {
        fds.withLockedValue { fds in
            for f in holderFiles { unlink(f.path) }   // a stale note names a dead pid and is filtered out anyway
            for fd in fds { flock(fd, LOCK_UN); close(fd) }
            fds = []
        }
    }

    static func dir(_ ws: Workspace) -> URL { ws.stateDir.appendingPathComponent("locks/lanes") }

    /// `host:fresnel` → `host-fresnel`: lane names become file names, so only safe bytes pass.
    static func fileName(_ lane: String) throws -> String {
        let name = lane.replacingOccurrences(of: ":", with: "-")
        guard !name.isEmpty, name.utf8.count <= 100, name.first != ".",
              name.utf8.allSatisfy({ NameBytes.host($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") }) else {
            throw KAError.failure("lane '\(lane)'", "not a lane name")
        }
        return name
    }

    /// Takes every lane in `lanes` at once, waiting (cancellably) while any is held. `note` is told once
    /// behind whom it waits; with `noWait` a busy lane is a refusal naming its holder.
    package static func acquire(_ ws: Workspace, lanes: [String], holder: String, noWait: Bool = false,
                               note: @Sendable (String) -> Void = { _ in }) async throws -> LaneLocks {
        let sorted = Array(Set(lanes)).sorted()
        let d = dir(ws)
        do { try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true) } catch {
            throw KAError.failure(ws.display(d), "cannot create the lane lock dir: \(error.localizedDescription)", cause: error)
        }
        var fds: [Int32] = []
        for lane in sorted {
            let path = d.appendingPathComponent(try fileName(lane) + ".lock").path
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else {
                for f in fds { close(f) }
                throw KAError.failure(path, "cannot open the lane lock: \(String(cString: strerror(errno)))")
            }
            fds.append(fd)
        }
        let closeAll = { for f in fds { close(f) } }
        var told = false
        var pause: UInt64 = 20_000_000
        while true {
            var taken: [Int32] = []
            var busy: String?
            for (lane, fd) in zip(sorted, fds) {
                if flock(fd, LOCK_EX | LOCK_NB) == 0 { taken.append(fd); continue }
                if errno == EINTR { busy = lane; break }
                guard errno == EWOULDBLOCK else {
                    let e = String(cString: strerror(errno))
                    for t in taken { flock(t, LOCK_UN) }
                    closeAll()
                    throw KAError.failure("lane \(lane)", "flock: \(e)")
                }
                busy = lane
                break
            }
            guard let busyLane = busy else { break }
            for t in taken { flock(t, LOCK_UN) }
            let who = holderNote(ws, lane: busyLane) ?? "another kernel-agent process"
            if noWait {
                closeAll()
                throw KAError.refusal(busyLane, "busy: held by \(who)", hint: "retry when it is done, or drop --no-wait to wait for it")
            }
            if !told { note("waiting for \(busyLane), held by \(who)"); told = true }
            // A blocking flock would hold a thread and could not take all lanes at once; another process's
            // unlock sends no wake-up, so poll, backing off.
            do { try await Task.sleep(nanoseconds: pause) } catch {
                closeAll()
                throw KAError.failure("waiting for \(busyLane)", "cancelled")
            }
            pause = min(pause * 2, 500_000_000)
        }
        var notes: [URL] = []
        let text = "pid \(getpid()): \(holder) (since \(Date.ISO8601FormatStyle().format(Date())))"
        for lane in sorted {
            let f = d.appendingPathComponent(try fileName(lane) + ".holder.\(getpid())")
            // The note only names the holder for others' "waiting for" lines; a lane held without it is still held.
            if FS.writeHolderNote(text, to: f.path) { notes.append(f) }
        }
        return LaneLocks(lanes: sorted, fds: fds, holderFiles: notes)
    }

    /// The live holder's note for `lane`, if any.
    static func holderNote(_ ws: Workspace, lane: String) -> String? {
        guard let base = try? fileName(lane),
              let names = try? FileManager.default.contentsOfDirectory(atPath: dir(ws).path) else { return nil }
        for name in names.sorted() where name.hasPrefix(base + ".holder.") {
            guard let pid = Int32(name.dropFirst(base.count + ".holder.".count)), kill(pid, 0) == 0 || errno == EPERM else { continue }
            if let data = FileManager.default.contents(atPath: dir(ws).appendingPathComponent(name).path) {
                return String(decoding: data, as: UTF8.self)
            }
        }
        return nil
    }
}
