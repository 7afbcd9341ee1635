import Foundation

/// All-or-nothing changes to `patches/`, `fleet/` and the state they imply (drift marks, campaign records).
///
/// Before each step the prior content is saved under `<state>/txn/<id>/` and a journal records the steps. Any
/// failure undoes every step in reverse. A crash is recovered by the next process that takes the exclusive tree
/// lock (`TreeLock.acquire`), so only a transaction whose owner died is ever touched, by anyone. Once every step
/// and the verification are done the journal is marked committed: from then on recovery finishes the cleanup and
/// never undoes the work.
package final class TreeTransaction {
    package enum Op: Codable, Sendable, CustomStringConvertible {
        case move(from: String, to: String)
        case write(path: String, data: Data)
        case remove(path: String)
        case removeEmptyDir(path: String)
        case state(StateChange)

        package var description: String {
            switch self {
            case let .move(f, t): return "move \(f) → \(t)"
            case let .write(p, _): return "write \(p)"
            case let .remove(p): return "remove \(p)"
            case let .removeEmptyDir(p): return "remove empty dir \(p)"
            case let .state(c): return c.description
            }
        }

        /// The tree paths the step touches, relative to the checkout.
        var paths: [String] {
            switch self {
            case let .move(f, t): return [f, t]
            case let .write(p, _), let .remove(p), let .removeEmptyDir(p): return [p]
            case .state: return []
            }
        }
    }

    /// A state-store change that belongs to the same unit as the tree change (abandon's drift marks).
    package enum StateChange: Codable, Sendable, CustomStringConvertible {
        case markDrifted(host: String, reason: String, at: Date)
        case setCampaign(name: String, status: CampaignStatus, at: Date)

        package var description: String {
            switch self {
            case let .markDrifted(h, _, _): return "mark \(h) drifted"
            case let .setCampaign(n, s, _): return "record campaign \(n) as \(s.rawValue)"
            }
        }
    }

    /// What a state step replaced, so undo can put it back.
    enum PriorState: Codable {
        case drift(DriftRecord?)
        case campaign(CampaignRecord?)
    }

    struct Journal: Codable {
        var id: String
        var ops: [Op]
        var done: Int
        /// For step i: the file that was there before (backup name) or nil if none.
        var backups: [Int: String?]
        var priorState: [Int: PriorState] = [:]
        /// Directories this transaction created (outermost first), removed again on undo if left empty.
        var createdDirs: [String] = []
        var committed = false
    }

    let ws: Workspace
    let id: String
    let dir: URL
    package private(set) var ops: [Op] = []

    package init(_ ws: Workspace) {
        self.ws = ws
        id = "\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max))"
        dir = Self.base(ws).appendingPathComponent(id)
    }

    package func add(_ op: Op) { ops.append(op) }

    static func base(_ ws: Workspace) -> URL { ws.stateDir.appendingPathComponent("txn") }
    static func abs(_ ws: Workspace, _ p: String) -> URL { ws.root.appendingPathComponent(p) }
    /// The temp file step `step` writes before renaming it into place: a known name, so recovery can remove it.
    static func tempName(_ id: String, _ step: Int) -> String { "\(FS.tempPrefix)\(id)-\(step)" }

    /// Refuses, before any step, a path that is not under patches/ or fleet/ once symlinks are resolved.
    func confineAll() throws {
        for op in ops {
            for p in op.paths {
                let parts = p.split(separator: "/", omittingEmptySubsequences: false)
                guard let top = parts.first, top == "patches" || top == "fleet", parts.count > 1,
                      !parts.contains(where: { $0 == ".." || $0 == "." || $0.isEmpty }) else {
                    throw KAError.refusal(p, "is not a path under patches/ or fleet/", hint: "this is a bug in the verb; nothing was changed")
                }
                let within = top == "patches" ? ws.patchesDir : ws.fleetDir
                do { try ws.confine(Self.abs(ws, p), within: within) }
                catch let e as KAError { throw e.within("nothing was changed") }
            }
        }
    }

    /// Runs every step; on any error restores everything and rethrows. `state` receives the `.state` steps.
    package func commit(state: StateStore? = nil, faults: ((String) throws -> Void)? = nil,
                       verify: (() throws -> Void)? = nil) throws {
        try confineAll()
        let fm = FileManager.default
        var journal = Journal(id: id, ops: ops, done: 0, backups: [:])
        do {
            try fm.createDirectory(at: dir, withIntermediateDirectories: true)
            try saveJournal(journal)
        } catch {
            try? fm.removeItem(at: dir)
            throw KAError.failure(ws.display(dir), "cannot write the transaction journal: \(error)", cause: error)
        }
        do {
            for (i, op) in ops.enumerated() {
                CrashPoint.hit("txn step \(i + 1)/\(ops.count): \(op)")
                try faults?("step \(i + 1)/\(ops.count): \(op)")
                switch op {
                case let .move(from, to):
                    try ensureDir(Self.abs(ws, to).deletingLastPathComponent(), &journal)
                    try fm.moveItem(at: Self.abs(ws, from), to: Self.abs(ws, to))
                case let .write(path, data):
                    try ensureDir(Self.abs(ws, path).deletingLastPathComponent(), &journal)
                    journal.backups[i] = .some(try backup(path, step: i))
                    try saveJournal(journal)
                    CrashPoint.hit("txn step \(i + 1) backed up")
                    try FS.writeAtomically(data, to: Self.abs(ws, path), tempName: Self.tempName(id, i))
                case let .remove(path):
                    journal.backups[i] = .some(try backup(path, step: i))
                    try saveJournal(journal)
                    CrashPoint.hit("txn step \(i + 1) backed up")
                    try fm.removeItem(at: Self.abs(ws, path))
                case let .removeEmptyDir(path):
                    let items = try fm.contentsOfDirectory(atPath: Self.abs(ws, path).path)
                    if items.isEmpty { try fm.removeItem(at: Self.abs(ws, path)) }
                case let .state(change):
                    guard let state else { throw KAError.failure("transaction", "a state step without a state store") }
                    journal.priorState[i] = try Self.prior(of: change, in: state)
                    try saveJournal(journal)
                    CrashPoint.hit("txn step \(i + 1) prior state saved")
                    try Self.apply(change, to: state)
                }
                journal.done = i + 1
                try saveJournal(journal)
            }
            CrashPoint.hit("txn verify")
            try faults?("verify")
            try verify?()
            journal.committed = true
            try saveJournal(journal)
        } catch {
            let undoProblems = Self.undo(journal, ws: ws, dir: dir, state: state)
            if undoProblems.isEmpty { try? fm.removeItem(at: dir) }
            let tail = undoProblems.isEmpty ? "rolled back, nothing changed"
                : "rollback incomplete (\(undoProblems.joined(separator: "; "))); the journal stays in \(ws.display(dir)) and the next tree verb retries it"
            if let e = error as? KAError { throw e.within(tail) }
            throw KAError.failure(tail, "\(error)", cause: error)
        }
        // Committed: what is left is cleanup, which recovery also finishes if we die here.
        CrashPoint.hit("txn committed")
        try? fm.removeItem(at: dir)
    }

    private func ensureDir(_ url: URL, _ journal: inout Journal) throws {
        var missing: [URL] = []
        var d = url.standardizedFileURL
        while !FS.exists(d), d.path != ws.root.path, d.path != "/" {
            missing.append(d)
            d = d.deletingLastPathComponent()
        }
        guard !missing.isEmpty else { return }
        journal.createdDirs += missing.reversed().map { ws.display($0) }
        try saveJournal(journal)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    private func backup(_ path: String, step: Int) throws -> String? {
        guard FS.exists(Self.abs(ws, path)) else { return nil }
        let name = "backup-\(step)"
        let dest = dir.appendingPathComponent(name)
        try? FileManager.default.removeItem(at: dest)   // a half copy from a crash at this very step
        try FileManager.default.copyItem(at: Self.abs(ws, path), to: dest)
        return name
    }

    private func saveJournal(_ j: Journal) throws {
        try FS.writeAtomically(try JSONEncoder().encode(j), to: dir.appendingPathComponent("journal.json"))
    }

    static func prior(of change: StateChange, in state: StateStore) throws -> PriorState {
        switch change {
        case let .markDrifted(host, _, _): return .drift(try state.drift(host: host))
        case let .setCampaign(name, _, _): return .campaign(try state.campaign(name))
        }
    }

    static func apply(_ change: StateChange, to state: StateStore) throws {
        switch change {
        case let .markDrifted(host, reason, at): try state.markDrifted(host: host, reason: reason, at: at)
        case let .setCampaign(name, status, at): try state.setCampaign(name, status: status, at: at)
        }
    }

    /// Undo steps 0..<done (and a half-done step `done`) in reverse. Each undo is idempotent. Returns what could
    /// not be undone (then the journal is kept for the next try).
    static func undo(_ j: Journal, ws: Workspace, dir: URL, state: StateStore?) -> [String] {
        let fm = FileManager.default
        var problems: [String] = []
        func attempt(_ what: String, _ body: () throws -> Void) {
            do { try body() } catch { problems.append("\(what): \(error)") }
        }
        func abs(_ p: String) -> URL { Self.abs(ws, p) }
        guard !j.ops.isEmpty else { return [] }
        for i in stride(from: min(j.done, j.ops.count - 1), through: 0, by: -1) {
            CrashPoint.hit("txn undo step \(i + 1)")   // a kill here is recovered by the next holder: undo is idempotent
            switch j.ops[i] {
            case let .move(from, to):
                if FS.exists(abs(to)) && !FS.exists(abs(from)) {
                    attempt("move \(to) back") {
                        try fm.createDirectory(at: abs(from).deletingLastPathComponent(), withIntermediateDirectories: true)
                        try fm.moveItem(at: abs(to), to: abs(from))
                    }
                }
            case let .write(path, _), let .remove(path):
                let temp = abs(path).deletingLastPathComponent().appendingPathComponent(tempName(j.id, i))
                if FS.exists(temp) { attempt("remove \(ws.display(temp))") { try fm.removeItem(at: temp) } }
                guard let entry = j.backups[i] else { continue }   // step never started
                if let name = entry {
                    attempt("restore \(path)") {
                        try FS.writeAtomically(try FS.read(dir.appendingPathComponent(name)), to: abs(path))
                    }
                } else if FS.exists(abs(path)) {
                    attempt("remove \(path)") { try fm.removeItem(at: abs(path)) }
                }
            case let .removeEmptyDir(path):
                if !FS.exists(abs(path)) { attempt("recreate \(path)") { try fm.createDirectory(at: abs(path), withIntermediateDirectories: true) } }
            case let .state(change):
                guard let prior = j.priorState[i] else { continue }   // step never started
                guard let state else { problems.append("\(change): no state store to undo it with"); continue }
                attempt("undo \(change)") {
                    switch prior {
                    case let .drift(record):
                        if let r = record { try state.markDrifted(host: r.host, reason: r.reason, at: r.since) }
                        else if case let .markDrifted(host, _, _) = change { try state.clearDrift(host: host) }
                    case let .campaign(record):
                        if let r = record { try state.setCampaign(r.name, status: r.status, at: r.updatedAt) }
                        else if case let .setCampaign(name, _, _) = change { try state.deleteCampaign(name) }
                    }
                }
            }
        }
        for d in j.createdDirs.reversed() {
            let url = abs(d)
            if let items = try? fm.contentsOfDirectory(atPath: url.path), items.isEmpty { try? fm.removeItem(at: url) }
        }
        return problems
    }

    static func hasJournals(_ ws: Workspace) -> Bool {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: base(ws).path)) ?? []
        return !names.isEmpty
    }

    /// Finishes or undoes every transaction left by a dead process. Only `TreeLock.acquire` calls it, holding
    /// the exclusive lock (the proof), so no live transaction is ever touched.
    @discardableResult
    static func recover(_ ws: Workspace, state: StateStore?, proof: RecoveryProof) throws -> [String] {
        let fm = FileManager.default
        let names = (try? fm.contentsOfDirectory(atPath: base(ws).path)) ?? []
        var recovered: [String] = []
        for id in names.sorted() {
            let d = base(ws).appendingPathComponent(id)
            let journalURL = d.appendingPathComponent("journal.json")
            guard FS.exists(journalURL) else {
                // Killed before its first journal write: it changed nothing.
                try? fm.removeItem(at: d)
                continue
            }
            let j: Journal
            do { j = try JSONDecoder().decode(Journal.self, from: try FS.read(journalURL)) } catch {
                throw KAError.failure(ws.display(journalURL), "unreadable transaction journal: \(error)", cause: error,
                                      hint: "inspect it by hand; the tree may hold a half-done change")
            }
            if !j.committed {
                let problems = undo(j, ws: ws, dir: d, state: state)
                guard problems.isEmpty else {
                    throw KAError.failure(ws.display(d), "cannot undo an interrupted transaction: \(problems.joined(separator: "; "))",
                                          hint: "fix what is named and run any tree verb again")
                }
            } else {
                // Committed, then killed during cleanup: leave the work, drop leftover temp files.
                for (i, op) in j.ops.enumerated() {
                    if case let .write(path, _) = op {
                        let temp = abs(ws, path).deletingLastPathComponent().appendingPathComponent(tempName(j.id, i))
                        try? fm.removeItem(at: temp)
                    }
                }
            }
            try fm.removeItem(at: d)
            recovered.append(id)
        }
        return recovered
    }
}
