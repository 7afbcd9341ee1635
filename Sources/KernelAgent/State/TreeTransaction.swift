import Foundation

/// All-or-nothing changes to `patches/` and `fleet/`. Before each step the prior content is saved under
/// `<state>/txn/<id>/` and a journal records the steps; any failure (or a crash, found on the next run by
/// `recoverInterrupted`) undoes every step in reverse, leaving the tree and manifests as they were.
public final class TreeTransaction {
    public enum Op: Codable, Sendable, CustomStringConvertible {
        case move(from: String, to: String)
        case write(path: String, data: Data)
        case remove(path: String)
        case removeEmptyDir(path: String)

        public var description: String {
            switch self {
            case let .move(f, t): return "move \(f) → \(t)"
            case let .write(p, _): return "write \(p)"
            case let .remove(p): return "remove \(p)"
            case let .removeEmptyDir(p): return "remove empty dir \(p)"
            }
        }
    }

    struct Journal: Codable {
        var ops: [Op]
        var done: Int
        /// For step i: the file that was there before (backup name) or nil if none.
        var backups: [Int: String?]
    }

    let ws: Workspace
    let dir: URL
    public private(set) var ops: [Op] = []

    public init(_ ws: Workspace) {
        self.ws = ws
        dir = ws.stateDir.appendingPathComponent("txn").appendingPathComponent("\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max))")
    }

    public func add(_ op: Op) { ops.append(op) }

    func abs(_ p: String) -> URL { ws.root.appendingPathComponent(p) }

    /// Runs every step; on any error restores everything and rethrows.
    public func commit(faults: ((String) throws -> Void)? = nil, verify: (() throws -> Void)? = nil) throws {
        let fm = FileManager.default
        var journal = Journal(ops: ops, done: 0, backups: [:])
        try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        try saveJournal(journal)
        do {
            for (i, op) in ops.enumerated() {
                try faults?("step \(i + 1)/\(ops.count): \(op)")
                switch op {
                case let .move(from, to):
                    try fm.createDirectory(at: abs(to).deletingLastPathComponent(), withIntermediateDirectories: true)
                    try fm.moveItem(at: abs(from), to: abs(to))
                case let .write(path, data):
                    journal.backups[i] = .some(try backup(path, step: i))
                    try saveJournal(journal)
                    try FS.writeAtomically(data, to: abs(path))
                case let .remove(path):
                    journal.backups[i] = .some(try backup(path, step: i))
                    try saveJournal(journal)
                    try fm.removeItem(at: abs(path))
                case let .removeEmptyDir(path):
                    if let items = try? fm.contentsOfDirectory(atPath: abs(path).path), items.isEmpty {
                        try fm.removeItem(at: abs(path))
                    }
                }
                journal.done = i + 1
                try saveJournal(journal)
            }
            try faults?("verify")
            try verify?()
        } catch {
            Self.undo(journal, ws: ws, dir: dir)
            try? fm.removeItem(at: dir)
            if let e = error as? KAError { throw e.within("rolled back, nothing changed") }
            throw KAError.failure("rolled back, nothing changed", "\(error)")
        }
        try? fm.removeItem(at: dir)
    }

    private func backup(_ path: String, step: Int) throws -> String? {
        guard FS.exists(abs(path)) else { return nil }
        let name = "backup-\(step)"
        try FileManager.default.copyItem(at: abs(path), to: dir.appendingPathComponent(name))
        return name
    }

    private func saveJournal(_ j: Journal) throws {
        try FS.writeAtomically(try JSONEncoder().encode(j), to: dir.appendingPathComponent("journal.json"))
    }

    /// Undo steps 0..<done (and a half-done step `done`) in reverse. Each undo is idempotent.
    static func undo(_ j: Journal, ws: Workspace, dir: URL) {
        let fm = FileManager.default
        func abs(_ p: String) -> URL { ws.root.appendingPathComponent(p) }
        for i in stride(from: min(j.done, j.ops.count - 1), through: 0, by: -1) {
            switch j.ops[i] {
            case let .move(from, to):
                if FS.exists(abs(to)) && !FS.exists(abs(from)) {
                    try? fm.createDirectory(at: abs(from).deletingLastPathComponent(), withIntermediateDirectories: true)
                    try? fm.moveItem(at: abs(to), to: abs(from))
                }
            case let .write(path, _), let .remove(path):
                guard let entry = j.backups[i] else { continue }   // step never started
                if let name = entry {
                    let data = fm.contents(atPath: dir.appendingPathComponent(name).path) ?? Data()
                    try? FS.writeAtomically(data, to: abs(path))
                } else {
                    try? fm.removeItem(at: abs(path))
                }
            case let .removeEmptyDir(path):
                try? fm.createDirectory(at: abs(path), withIntermediateDirectories: true)
            }
        }
    }

    /// A transaction interrupted by a crash is rolled back before any tree verb runs.
    @discardableResult
    public static func recoverInterrupted(_ ws: Workspace) -> [String] {
        let base = ws.stateDir.appendingPathComponent("txn")
        guard let ids = try? FileManager.default.contentsOfDirectory(atPath: base.path) else { return [] }
        var recovered: [String] = []
        for id in ids.sorted() {
            let d = base.appendingPathComponent(id)
            guard let data = FileManager.default.contents(atPath: d.appendingPathComponent("journal.json").path),
                  let j = try? JSONDecoder().decode(Journal.self, from: data) else { continue }
            undo(j, ws: ws, dir: d)
            try? FileManager.default.removeItem(at: d)
            recovered.append(id)
        }
        return recovered
    }
}
