import Foundation

/// The scope-tagged patch tree under `patches/`.
package struct PatchTree: Sendable {
    package let workspace: Workspace

    package init(_ ws: Workspace) { workspace = ws }

    static func isPatchName(_ name: String) -> Bool { name.hasSuffix(".patch") || name.hasSuffix(".diff") }

    /// `git format-patch --cover-letter` output: a mail with no diff, never applied.
    static func isCoverLetter(_ name: String) -> Bool { name == "0000-cover-letter.patch" }

    /// Refuses a path whose real location (symlinks followed) is outside `patches/`.
    package func confine(_ path: TreePath) throws -> URL {
        let url = workspace.url(path)
        guard FS.isInside(workspace.patchesDir, workspace.root) else {
            throw KAError.refusal("patches/", "leads out of the checkout (to \(FS.realPath(workspace.patchesDir)))",
                                  hint: "make patches/ a real directory inside \(workspace.root.path)")
        }
        guard FS.isInside(url, workspace.patchesDir) else {
            throw KAError.refusal(path.value, "escapes patches/ (symlink to \(FS.realPath(url)))", hint: "replace the symlink with the patch files themselves")
        }
        return url
    }

    /// The patches a selector names, in their in-dir order: a `series` file if the dir has one, else C-locale
    /// name order; a dir's own patches come before its subdirs' (each subdir ordered the same way).
    package func patches(selectedBy path: TreePath) throws -> [TreePath] {
        let url = try confine(path)
        guard FS.exists(url) else {
            throw KAError.refusal(path.value, Self.isPatchName(path.lastComponent) ? "no such patch file" : "no such patch dir")
        }
        if !FS.isDirectory(url) {
            guard Self.isPatchName(path.lastComponent) else {
                throw KAError.refusal(path.value, "not a .patch or .diff file")
            }
            return [path]
        }
        return try patches(inDir: path, url: url)
    }

    private func patches(inDir path: TreePath, url: URL) throws -> [TreePath] {
        var names: [String] = []
        var dirs = Set<String>()
        // readdir's d_type avoids a stat per patch; DT_UNKNOWN and symlinks fall back to stat (symlinks
        // are judged by their target and confined like everything else)
        guard let dp = opendir(url.path) else { throw KAError.failure(path.value, "cannot list: \(String(cString: strerror(errno)))") }
        defer { closedir(dp) }
        while let ent = readdir(dp) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name.hasPrefix(".") { continue }
            names.append(name)
            let type = Int32(ent.pointee.d_type)
            if type == Int32(DT_LNK) || type == Int32(DT_UNKNOWN) {
                // a symlink may point anywhere: judge it by where it leads, before anything reads it
                _ = try confine(try path.appending(name))
            }
            if type == Int32(DT_DIR) || ((type == Int32(DT_LNK) || type == Int32(DT_UNKNOWN)) && FS.isDirectory(url.appendingPathComponent(name))) {
                dirs.insert(name)
            }
        }
        let sorted = names.map { (Array($0.utf8), $0) }.sorted { $0.0.lexicographicallyPrecedes($1.0) }.map(\.1)
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
            for name in sorted where Self.isPatchName(name) && !dirs.contains(name) && !Self.isCoverLetter(name) {
                out.append(try path.appending(name))
            }
        }
        for name in sorted where dirs.contains(name) {
            let sub = try path.appending(name)
            out += try patches(inDir: sub, url: try confine(sub))
        }
        return out
    }

    /// Every patch in the tree (for migrate-tree, import and abandon).
    package func allPatches() throws -> [TreePath] {
        var out: [TreePath] = []
        for kind in ScopeKind.allCases {
            let dir = workspace.patchesDir.appendingPathComponent(kind.rawValue)
            guard FS.isDirectory(dir) else { continue }
            out += try patches(inDir: try TreePath(kind.rawValue), url: dir)
        }
        return out
    }
}

