import Foundation

/// A manifest resolved into the ordered list of patches it applies.
public struct Resolution: Sendable {
    public struct Entry: Sendable {
        public let path: TreePath
        public let patch: PatchFile
        /// Every selector that reached it ("scope board/pinebook-pro", "include …"); more than one = duplicate.
        public let via: [String]
    }

    public let manifest: Manifest
    public let entries: [Entry]
    /// cumulative.patch and its b2sum, built while the patches were parsed (see `Resolver.parseAll`).
    public var cumulative: (data: Data, b2sum: String)?
    public var duplicates: [Entry] { entries.filter { $0.via.count > 1 } }
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
public struct Resolver: Sendable {
    public let workspace: Workspace
    public let policy: Policy
    public let blocks: BlockStore?

    public init(workspace: Workspace, policy: Policy, blocks: BlockStore?) {
        self.workspace = workspace
        self.policy = policy
        self.blocks = blocks
    }

    public func resolve(_ manifest: Manifest) throws -> Resolution {
        Timings.mark("resolve: policy, registry, manifest")
        let tree = PatchTree(workspace)
        var order: [TreePath] = []
        var via: [TreePath: [String]] = [:]
        var dirRank: [TreePath: Int] = [:]   // position inside its dir's own order
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
                if manifest.hasExplicitOrder, let first = via[p]?.first {
                    // With an explicit order a patch has exactly one place; two would make its position a guess.
                    throw KAError.refusal(link, label, "patches/\(p.value) is also reached by \(first)",
                                          hint: "with apply_order, list each patch once: drop the single-file include or the dir")
                }
                if via[p] == nil { order.append(p); dirRank[p] = i }
                via[p, default: []].append(label)
            }
        }
        // Read + parse in parallel; the parse also hashes, which is most of the cost.
        Timings.mark("resolve: walk the tree")
        let paths: [TreePath]
        if manifest.hasExplicitOrder {
            paths = order   // the selectors are already in apply_order; each dir in its own order
        } else {
            let keyed = order.map { p in (p, p.kind.precedence, Array(p.parent.utf8), dirRank[p] ?? 0) }
            paths = keyed.sorted { a, b in
                if a.1 != b.1 { return a.1 < b.1 }
                if a.2 != b.2 { return a.2.lexicographicallyPrecedes(b.2) }
                return a.3 < b.3
            }.map(\.0)
        }
        Timings.mark("resolve: select + order \(paths.count) patches")
        let parsed: [PatchFile], cumulative: (data: Data, b2sum: String)?
        do { (parsed, cumulative) = try Self.parseAll(paths, in: workspace, buildCumulative: true) } catch let e as KAError {
            throw e.within(manifest.file)
        }
        Timings.mark("resolve: read + parse + hash")
        Timings.flushBuckets()
        let open = try blocks?.openBlocks() ?? []
        var entries: [Resolution.Entry] = []
        entries.reserveCapacity(paths.count)
        for (p, patch) in zip(paths, parsed) {
            let reachedBy = via[p] ?? []
            do { try policy.admitPatch(patch, at: p) } catch let e as KAError {
                throw KAError(e.kind, [manifest.file, reachedBy.first ?? "?"] + e.chain, hint: e.hint)
            }
            if let b = open.first(where: { $0.haltsPromote(of: p.value) }) {
                throw KAError.refusal(manifest.file, reachedBy.first ?? "?", p.value,
                                      "blocked by open \(b.kind.titlePrefix) \(b.id): \(b.title)",
                                      hint: "resolve the block (close its issue) or drop the patch from the manifest")
            }
            entries.append(.init(path: p, patch: patch, via: reachedBy))
        }
        return Resolution(manifest: manifest, entries: entries, cumulative: cumulative)
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

    /// Reads, parses and hashes `paths` on all cores. With `buildCumulative`, a third thread concatenates
    /// and hashes the patches in order as the chunks complete, so cumulative.patch costs no extra pass.
    public static func parseAll(_ paths: [TreePath], in ws: Workspace, buildCumulative: Bool = false) throws -> ([PatchFile], (data: Data, b2sum: String)?) {
        let n = paths.count
        let results = UnsafeMutableBufferPointer<PatchFile?>.allocate(capacity: max(1, n))
        results.initialize(repeating: nil)
        defer { results.deinitialize(); results.deallocate() }
        final class Shared: @unchecked Sendable {
            /// The failure of the lowest index, so the refusal does not depend on thread timing.
            var error: (index: Int, error: KAError)?
            var failures = 0
            func record(_ i: Int, _ e: KAError) {
                lock.lock()
                failures += 1
                if error.map({ i < $0.index }) ?? true { error = (i, e) }
                lock.unlock()
            }
            let lock = NSLock()
            var data = Data()
            var hasher = Blake2b()
        }
        let shared = Shared()
        let chunk = max(1, n / 128)
        let chunks = (n + chunk - 1) / chunk
        let ready = (0..<chunks).map { _ in DispatchSemaphore(value: 0) }
        let consumerDone = DispatchSemaphore(value: 0)
        nonisolated(unsafe) let out = results
        if buildCumulative {
            shared.data.reserveCapacity(paths.count * 8192)
            Thread.detachNewThread {
                for c in 0..<chunks {
                    ready[c].wait()
                    for i in (c * chunk)..<min(n, (c + 1) * chunk) {
                        guard let p = out[i] else { continue }
                        let piece = CumulativeSeries.piece(p.bytes, index: i, count: n)
                        Timings.measure("cumulative append") { shared.data.append(piece) }
                        Timings.measure("cumulative b2sum") { shared.hasher.update(piece) }
                    }
                }
                consumerDone.signal()
            }
        }
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            defer { ready[c].signal() }
            for i in (c * chunk)..<min(n, (c + 1) * chunk) {
                let data: Data
                switch Timings.measure("read", { FS.readRegular(ws.url(paths[i]).path) }) {
                case let .success(d): data = d
                case let .failure(problem):
                    shared.record(i, KAError.refusal("patches/" + paths[i].value, problem.message, hint: problem.hint))
                    return
                }
                do { out[i] = try PatchFile(bytes: data, display: "patches/" + paths[i].value) } catch let e as KAError {
                    shared.record(i, e)
                } catch {
                    shared.record(i, KAError.failure(paths[i].value, "\(error)"))
                }
            }
        }
        if buildCumulative { consumerDone.wait() }
        if let (_, e) = shared.error {
            guard shared.failures > 1 else { throw e }
            throw KAError(e.kind, e.chain + ["(\(shared.failures - 1) more patch(es) refused too; this is the first in resolution order)"], hint: e.hint)
        }
        let parsed = out.compactMap { $0 }
        guard buildCumulative else { return (parsed, nil) }
        return (parsed, (shared.data, shared.hasher.hexDigest()))
    }
}

extension KAError {
    /// Replaces the first link (the manifest path) with `file:line:col`.
    func withLocation(_ loc: String) -> KAError {
        guard !chain.isEmpty else { return self }
        return KAError(kind, [loc] + chain.dropFirst(), hint: hint)
    }
}
