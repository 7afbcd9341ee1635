import Foundation
import NIOConcurrencyHelpers

/// A manifest resolved into the ordered list of patches it applies.
package struct Resolution: Sendable {
    package struct Entry: Sendable {
        package let path: TreePath
        package let patch: PatchFile
        /// Every selector that reached it ("scope board/pinebook-pro", "include …"); more than one = duplicate.
        package let via: [String]
    }

    package let manifest: Manifest
    package let entries: [Entry]
    package var duplicates: [Entry] { entries.filter { $0.via.count > 1 } }
}

extension Resolution.Entry {
    /// For the fuzz targets (Sources/Fuzz), which check a parsed patch without a workspace.
    package init(path: TreePath, patch: PatchFile) { self.init(path: path, patch: patch, via: []) }
}

/// Resolution order (documented in fleet/README.md):
///  1. scope kind, generic first: arch, subsystem, driver, soc, module, board;
///  2. then the patch's directory, C-locale;
///  3. then the order inside that dir: its `series` file, else C-locale file names.
/// The order of lines in the manifest does not matter; a patch reached twice is applied once.
package struct Resolver: Sendable {
    package let workspace: Workspace
    package let policy: Policy
    /// The open blocks a patch is checked against, listed once by the caller (none: nothing is blocked).
    package let openBlocks: [Block]

    package init(workspace: Workspace, policy: Policy, openBlocks: [Block] = []) {
        self.workspace = workspace
        self.policy = policy
        self.openBlocks = openBlocks
    }

    /// The patches `manifest` selects, in resolution order; nothing is read yet. Kept small per patch (indexes,
    /// shared strings): promote holds it while it streams thousands of patches.
    package func select(_ manifest: Manifest) throws -> Selection {
        Timings.mark("resolve: policy, registry, manifest")
        let tree = PatchTree(workspace)
        var order: [TreePath] = []
        var position: [TreePath: Int] = [:]   // in `order`
        var dirRank: [Int32] = []             // per entry of `order`: its place in its dir's own order
        var via: [[String]] = []              // per entry of `order`; equal lists share one array
        var lists: [[String]: [String]] = [:]
        func shared(_ v: [String]) -> [String] {
            if let known = lists[v] { return known }
            lists[v] = v
            return v
        }
        // `excluded:` entries inside a selected dir carve patches out of it (ka yank writes them).
        let carved = manifest.excluded.map(\.raw)
        for sel in manifest.selectors {
            let link = "\(manifest.file):\(sel.line):\(sel.column)"
            let label = "\(sel.kind.rawValue) \(sel.raw)"
            let path: TreePath
            let found: [TreePath]
            do {
                path = try TreePath(sel.raw)
                if sel.kind == .scope, !FS.isDirectory(workspace.url(path)), FS.exists(workspace.url(path)) {
                    throw KAError.refusal("a scope tag names a dir, not a single patch", hint: "list single patches under include:")
                }
                found = try tree.patches(selectedBy: path)
            } catch let e as KAError {
                throw KAError(e.kind, [manifest.file, label] + Self.strip(e.chain, path: sel.raw),
                              hint: e.hint ?? hintForMissing(sel.raw)).withLocation(link)
            }
            for (i, p) in found.enumerated() {
                if !carved.isEmpty, carved.contains(where: { p.value == $0 || p.value.hasPrefix($0 + "/") }) { continue }
                if let k = position[p] {
                    if manifest.hasExplicitOrder, let first = via[k].first {
                        // With an explicit order a patch has exactly one place; two would make its position a guess.
                        throw KAError.refusal(link, label, "patches/\(p.value) is also reached by \(first)",
                                              hint: "with apply_order, list each patch once: drop the single-file include or the dir")
                    }
                    via[k] = shared(via[k] + [label])
                } else {
                    position[p] = order.count
                    order.append(p)
                    dirRank.append(Int32(clamping: i))
                    via.append(shared([label]))
                }
            }
        }
        position = [:]
        Timings.mark("resolve: walk the tree")
        var sequence = Array(order.indices)
        if !manifest.hasExplicitOrder {   // with it, the selectors are already in apply_order; each dir in its own order
            // kind precedence, then the dir (C locale), then the place in the dir: as integers, each dir ranked once
            var dirOf: [String: Int] = [:]
            var dirs: [(name: String, kind: Int)] = []
            let dirIndex = order.map { p -> Int32 in
                let d = p.parent
                if let k = dirOf[d] { return Int32(clamping: k) }
                dirOf[d] = dirs.count
                dirs.append((d, p.kind.precedence))
                return Int32(clamping: dirs.count - 1)
            }
            let byName = dirs.indices.sorted { dirs[$0].name.utf8.lexicographicallyPrecedes(dirs[$1].name.utf8) }
            var dirKey = [Int](repeating: 0, count: dirs.count)
            for (rank, d) in byName.enumerated() { dirKey[d] = dirs[d].kind * (dirs.count + 1) + rank }
            sequence.sort { a, b in
                let ka = dirKey[Int(dirIndex[a])], kb = dirKey[Int(dirIndex[b])]
                return ka != kb ? ka < kb : dirRank[a] < dirRank[b]
            }
        }
        Timings.mark("resolve: select + order \(order.count) patches")
        return Selection(manifest: manifest, paths: sequence.map { order[$0] }, via: sequence.map { via[$0] })
    }

    /// Selects, reads and parses every patch, all held in memory (for callers that need each patch's text).
    /// Promote and status stream instead: see `scan`.
    package func resolve(_ manifest: Manifest) throws -> Resolution {
        let selection = try select(manifest)
        let parsed: [PatchFile]
        do { parsed = try Self.parseAll(selection.paths, in: workspace) } catch let e as KAError {
            throw e.within(manifest.file)
        }
        Timings.mark("resolve: read + parse + hash")
        Timings.flushBuckets()
        let open = openBlocks
        var entries: [Resolution.Entry] = []
        entries.reserveCapacity(parsed.count)
        for (i, patch) in parsed.enumerated() {
            let p = selection.paths[i], reachedBy = selection.via[i]
            try admit(patch, at: p, reachedBy: reachedBy, manifest: manifest, openBlocks: open)
            entries.append(.init(path: p, patch: patch, via: reachedBy))
        }
        return Resolution(manifest: manifest, entries: entries)
    }

    /// The policy's scope rule, then the open blocks that halt a promote of `path`.
    func admit(_ patch: PatchFile, at path: TreePath, reachedBy: [String], manifest: Manifest, openBlocks: [Block]) throws {
        do { try policy.admitPatch(patch, at: path) } catch let e as KAError {
            throw KAError(e.kind, [manifest.file, reachedBy.first ?? "?"] + e.chain, hint: e.hint)
        }
        if let b = openBlocks.first(where: { $0.haltsPromote(of: path.value) }) {
            throw KAError.refusal(manifest.file, reachedBy.first ?? "?", path.value,
                                  "blocked by open \(b.kind.titlePrefix) \(b.id): \(b.title)",
                                  hint: "resolve the block (close its issue) or drop the patch from the manifest")
        }
    }

    private func hintForMissing(_ raw: String) -> String? {
        // The seed's own failure: a renamed dir left a stale include. Suggest a close existing dir, if any.
        guard let all = try? PatchTree(workspace).allPatches() else { return nil }
        let leaf = raw.split(separator: "/").last.map(String.init) ?? raw
        func distance(_ dir: String) -> Int { editDistance(dir.split(separator: "/").last.map(String.init) ?? dir, leaf) }
        let near = Set(all.map(\.parent)).filter { distance($0) <= max(3, leaf.count / 2) || $0.hasPrefix(raw.split(separator: "/").dropLast().joined(separator: "/") + "/") }
        guard let best = near.min(by: { distance($0) < distance($1) }) else {
            return "fix the path in the manifest (after a rename, 'ka migrate-tree' rewrites includes atomically)"
        }
        return "did you mean '\(best)'? fix the path in the manifest (after a rename, 'ka migrate-tree' rewrites includes atomically)"
    }

    /// Drops a leading path that only repeats the selector (the chain already names it).
    static func strip(_ chain: [String], path: String) -> [String] {
        guard let first = chain.first, first == path || first == "'\(path)'" else { return chain }
        return Array(chain.dropFirst())
    }

    /// Reads, parses and hashes `paths` on all cores, and keeps them all. The first failure in `paths` order
    /// is thrown, with a count of the others.
    package static func parseAll(_ paths: [TreePath], in ws: Workspace) throws -> [PatchFile] {
        let n = paths.count
        let results = UnsafeMutableBufferPointer<PatchFile?>.allocate(capacity: max(1, n))
        results.initialize(repeating: nil)
        defer { results.deinitialize(); results.deallocate() }
        let failures = Failures()
        let chunk = max(1, n / 128)
        let chunks = (n + chunk - 1) / chunk
        nonisolated(unsafe) let out = results
        let dir = patchesDirPrefix(ws)
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            for i in (c * chunk)..<min(n, (c + 1) * chunk) {
                switch readPatch(paths[i], under: dir, hashing: true) {
                case let .success(p): out[i] = p
                case let .failure(e): failures.record(i, e)
                }
            }
        }
        try failures.throwFirst()
        return out.compactMap { $0 }
    }

    /// `patches/` as a path prefix: a URL built per patch (`Workspace.url`) cost promote a tenth of its CPU.
    static func patchesDirPrefix(_ ws: Workspace) -> String {
        let dir = ws.patchesDir.path
        return dir.hasSuffix("/") ? dir : dir + "/"
    }

    /// One patch file under `dir` (a `patchesDirPrefix`), read and parsed (and hashed, with `hashing`); a refusal
    /// names `patches/<path>:line`.
    static func readPatch(_ path: TreePath, under dir: String, hashing: Bool) -> Result<PatchFile, KAError> {
        let shown = "patches/" + path.value
        switch Timings.measure("read", { FS.readRegular(dir + path.value) }) {
        case let .success(data):
            do { return .success(try PatchFile(bytes: data, display: shown, hashing: hashing)) } catch let e as KAError {
                return .failure(e)
            } catch {
                return .failure(KAError.failure(path.value, "\(error)", cause: error))
            }
        case let .failure(problem):
            return .failure(KAError.refusal(shown, problem.message, hint: problem.hint))
        }
    }
}

