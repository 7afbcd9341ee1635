import CKernelAgentShims
import Foundation

/// Where promote writes, and how: the files of one promotion are published together or not at all. They are
/// written into a staging dir beside the output dir, then swapped in with one `renameat2(RENAME_EXCHANGE)`, so a
/// reader (or a kill) never sees a new cumulative.patch beside an old manifest.lock.
package enum PromoteOutput {
    /// The files promote owns in its output dir; any other entry there means the dir is not promote's to replace.
    package static func ownedNames(host: HostName) -> Set<String> {
        [Promotion.cumulativeName(host), "manifest.lock", "apply-report.txt"]
    }
    static let stagingPrefix = FS.tempPrefix + "promote-"

    /// Refuses an output dir that the output rule refuses (`Policy.admitOutputLocation`: only out/ or build/ of
    /// the checkout), and one that holds a person's files — before anything is created. `out` has been through
    /// `Policy.admitOutputPath` already when a person named it.
    package static func validate(_ out: URL, raw: String?, policy: Policy, owned: Set<String>) throws -> URL {
        let ws = policy.workspace
        let shown = raw.map { "--out '\($0)'" } ?? "output dir \(ws.display(out))"
        // a dir a person named went through `admitOutputPath` already; the derived default is checked here
        if raw == nil { try policy.admitOutputLocation(out, shown: shown) }
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

    /// Publishes the staged `files` as `out`, one unit: they are linked into a staging dir beside `out`, which
    /// then takes `out`'s place in one rename (an exchange when `out` exists).
    /// `journal` (given the staging dir's path, before it is made) journals the unit, so a kill at any later
    /// point leaves nothing the next tree verb cannot finish or remove; `afterSwap` records it. A throw from
    /// `journal` leaves `out` as it was; one from `afterSwap` leaves the journal to finish the unit.
    package static func publish(_ files: [(name: String, file: StagedFile)], to out: URL,
                               journal: (URL) throws -> Void = { _ in }, afterSwap: () throws -> Void = {}) throws {
        let fm = FileManager.default
        let parent = out.deletingLastPathComponent()
        try createDirs(parent)
        removeStaleStaging(in: parent, for: out.lastPathComponent)
        let staging = parent.appendingPathComponent("\(stagingPrefix)\(out.lastPathComponent)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try journal(staging)
        do {
            try fm.createDirectory(at: staging, withIntermediateDirectories: false)
            for f in files {
                try f.file.link(as: staging.appendingPathComponent(f.name))
                CrashPoint.hit("promote staged \(f.name)")
            }
            if FS.exists(out) {
                guard ka_rename_exchange(staging.path, out.path) == 0 else {
                    throw KAError.failure(out.path, "cannot swap in the new output: \(String(cString: strerror(errno)))")
                }
            } else {
                guard rename(staging.path, out.path) == 0 else {
                    throw KAError.failure(out.path, "cannot publish the new output: \(String(cString: strerror(errno)))")
                }
            }
        } catch {
            try? fm.removeItem(at: staging)   // the staging dir is ours alone; the published dir is untouched
            throw error
        }
        CrashPoint.hit("promote swapped")
        try afterSwap()
        CrashPoint.hit("promote recorded")
        // The staging path now holds the previous output (nothing, after a first publish).
        var st = stat()
        if lstat(staging.path, &st) == 0 { try fm.removeItem(at: staging) }
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
                throw KAError.failure(m.path, "cannot create: \(error.localizedDescription)", cause: error)
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

/// One output file of a promotion, written before it is published. It is unnamed (O_TMPFILE) in the nearest
/// existing dir of the output's parent (the file system the staging dir will be on), so nothing shows while it
/// is written, a refusal leaves nothing, and a kill leaves nothing. `PromoteOutput.publish` gives it its name.
/// Where the file system has no O_TMPFILE, a hidden file named like a staging dir (prefix, output name, pid)
/// stands in: removed when this object goes, or after a kill by the next promote's stale-staging sweep.
package final class StagedFile: Sendable {
    let fd: Int32
    /// The named stand-in, when O_TMPFILE was not available.
    let standIn: String?
    /// The output it belongs to, for messages.
    let shown: String

    /// A new, empty staged file for output dir `out`. `unnamed: false` asks for the named stand-in (for tests).
    package static func create(for out: URL, shown: String, unnamed: Bool = true) throws -> StagedFile {
        var dir = out.deletingLastPathComponent().standardizedFileURL
        while !FS.isDirectory(dir), dir.path != "/" { dir = dir.deletingLastPathComponent() }
        if unnamed {
            let fd = ka_open_unnamed(dir.path, 0o644)
            if fd >= 0 { return StagedFile(fd: fd, standIn: nil, shown: shown) }
            guard errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL else {
                throw KAError.failure(shown, "cannot create a staged file in \(dir.path): \(String(cString: strerror(errno)))")
            }
        }
        let name = dir.appendingPathComponent("\(PromoteOutput.stagingPrefix)\(out.lastPathComponent)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        let named = open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard named >= 0 else { throw KAError.failure(shown, "cannot create \(name): \(String(cString: strerror(errno)))") }
        return StagedFile(fd: named, standIn: name, shown: shown)
    }

    private init(fd: Int32, standIn: String?, shown: String) { self.fd = fd; self.standIn = standIn; self.shown = shown }

    deinit {
        close(fd)
        if let standIn { unlink(standIn) }
    }

    /// Gives the file the name `url` (a hard link: the staged file itself stays valid).
    func link(as url: URL) throws {
        let ok = standIn.map { Glibc.link($0, url.path) == 0 } ?? (ka_link_unnamed(fd, url.path) == 0)
        guard ok else { throw KAError.failure(shown, "cannot name the staged file \(url.path): \(String(cString: strerror(errno)))") }
    }

    /// Puts the file at `url` on its own, replacing what is there in one rename (the failing apply check's report).
    func replace(_ url: URL) throws {
        let temp = url.deletingLastPathComponent()
            .appendingPathComponent("\(FS.tempPrefix)\(url.lastPathComponent)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try link(as: temp)
        guard rename(temp.path, url.path) == 0 else {
            let why = String(cString: strerror(errno))
            unlink(temp.path)
            throw KAError.failure(shown, "cannot put \(url.path) in place: \(why)")
        }
    }

    /// `count` bytes from `offset` (short only at the end of the file).
    func read(at offset: Int, count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var done = 0
        try out.withUnsafeMutableBytes { raw in
            while done < count {
                let n = pread(fd, raw.baseAddress! + done, count - done, off_t(offset + done))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw KAError.failure(shown, "cannot read back the staged file: \(String(cString: strerror(errno)))")
                }
                if n == 0 { break }
                done += n
            }
        }
        if done < count { out.removeLast(count - done) }
        return out
    }

    /// Appends all of `bytes`.
    func append(_ bytes: UnsafeRawBufferPointer) throws {
        guard var p = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            let n = Glibc.write(fd, p, left)
            if n < 0 {
                if errno == EINTR { continue }
                throw KAError.failure(shown, "cannot write: \(String(cString: strerror(errno)))")
            }
            p += n
            left -= n
        }
    }
}

/// Buffered appends to a staged file, with the BLAKE2b of everything written (the lock's b2sums are of the
/// files as written, so they are hashed on the way out rather than read back). Without a file it only hashes.
package struct FileSink {
    package let file: StagedFile?
    private var buffer: [UInt8] = []
    private let capacity: Int
    private var hasher = Blake2b()
    /// Bytes written so far.
    package private(set) var count = 0

    private let hashing: Bool

    /// `hashing` false: no BLAKE2b (`finish` returns "").
    package init(_ file: StagedFile?, capacity: Int = 1 << 18, hashing: Bool = true) {
        self.file = file
        self.capacity = capacity
        self.hashing = hashing
        if file != nil { buffer.reserveCapacity(capacity) }
    }

    package mutating func write(_ bytes: UnsafeRawBufferPointer) throws {
        if hashing { Timings.measure("sink b2sum") { hasher.update(bytes) } }
        count += bytes.count
        guard let file else { return }
        if buffer.count + bytes.count > capacity { try flush() }
        if bytes.count >= capacity { try file.append(bytes) } else { buffer.append(contentsOf: bytes) }
    }

    package mutating func write(_ text: String) throws {
        var text = text
        try text.withUTF8 { try write(UnsafeRawBufferPointer($0)) }
    }

    package mutating func write(_ data: Data) throws {
        try data.withUnsafeBytes { try write($0) }
    }

    package mutating func flush() throws {
        guard let file, !buffer.isEmpty else { return }
        try Timings.measure("sink write") { try buffer.withUnsafeBytes { try file.append($0) } }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Flushes, and returns the hex BLAKE2b of all that was written.
    package mutating func finish() throws -> String {
        try flush()
        return hashing ? hasher.hexDigest() : ""
    }
}
