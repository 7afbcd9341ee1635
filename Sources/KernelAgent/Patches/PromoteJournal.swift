import Foundation

/// Promote's journal: publishing the output dir and recording the promotion in the state store are one unit.
/// Before the output swap, the journal names the staging dir and the new lock's b2sum with the record to write.
/// A process killed between the swap and the state write leaves the journal; the next holder of the exclusive
/// tree lock (`TreeLock.acquire`) finishes the unit from what is on disk: the new lock in place means the swap
/// happened, so the record is written (an upsert); either way the staging dir goes.
enum PromoteJournal {
    struct Entry: Codable {
        /// The output dir and the staging dir beside it, absolute.
        let out: String
        let staging: String
        /// The b2sum of the manifest.lock the swap puts in `out`.
        let lockB2sum: String
        let record: PromotionRecord
    }

    static func base(_ ws: Workspace) -> URL { ws.stateDir.appendingPathComponent("txn-promote") }

    /// Writes the journal (synced: it must exist on disk before the swap can). Returns its file.
    static func begin(_ entry: Entry, ws: Workspace) throws -> URL {
        let dir = base(ws)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let url = dir.appendingPathComponent("\(getpid())-\(UInt32.random(in: 0...UInt32.max)).json")
        let data = try JSONEncoder().encode(entry)
        try FS.writeAtomically(data, to: url)
        let fd = open(url.path, O_RDONLY | O_CLOEXEC)
        if fd >= 0 { fsync(fd); close(fd) }
        let dirFD = open(dir.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirFD >= 0 { fsync(dirFD); close(dirFD) }
        CrashPoint.hit("promote journaled")
        return url
    }

    /// The unit is done (or never happened): the journal goes.
    static func end(_ url: URL) throws {
        guard unlink(url.path) == 0 || errno == ENOENT else {
            throw KAError.failure(url.path, "cannot remove promote's journal: \(String(cString: strerror(errno)))")
        }
    }

    static func hasJournals(_ ws: Workspace) -> Bool {
        guard FS.exists(base(ws)) else { return false }
        // a dir that cannot be listed is reported by `recover`, which runs when this says yes
        do { return try FileManager.default.contentsOfDirectory(atPath: base(ws).path).contains { $0.hasSuffix(".json") } }
        catch { return true }
    }

    /// Finishes every promotion a dead process left half done. Only `TreeLock.acquire` calls it, holding the
    /// exclusive lock (the proof): a live promote holds the shared lock until its journal is gone.
    @discardableResult
    static func recover(_ ws: Workspace, state: StateStore?, proof: RecoveryProof) throws -> [String] {
        let dir = base(ws)
        guard FS.exists(dir) else { return [] }
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: dir.path) } catch {
            throw KAError.failure(ws.display(dir), "cannot list promote's journals: \(error.localizedDescription)", cause: error,
                                  hint: "fix the state dir's permissions; an interrupted promote may wait there")
        }
        var finished: [String] = []
        for name in names.sorted() {
            let url = dir.appendingPathComponent(name)
            guard name.hasSuffix(".json") else {
                // a temp file of a journal write that never completed: nothing was swapped after it
                if name.hasPrefix(FS.tempPrefix) { try FileManager.default.removeItem(at: url) }
                continue
            }
            let entry: Entry
            do { entry = try JSONDecoder().decode(Entry.self, from: try FS.read(url)) } catch {
                throw KAError.failure(ws.display(url), "unreadable promote journal: \(error)", cause: error,
                                      hint: "compare \(ws.display(url)) with out/ and `ka status`, then remove it by hand")
            }
            let lock = URL(fileURLWithPath: entry.out).appendingPathComponent("manifest.lock")
            let swapped: Bool
            switch FS.readRegular(lock.path) {
            case let .success(data): swapped = Blake2b.hex(data) == entry.lockB2sum
            case .failure: swapped = false
            }
            if swapped {
                // a read-only verb (status) holds a read-only store, or none: the record needs a writable one
                let writable = state.flatMap { ($0 as? SQLiteStateStore)?.isReadOnly == true ? nil : $0 }
                try (writable ?? SQLiteStateStore.open(ws)).recordPromotion(entry.record)
                CrashPoint.hit("promote recovery recorded")
            }
            let staging = URL(fileURLWithPath: entry.staging)
            var st = stat()
            if lstat(staging.path, &st) == 0 { try FileManager.default.removeItem(at: staging) }
            try end(url)
            finished.append("\(entry.record.host): \(swapped ? "recorded the promotion that was published" : "dropped a promotion that was never published")")
        }
        return finished
    }
}
