import Foundation

/// The scope-tagged patch tree under `patches/`.
public struct PatchTree: Sendable {
    public let workspace: Workspace

    public init(_ ws: Workspace) { workspace = ws }

    static func isPatchName(_ name: String) -> Bool { name.hasSuffix(".patch") || name.hasSuffix(".diff") }

    /// Refuses a path whose real location (symlinks followed) is outside `patches/`.
    public func confine(_ path: TreePath) throws -> URL {
        let url = workspace.url(path)
        let real = FS.realPath(url)
        let root = FS.realPath(workspace.patchesDir)
        guard real == root || real.hasPrefix(root + "/") else {
            throw KAError.refusal(path.value, "escapes patches/ (symlink to \(real))", hint: "replace the symlink with the patch files themselves")
        }
        return url
    }

    /// The patches a selector names, in their in-dir order: a `series` file if the dir has one, else C-locale
    /// name order; a dir's own patches come before its subdirs' (each subdir ordered the same way).
    public func patches(selectedBy path: TreePath) throws -> [TreePath] {
        let url = try confine(path)
        guard FS.exists(url) else { throw KAError.refusal(path.value, "no such patch dir") }
        if !FS.isDirectory(url) {
            guard Self.isPatchName(path.lastComponent) else {
                throw KAError.refusal(path.value, "not a .patch or .diff file")
            }
            return [path]
        }
        return try patches(inDir: path, url: url)
    }

    private func patches(inDir path: TreePath, url: URL) throws -> [TreePath] {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: url.path) } catch {
            throw KAError.failure(path.value, "cannot list: \(error.localizedDescription)")
        }
        let sorted = names.filter { !$0.hasPrefix(".") }.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        var out: [TreePath] = []
        let seriesURL = url.appendingPathComponent("series")
        if FS.exists(seriesURL) {
            let text = String(decoding: try FS.read(seriesURL), as: UTF8.self)
            for (n, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first?
                    .trimmingCharacters(in: .whitespaces) ?? ""
                if line.isEmpty { continue }
                let where_ = "\(path.value)/series:\(n + 1)"
                guard !line.contains("/") else { throw KAError.refusal(where_, "'\(line)' names a path; a series lists file names of its own dir") }
                let p: TreePath
                do { p = try path.appending(line) } catch let e as KAError { throw e.within(where_) }
                let pu: URL
                do { pu = try confine(p) } catch let e as KAError { throw e.within(where_) }
                guard FS.exists(pu), !FS.isDirectory(pu) else { throw KAError.refusal(where_, "'\(line)': no such patch") }
                out.append(p)
            }
        } else {
            for name in sorted where Self.isPatchName(name) && !FS.isDirectory(url.appendingPathComponent(name)) {
                out.append(try path.appending(name))
            }
        }
        for name in sorted where FS.isDirectory(url.appendingPathComponent(name)) {
            let sub = try path.appending(name)
            out += try patches(inDir: sub, url: try confine(sub))
        }
        return out
    }

    /// Every patch in the tree (for migrate-tree, import and abandon).
    public func allPatches() throws -> [TreePath] {
        var out: [TreePath] = []
        for kind in ScopeKind.allCases {
            let dir = workspace.patchesDir.appendingPathComponent(kind.rawValue)
            guard FS.isDirectory(dir) else { continue }
            out += try patches(inDir: try TreePath(kind.rawValue), url: dir)
        }
        return out
    }
}