/// The refusals of a run over many patches: the first in resolution order is the one shown (so the message does
/// not depend on thread timing), with a count of the others.
final class Failures: Sendable {
    private struct State { var first: (index: Int, error: KAError)?; var count = 0 }
    private let state = NIOLockedValueBox(State())

    func record(_ i: Int, _ e: KAError) {
        state.withLockedValue { s in
            s.count += 1
            if s.first.map({ i < $0.index }) ?? true { s.first = (i, e) }
        }
    }

    var isEmpty: Bool { state.withLockedValue { $0.first == nil } }

    func throwFirst() throws {
        let (first, count) = state.withLockedValue { ($0.first, $0.count) }
        guard let (_, e) = first else { return }
        guard count > 1 else { throw e }
        throw KAError(e.kind, e.chain + ["(\(count - 1) more patch(es) refused too; this is the first in resolution order)"], hint: e.hint)
    }
}

/// The patches a manifest selects, in resolution order, each with every selector that reached it.
package struct Selection: Sendable {
    package let manifest: Manifest
    package let paths: [TreePath]
    /// Per path: the selectors that reached it ("scope board/pinebook-pro", "include …"); more than one = duplicate.
    package let via: [[String]]
}

extension KAError {
    /// Replaces the first link (the manifest path) with `file:line:col`.
    func withLocation(_ loc: String) -> KAError {
        guard !chain.isEmpty else { return self }
        return KAError(kind, [loc] + chain.dropFirst(), hint: hint)
    }
}
