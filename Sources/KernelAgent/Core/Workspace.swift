import Foundation

/// The checkout kernel-agent works on: `fleet/`, `patches/`, and the local state dir.
package struct Workspace: Sendable {
    package let root: URL
    package let stateDir: URL

    /// kernel-agent's own files (`packaging/`, `labels/`): the checkout's when it has them (this project's own
    /// checkout), else `KA_ASSETS_DIR`, else `<bin>/../share/kernel-agent`, else the source tree this binary was
    /// built from. A user's checkout (their manifests and patches) holds none of them.
    /// Looked up when asked (few verbs need it), not at every start.
    package var assetsDir: URL { Self.findAssets(root: root, assetsEnv: assetsEnv) }
    /// `KA_ASSETS_DIR` as the environment gave it.
    private let assetsEnv: String?

    package init(root: URL, stateDir: URL? = nil, env: [String: String] = ProcessInfo.processInfo.environment) {
        self.root = root.standardizedFileURL
        self.stateDir = (stateDir ?? root.appendingPathComponent(".ka")).standardizedFileURL
        assetsEnv = env["KA_ASSETS_DIR"]
    }

    static func findAssets(root: URL, assetsEnv: String?) -> URL {
        func holdsAssets(_ u: URL) -> Bool { FS.exists(u.appendingPathComponent("packaging/remote/build-arch")) }
        if holdsAssets(root) { return root }
        if let d = assetsEnv, !d.isEmpty { return URL(fileURLWithPath: d).standardizedFileURL }
        let exe = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath()
        let share = exe.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("share/kernel-agent")
        if holdsAssets(share) { return share }
        // Sources/KernelAgent/Core/Workspace.swift → the project root
        let built = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return holdsAssets(built) ? built : root
    }

    /// One of kernel-agent's own files, e.g. `packaging/remote/build-arch`.
    package func asset(_ rel: String) -> URL { assetsDir.appendingPathComponent(rel) }

    /// From the environment: `KA_ROOT` (default: the working directory) and `KA_STATE_DIR` (default `<root>/.ka`).
    package static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) -> Workspace {
        let cwd = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
        let root = env["KA_ROOT"].map { URL(fileURLWithPath: $0, relativeTo: cwd) } ?? cwd
        let state = env["KA_STATE_DIR"].map { URL(fileURLWithPath: $0, relativeTo: cwd) }
        return Workspace(root: root, stateDir: state, env: env)
    }

    package var fleetDir: URL { root.appendingPathComponent("fleet") }
    package var patchesDir: URL { root.appendingPathComponent("patches") }
    package var registryFile: URL { fleetDir.appendingPathComponent("hosts.yaml") }
    package func manifestFile(_ host: HostName) -> URL { fleetDir.appendingPathComponent("\(host.value).yaml") }
    /// Where `ka promote` writes a host's outputs: `build/<host>/<baseline.ref>/`, the layout the user's own
    /// ka-promote, ka-build and `.gitignore` use. `ref` is refused when it cannot be one directory name.
    package func promoteDir(_ host: HostName, ref: String, manifest: String) throws -> URL {
        guard !ref.isEmpty, ref != ".", ref != "..", !ref.contains("/"), !ref.contains("\0"),
              !ref.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else {
            throw KAError.refusal(manifest, "baseline.ref '\(ref)' cannot be a directory name under build/\(host)/",
                                  hint: "use a tag or commit without '/', or pass --out")
        }
        return root.appendingPathComponent("build").appendingPathComponent(host.value).appendingPathComponent(ref)
    }

    /// The output dir of a promote before the `build/<host>/<ref>/` layout (kernel-agent up to issue 17).
    package func legacyOutDir(_ host: HostName) -> URL { root.appendingPathComponent("out").appendingPathComponent(host.value) }

    /// A one-line note when an earlier promote left `out/<host>/`, which nothing reads any more; nil otherwise.
    package func legacyOutNote(_ host: HostName) -> String? {
        let old = legacyOutDir(host).appendingPathComponent("manifest.lock")
        guard FS.exists(old) else { return nil }
        return "note: \(display(legacyOutDir(host)))/ is from an earlier promote and is no longer read (outputs are under build/\(host)/<baseline.ref>/ now); remove it when you like"
    }
    package func url(_ path: TreePath) -> URL { patchesDir.appendingPathComponent(path.value) }

    /// Refuses `url` unless, symlinks resolved, it stays inside `dir` — and `dir` inside the checkout. Every file
    /// the agent reads or writes under fleet/ or patches/ goes through here, so a symlink cannot lead out.
    @discardableResult
    package func confine(_ url: URL, within dir: URL) throws -> URL {
        let shown = display(url)
        guard FS.isInside(dir, root) else {
            throw KAError.refusal(display(dir), "leads out of the checkout (to \(FS.realPath(dir)))",
                                  hint: "make \(display(dir)) a real directory inside \(root.path)")
        }
        guard FS.isInside(url, dir) else {
            throw KAError.refusal(shown, "leads out of \(display(dir))/ (symlink to \(FS.realPath(url)))",
                                  hint: "replace the symlink with the file itself")
        }
        return url
    }

    /// A path as shown to a person: relative to the root when inside it.
    package func display(_ url: URL) -> String {
        let p = url.standardizedFileURL.path, r = root.path
        if p == r { return "." }
        if p.hasPrefix(r + "/") { return String(p.dropFirst(r.count + 1)) }
        return p
    }
}

