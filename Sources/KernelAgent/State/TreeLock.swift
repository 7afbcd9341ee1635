import Foundation
import NIOConcurrencyHelpers

/// What a verb does to `patches/` and `fleet/`.
package enum TreeAccess: Sendable, Equatable {
    case none
    /// Reads the tree (promote, status): shares it with other readers, never sees a writer's half-done work.
    case read
    /// Changes the tree (import, migrate-tree, abandon, adopt): one writer at a time, across processes.
    case write
}

/// The OS file lock on the tree: `flock(2)` on `<state>/locks/tree.lock`, one open file description per holder,
/// so it excludes across processes (the CLI and `ka serve`) and across threads of one process alike. A holder
/// that dies releases it with its descriptor — which is how recovery knows a journal's owner is dead: a journal
/// seen while holding the exclusive lock belongs to nobody alive.
package final class TreeLock: Sendable {
    package let access: TreeAccess
    /// -1 once released: release() takes it exactly once, even when called twice at once.
    private let fd: NIOLockedValueBox<Int32>
    private let holderFile: URL?

    private init(access: TreeAccess, fd: Int32, holderFile: URL?) {
        self.access = access; self.fd = NIOLockedValueBox(fd); self.holderFile = holderFile
    }

    deinit { release() }

    package func release() {
        let fd = self.fd.withLockedValue { fd in defer { fd = -1 }; return fd }
        guard fd >= 0 else { return }
        if let holderFile { try? FileManager.default.removeItem(at: holderFile) }   // best effort: stale ones are filtered by pid
        flock(fd, LOCK_UN)
        close(fd)
    }

    static func locksDir(_ ws: Workspace) -> URL { ws.stateDir.appendingPathComponent("locks") }

    /// Takes the lock for `access`, first recovering any transaction whose owner died (under the exclusive lock).
    /// When the lock is busy: with `noWait`, refuses naming the holders; otherwise `note` says behind whom it
    /// waits, then it blocks.
    package static func acquire(_ ws: Workspace, access: TreeAccess, state: StateStore?, holder: String,
                               noWait: Bool = false, note: (String) -> Void = { _ in }) throws -> TreeLock {
        guard access != .none else { return TreeLock(access: .none, fd: -1, holderFile: nil) }
        let dir = locksDir(ws)
        do { try FileManager.default.createDirectory(at: dir.appendingPathComponent("holders"), withIntermediateDirectories: true) }
        catch { throw KAError.failure(ws.display(dir), "cannot create the lock dir: \(error.localizedDescription)", cause: error) }
        let path = dir.appendingPathComponent("tree.lock").path
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw KAError.failure(path, "cannot open the tree lock: \(String(cString: strerror(errno)))") }
        let lock = TreeLock(access: access, fd: fd, holderFile: dir.appendingPathComponent("holders")
            .appendingPathComponent("\(getpid())-\(UInt32.random(in: 0...UInt32.max))"))
        let mode = access == .write ? LOCK_EX : LOCK_SH
        if flock(fd, mode | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK else { throw KAError.failure(path, "flock: \(String(cString: strerror(errno)))") }
            let holders = currentHolders(ws)
            let who = holders.isEmpty ? "another kernel-agent process" : holders.joined(separator: "; ")
            if noWait {
                throw KAError.refusal("the patch tree", "busy: held by \(who)",
                                      hint: "retry when it is done, or drop --no-wait to wait for it")
            }
            note("waiting for the patch tree, held by \(who)")
            while flock(fd, mode) != 0 {
                guard errno == EINTR else { throw KAError.failure(path, "flock: \(String(cString: strerror(errno)))") }
            }
        }
        if TreeTransaction.hasJournals(ws) || PromoteJournal.hasJournals(ws) {
            // Recovery needs the exclusive lock; a reader upgrades for it, then shares again.
            if access == .read { try relock(fd, LOCK_EX, path) }
            try TreeTransaction.recover(ws, state: state, proof: RecoveryProof())
            for done in try PromoteJournal.recover(ws, state: state, proof: RecoveryProof()) { note("recovered an interrupted promote: \(done)") }
            if access == .read { try relock(fd, LOCK_SH, path) }
        }
        if let hf = lock.holderFile {
            // FoundationEssentials' ISO 8601 style: the same text as ISO8601DateFormatter without loading an ICU
            // calendar, which cost every verb ~3 ms at start (issue 11 §4)
            let since = Date.ISO8601FormatStyle().format(Date())
            // A note names the holder for others' "waiting for" lines only; a lock held without one is still held.
            _ = FS.writeHolderNote("pid \(getpid()): \(holder) (\(access == .write ? "writing" : "reading") since \(since))", to: hf.path)
        }
        return lock
    }

    private static func relock(_ fd: Int32, _ mode: Int32, _ path: String) throws {
        while flock(fd, mode) != 0 {
            guard errno == EINTR else { throw KAError.failure(path, "flock: \(String(cString: strerror(errno)))") }
        }
    }

    /// Who holds the lock now, from the holder notes of live processes.
    static func currentHolders(_ ws: Workspace) -> [String] {
        let dir = locksDir(ws).appendingPathComponent("holders")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return names.sorted().compactMap { name in
            guard let pid = Int32(name.split(separator: "-").first ?? ""), kill(pid, 0) == 0 || errno == EPERM else { return nil }
            return FileManager.default.contents(atPath: dir.appendingPathComponent(name).path).map { String(decoding: $0, as: UTF8.self) }
        }
    }
}

/// Only `TreeLock.acquire` can make one: recovery runs only under the exclusive lock.
package struct RecoveryProof: Sendable {
    fileprivate init() {}
}
