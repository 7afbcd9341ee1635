import Foundation

/// The checkout kernel-agent works on: `fleet/`, `patches/`, and the local state dir.
public struct Workspace: Sendable {
    public let root: URL
    public let stateDir: URL

    public init(root: URL, stateDir: URL? = nil) {
        self.root = root.standardizedFileURL
        self.stateDir = (stateDir ?? root.appendingPathComponent(".ka")).standardizedFileURL
    }

    /// From the environment: `KA_ROOT` (default: the working directory) and `KA_STATE_DIR` (default `<root>/.ka`).
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) -> Workspace {
        let cwd = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
        let root = env["KA_ROOT"].map { URL(fileURLWithPath: $0, relativeTo: cwd) } ?? cwd
        let state = env["KA_STATE_DIR"].map { URL(fileURLWithPath: $0, relativeTo: cwd) }
        return Workspace(root: root, stateDir: state)
    }

    public var fleetDir: URL { root.appendingPathComponent("fleet") }
    public var patchesDir: URL { root.appendingPathComponent("patches") }
    public var registryFile: URL { fleetDir.appendingPathComponent("hosts.yaml") }
    public func manifestFile(_ host: HostName) -> URL { fleetDir.appendingPathComponent("\(host.value).yaml") }
    public func defaultOutDir(_ host: HostName) -> URL { root.appendingPathComponent("out").appendingPathComponent(host.value) }
    public func url(_ path: TreePath) -> URL { patchesDir.appendingPathComponent(path.value) }

    /// A path as shown to a person: relative to the root when inside it.
    public func display(_ url: URL) -> String {
        let p = url.standardizedFileURL.path, r = root.path
        if p == r { return "." }
        if p.hasPrefix(r + "/") { return String(p.dropFirst(r.count + 1)) }
        return p
    }
}

public enum FS {
    public static func exists(_ url: URL) -> Bool { FileManager.default.fileExists(atPath: url.path) }

    public static func isDirectory(_ url: URL) -> Bool {
        var dir: ObjCBool = false
        return FileManager.default.fileExists(atPath: url.path, isDirectory: &dir) && dir.boolValue
    }

    public static func read(_ url: URL, display: String? = nil) throws -> Data {
        do { return try Data(contentsOf: url) } catch {
            throw KAError.failure(display ?? url.path, "cannot read: \(error.localizedDescription)")
        }
    }

    /// Whole-file read with one open/fstat/read (Foundation's reader costs more per file, and promote reads thousands).
    public static func readFile(_ path: String) -> Data? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return nil }
        var data = Data(count: Int(st.st_size))
        var total = 0
        let ok = data.withUnsafeMutableBytes { raw -> Bool in
            while total < raw.count {
                let n = Glibc.read(fd, raw.baseAddress! + total, raw.count - total)
                if n < 0 { if errno == EINTR { continue }; return false }
                if n == 0 { break }
                total += n
            }
            return true
        }
        guard ok else { return nil }
        if total < data.count { data.removeSubrange(total...) }
        return data
    }

    /// Write-then-rename, so a reader never sees half a file.
    public static func writeAtomically(_ data: Data, to url: URL) throws {
        let dir = url.deletingLastPathComponent()
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let tmp = dir.appendingPathComponent(".\(url.lastPathComponent).tmp-\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max))")
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

    /// Files below `dir`, as paths relative to it, in C-locale order. Hidden entries are skipped.
    public static func regularFiles(under dir: URL) -> [String] {
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
    public static func realPath(_ url: URL) -> String {
        var existing = url.standardizedFileURL
        var rest: [String] = []
        while true {
            if let p = realpath(existing.path, nil) {
                defer { free(p) }
                return ([String(cString: p)] + rest.reversed()).joined(separator: "/").replacingOccurrences(of: "//", with: "/")
            }
            if existing.path == "/" { return url.standardizedFileURL.path }
            rest.append(existing.lastPathComponent)
            existing = existing.deletingLastPathComponent()
        }
    }
}