package enum FS {
    /// A lock's holder note (the tree's, a lane's), a plain write to a file of this process's own. FileManager's
    /// atomic write (a temporary file and a rename) was 8% of `ka serve`'s CPU, which takes the tree lock for
    /// every plan (bench-replies). False when it could not be written; the lock is held either way.
    static func writeHolderNote(_ text: String, to path: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var bytes = Array(text.utf8)
        return write(fd, &bytes, bytes.count) == bytes.count
    }

    package static func exists(_ url: URL) -> Bool { FileManager.default.fileExists(atPath: url.path) }

    package static func isDirectory(_ url: URL) -> Bool {
        var dir: ObjCBool = false
        return FileManager.default.fileExists(atPath: url.path, isDirectory: &dir) && dir.boolValue
    }

    /// Reads a regular file (symlinks followed). Anything else — a FIFO, a socket, a device, a directory — is refused
    /// without blocking: a FIFO named `0004-x.patch` must not hang promote.
    package static func read(_ url: URL, display: String? = nil, limit: Int = Int.max) throws -> Data {
        switch readRegular(url.path, limit: limit) {
        case let .success(d): return d
        case let .failure(problem):
            throw KAError.refusal(display ?? url.path, problem.message, hint: problem.hint)
        }
    }

    package struct ReadProblem: Error, Sendable {
        package let message: String
        package let hint: String?
    }

    /// Whole-file read with one open/fstat/read (Foundation's reader costs more per file, and promote reads thousands).
    /// Opened non-blocking so a FIFO cannot stall the open; fstat then refuses everything but a regular file.
    package static func readRegular(_ path: String, limit: Int = Int.max) -> Result<Data, ReadProblem> {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else {
            return .failure(ReadProblem(message: "cannot read: \(String(cString: strerror(errno)))", hint: nil))
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            return .failure(ReadProblem(message: "cannot stat: \(String(cString: strerror(errno)))", hint: nil))
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            return .failure(ReadProblem(message: "not a regular file (\(fileTypeName(st.st_mode)))",
                                        hint: "only regular files are read here; remove or replace it"))
        }
        guard Int(st.st_size) <= limit else {
            return .failure(ReadProblem(message: "too large: \(st.st_size) bytes, the limit is \(limit)",
                                        hint: "split or shorten the file"))
        }
        var data = Data(count: Int(st.st_size))
        var total = 0
        var readError: Int32 = 0
        data.withUnsafeMutableBytes { raw in
            guard let base = raw.baseAddress else { return }
            while total < raw.count {
                let n = Glibc.read(fd, base + total, raw.count - total)
                if n < 0 { if errno == EINTR { continue }; readError = errno; return }
                if n == 0 { break }
                total += n
            }
        }
        if readError != 0 { return .failure(ReadProblem(message: "cannot read: \(String(cString: strerror(readError)))", hint: nil)) }
        if total < data.count { data.removeSubrange(total...) }
        return .success(data)
    }

    static func fileTypeName(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFIFO: return "a FIFO"
        case S_IFSOCK: return "a socket"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFDIR: return "a directory"
        case S_IFLNK: return "a symlink"
        default: return "not a regular file"
        }
    }

    /// Whether `url`, symlinks resolved, lies inside `dir` (also resolved), or is `dir` itself.
    package static func isInside(_ url: URL, _ dir: URL) -> Bool {
        let real = realPath(url), root = realPath(dir)
        return real == root || real.hasPrefix(root == "/" ? "/" : root + "/")
    }

    /// Write-then-rename, so a reader never sees half a file.
    /// `tempName` lets a caller that journals its writes (TreeTransaction) know the temp file's name, so
    /// recovery after a kill can remove it.
    package static func writeAtomically(_ data: Data, to url: URL, tempName: String? = nil) throws {
        let dir = url.deletingLastPathComponent()
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let tmp = dir.appendingPathComponent(tempName ?? "\(tempPrefix)\(url.lastPathComponent)-\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max))")
        let fd = open(tmp.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw KAError.failure(url.path, "cannot write: \(String(cString: strerror(errno)))") }
        var failed: Int32 = 0
        data.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + off, raw.count - off)
                if n < 0 { if errno == EINTR { continue }; failed = errno; return }
                off += n
            }
        }
        close(fd)
        if failed != 0 {
            try? FileManager.default.removeItem(at: tmp)
            throw KAError.failure(url.path, "cannot write: \(String(cString: strerror(failed)))")
        }
        if rename(tmp.path, url.path) != 0 {
            let err = String(cString: strerror(errno))
            try? FileManager.default.removeItem(at: tmp)
            throw KAError.failure(url.path, "cannot write: \(err)")
        }
    }

    /// Every temp file kernel-agent writes starts with this, so a sweep can tell them from a person's files.
    package static let tempPrefix = ".ka-tmp-"

    /// Files below `dir`, as paths relative to it, in C-locale order. Hidden entries are skipped.
    package static func regularFiles(under dir: URL) -> [String] {
        guard let e = FileManager.default.enumerator(at: dir, includingPropertiesForKeys: [.isRegularFileKey],
                                                     options: [.skipsHiddenFiles]) else { return [] }
        let base = dir.standardizedFileURL.path
        var out: [String] = []
        for case let url as URL in e {
            guard (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true else { continue }
            let p = url.standardizedFileURL.path
            if p.hasPrefix(base + "/") { out.append(String(p.dropFirst(base.count + 1))) }
        }
        return out.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
    }

    /// The real path with symlinks resolved; for a path that does not exist yet, its deepest existing
    /// ancestor is resolved and the rest appended (so `link-into-home/new-dir` is caught too).
    /// A dangling symlink is followed through its target (up to 40 links, as the kernel does), so
    /// `out/h1 -> $HOME/gone` resolves into $HOME even before anything is there.
    package static func realPath(_ url: URL) -> String { realPath(url, links: 0) }

    /// A symlink's target as stored; nil when it cannot be read.
    static func readLink(_ path: String) -> String? {
        var buf = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = buf.withUnsafeMutableBufferPointer { b in
            b.baseAddress.map { base in base.withMemoryRebound(to: CChar.self, capacity: b.count) { Glibc.readlink(path, $0, Int(PATH_MAX)) } } ?? -1
        }
        return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : nil
    }

    private static func realPath(_ url: URL, links: Int) -> String {
        var existing = url.standardizedFileURL
        var rest: [String] = []
        while true {
            if let p = realpath(existing.path, nil) {
                defer { free(p) }
                return ([String(cString: p)] + rest.reversed()).joined(separator: "/").replacingOccurrences(of: "//", with: "/")
            }
            var st = stat()
            if links < 40, lstat(existing.path, &st) == 0, (st.st_mode & S_IFMT) == S_IFLNK, let target = readLink(existing.path) {
                let base = target.hasPrefix("/") ? URL(fileURLWithPath: target)
                                                 : existing.deletingLastPathComponent().appendingPathComponent(target)
                let resolved = realPath(base, links: links + 1)
                return ([resolved] + rest.reversed()).joined(separator: "/").replacingOccurrences(of: "//", with: "/")
            }
            if existing.path == "/" { return url.standardizedFileURL.path }
            rest.append(existing.lastPathComponent)
            existing = existing.deletingLastPathComponent()
        }
    }
}
