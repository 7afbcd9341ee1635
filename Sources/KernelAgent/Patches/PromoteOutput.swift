import CKernelAgentShims
import Foundation

/// Where promote writes, and how: the files of one promotion are published together or not at all. They are
/// written into a staging dir beside the output dir, then swapped in with one `renameat2(RENAME_EXCHANGE)`, so a
/// reader (or a kill) never sees a new cumulative.patch beside an old manifest.lock.
public enum PromoteOutput {
    /// The files promote owns in its output dir; any other entry there means the dir is not promote's to replace.
    public static func ownedNames(_ layout: PromoteVerb.Layout, host: HostName) -> Set<String> {
        switch layout {
        case .ka: return ["cumulative.patch", "manifest.lock", "apply-report.txt"]
        case .upstream: return [Promotion.upstreamCumulativeName(host), "manifest.lock", "apply-report.txt"]
        }
    }
    static let stagingPrefix = FS.tempPrefix + "promote-"

    /// Refuses an output dir that would overwrite the tree, the checkout, or a person's files, and a path the
    /// file system would reject — before anything is created.
    public static func validate(_ out: URL, raw: String?, ws: Workspace, derived: Bool, owned: Set<String>) throws -> URL {
        let shown = raw.map { "--out '\($0)'" } ?? "output dir \(ws.display(out))"
        if let raw, raw.trimmingCharacters(in: .whitespaces).isEmpty {
            throw KAError.refusal("--out", "is empty", hint: "name a directory, e.g. --out out/fresnel")
        }
        let path = out.standardizedFileURL.path
        guard path.utf8.count < Int(PATH_MAX) else {
            throw KAError.refusal(shown, "the path is \(path.utf8.count) bytes; the limit is \(PATH_MAX - 1)", hint: "use a shorter path")
        }
        if let long = path.split(separator: "/").first(where: { $0.utf8.count > Int(NAME_MAX) }) {
            throw KAError.refusal(shown, "a path component is \(long.utf8.count) bytes; the limit is \(NAME_MAX)", hint: "use shorter names")
        }
        let real = FS.realPath(out)
        let root = FS.realPath(ws.root)
        guard real != root, real != "/" else {
            throw KAError.refusal(shown, "is the checkout (or /) itself", hint: "use a dir of its own, e.g. out/<host>")
        }
        for (dir, name) in [(ws.patchesDir, "patches/"), (ws.fleetDir, "fleet/"), (ws.root.appendingPathComponent(".git"), ".git/"),
                            (ws.stateDir, "the state dir")] where FS.isInside(out, dir) || FS.isInside(dir, out) {
            throw KAError.refusal(shown, "lies in or contains \(name)", hint: "use a dir of its own, e.g. out/<host>")
        }
        if derived && !FS.isInside(out, ws.root) {
            throw KAError.refusal(shown, "leads out of the checkout (to \(real))",
                                  hint: "make out/ a real directory in the checkout, or pass --out explicitly")
        }
        if FS.exists(out) {
            guard FS.isDirectory(out) else { throw KAError.refusal(shown, "exists and is not a directory") }
            let entries = try FileManager.default.contentsOfDirectory(atPath: out.path)
            let foreign = entries.filter { !owned.contains($0) }.sorted()
            if !foreign.isEmpty {
                throw KAError.refusal(shown, "holds files promote did not write (\(foreign.prefix(3).joined(separator: ", "))\(foreign.count > 3 ? ", …" : ""))",
                                      hint: "promote replaces its output dir whole; point --out at an empty or promote-owned dir")
            }
        }
        return out
    }

    /// Writes `files` into `out` as one unit.
    public static func publish(_ files: [(name: String, data: Data)], to out: URL) throws {
        let fm = FileManager.default
        let parent = out.deletingLastPathComponent()
        try createDirs(parent)
        removeStaleStaging(in: parent, for: out.lastPathComponent)
        let staging = parent.appendingPathComponent("\(stagingPrefix)\(out.lastPathComponent)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        do {
            try fm.createDirectory(at: staging, withIntermediateDirectories: false)
            for f in files {
                guard fm.createFile(atPath: staging.appendingPathComponent(f.name).path, contents: f.data) else {
                    throw KAError.failure(out.path, "cannot write \(f.name) in \(staging.path)")
                }
                CrashPoint.hit("promote staged \(f.name)")
            }
            if FS.exists(out) {
                guard ka_rename_exchange(staging.path, out.path) == 0 else {
                    throw KAError.failure(out.path, "cannot swap in the new output: \(String(cString: strerror(errno)))")
                }
                CrashPoint.hit("promote swapped")
            } else {
                guard rename(staging.path, out.path) == 0 else {
                    throw KAError.failure(out.path, "cannot publish the new output: \(String(cString: strerror(errno)))")
                }
                return
            }
        } catch {
            try? fm.removeItem(at: staging)   // the staging dir is ours alone; the published dir is untouched
            throw error
        }
        // The staging path now holds the previous output.
        try fm.removeItem(at: staging)
    }

    /// Creates `dir` and its missing ancestors; on failure removes those it created.
    static func createDirs(_ dir: URL) throws {
        var missing: [URL] = []
        var d = dir.standardizedFileURL
        while !FS.exists(d), d.path != "/" { missing.append(d); d = d.deletingLastPathComponent() }
        var created: [URL] = []
        for m in missing.reversed() {
            do { try FileManager.default.createDirectory(at: m, withIntermediateDirectories: false); created.append(m) } catch {
                for c in created.reversed() { try? FileManager.default.removeItem(at: c) }
                throw KAError.failure(m.path, "cannot create: \(error.localizedDescription)")
            }
        }
    }

    /// Staging dirs of a promote that was killed (its pid is gone) are removed by the next one.
    static func removeStaleStaging(in parent: URL, for name: String) {
        let prefix = "\(stagingPrefix)\(name)-"
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: parent.path)) ?? []
        for e in entries where e.hasPrefix(prefix) {
            let rest = e.dropFirst(prefix.count).split(separator: "-")
            guard let pidText = rest.first, let pid = Int32(pidText) else { continue }
            if pid == getpid() || kill(pid, 0) == 0 || errno == EPERM { continue }
            try? FileManager.default.removeItem(at: parent.appendingPathComponent(e))
        }
    }
}
