import Crypto
import Foundation

/// A manifest's series after one streaming pass: each patch read, parsed, hashed and admitted in resolution
/// order, its piece appended to the cumulative, and handed to the caller; what is kept per patch is its name, the
/// selectors that reached it and where its piece ends. Memory grows by those alone.
package struct ScannedSeries: Sendable {
    package let manifest: Manifest
    /// Per patch, in resolution order: `patches/<path>`. A promote's pins use these very strings as their names.
    package let names: [String]
    /// Per patch: every selector that reached it; more than one = duplicate (equal lists share one array).
    package let via: [[String]]
    package let cumulativeB2sum: String
    /// Where each patch's piece ends in the cumulative: piece i is `pieceEnds[i-1]..<pieceEnds[i]`.
    let pieceEnds: [Int]
    /// Each file the series touches (old and new names), with the last patch that touches it: the apply check
    /// drops a file after that patch.
    let lastUse: [String: Int]
    /// Overlapping hunks from different scopes or campaigns (empty unless asked for).
    package let conflicts: [CampaignConflict]

    package var count: Int { names.count }
    /// Patch i's path under patches/.
    package func path(_ i: Int) -> Substring { names[i].dropFirst(Self.prefix.count) }
    /// The patches reached by more than one selector.
    package var duplicates: [Int] { via.indices.filter { via[$0].count > 1 } }
    static let prefix = "patches/"

    func pieceRange(_ i: Int) -> Range<Int> { (i == 0 ? 0 : pieceEnds[i - 1])..<pieceEnds[i] }
}

/// One admitted patch, handed to the scan's caller in resolution order.
package struct ScannedPatch {
    package let index: Int
    /// How many patches the series has.
    package let count: Int
    /// `patches/<path>` (the string the series keeps).
    package let name: String
    package let path: TreePath
    package let via: [String]
    package let patch: PatchFile
    /// SHA-256 of the file's bytes, hex (when the scan hashes).
    package let fileSHA256: String?
}

extension Resolver {
    /// What a scan computes beyond the cumulative's b2sum.
    package struct ScanOptions: Sendable {
        /// Each patch's BLAKE2b, SHA-256 and content hash (the lock and the pins need them; ka status does not).
        package var hashes = true
        /// Overlapping hunks across scopes or campaigns.
        package var conflicts = true
        package init(hashes: Bool = true, conflicts: Bool = true) { self.hashes = hashes; self.conflicts = conflicts }
    }

    /// Selects `manifest`'s series and streams it. Worker threads, a bounded window ahead, read, parse and hash
    /// each patch, admit it (policy, blocks) and run `prepare` on it (promote renders its lock entry there); this
    /// thread takes them in resolution order, appends each piece to `cumulative` while hashing it, and hands the
    /// prepared value to `each` with the patch's name. With `cumulative` nil the cumulative is only hashed.
    /// The first refusal in resolution order is thrown, with a count of the other refused patches.
    package func scan<T: Sendable>(_ manifest: Manifest, into cumulative: StagedFile?, options: ScanOptions = .init(),
                                  prepare: @escaping @Sendable (ScannedPatch) -> T,
                                  each: (_ index: Int, _ name: String, T) throws -> Void) throws -> ScannedSeries {
        let selection = try select(manifest)
        let open = openBlocks
        let paths = selection.paths, via = selection.via, n = paths.count
        let dir = Self.patchesDirPrefix(workspace), hashing = options.hashes
        var sink = FileSink(cumulative)
        var names: [String] = []
        names.reserveCapacity(n)
        var pieceEnds: [Int] = []
        pieceEnds.reserveCapacity(n)
        var lastUse: [String: Int] = [:]
        var touches = ConflictDetector.Collector()
        let failures = Failures()
        try OrderedPipeline.run(count: n, produce: { [self] i -> Result<ScanReady<T>, KAError> in
            let patch: PatchFile
            switch Self.readPatch(paths[i], under: dir, hashing: hashing) {
            case let .failure(e): return .failure(e.within(manifest.file))
            case let .success(p): patch = p
            }
            do { try admit(patch, at: paths[i], reachedBy: via[i], manifest: manifest, openBlocks: open) } catch let e as KAError {
                return .failure(e)
            } catch {
                return .failure(KAError.failure(paths[i].value, "\(error)", cause: error))
            }
            let fileSHA = hashing ? Timings.measure("file sha256") { Hex.encode(Array(SHA256.hash(data: patch.bytes))) } : nil
            let name = ScannedSeries.prefix + paths[i].value
            let value = prepare(ScannedPatch(index: i, count: n, name: name, path: paths[i], via: via[i], patch: patch, fileSHA256: fileSHA))
            return .success(ScanReady(patch: patch, name: name, scope: paths[i].parent, value: value))
        }, consume: { i, result in
            // After a refusal the rest is only checked, so the refusal can say how many more there are.
            let ready: ScanReady<T>
            switch result {
            case let .failure(e): return failures.record(i, e)
            case let .success(r): ready = r
            }
            guard failures.isEmpty else { return }
            try Timings.measure("cumulative append") {
                try CumulativeSeries.append(ready.patch.bytes, index: i, count: n, to: &sink)
            }
            pieceEnds.append(sink.count)
            names.append(ready.name)
            for f in ready.patch.files {
                lastUse[f.targetPath] = i
                lastUse[f.path] = i
            }
            if options.conflicts { touches.add(entry: i, scope: ready.scope, campaign: ready.patch.campaign, patch: ready.patch) }
            try each(i, ready.name, ready.value)
        })
        try failures.throwFirst()
        let cumulativeB2sum = try sink.finish()
        Timings.mark("scan: read + parse + hash + append \(n) patches")
        Timings.flushBuckets()
        return ScannedSeries(manifest: manifest, names: names, via: via, cumulativeB2sum: cumulativeB2sum,
                             pieceEnds: pieceEnds, lastUse: lastUse, conflicts: options.conflicts ? touches.detect { paths[$0].value } : [])
    }

    /// A scan that only hashes and checks (ka status).
    package func scan(_ manifest: Manifest, into cumulative: StagedFile?, options: ScanOptions = .init()) throws -> ScannedSeries {
        try scan(manifest, into: cumulative, options: options, prepare: { _ in () }, each: { _, _, _ in })
    }
}

/// A patch a worker thread has read, parsed, hashed, admitted and prepared, waiting for its turn.
struct ScanReady<T: Sendable>: Sendable {
    let patch: PatchFile
    let name: String
    /// Its dir: its origin, with its campaign, for the conflict check.
    let scope: String
    let value: T
}
