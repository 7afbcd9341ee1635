import Crypto
import Foundation

/// A manifest's series after one streaming pass: each patch read, parsed, hashed and admitted in resolution
/// order, its piece appended to the cumulative, and handed to the caller; what is kept per patch is its name, the
/// selectors that reached it and where its piece ends. Memory grows by those alone.
public struct ScannedSeries: Sendable {
    public let manifest: Manifest
    /// Per patch, in resolution order: `patches/<path>`. A promote's pins use these very strings as their names.
    public let names: [String]
    /// Per patch: every selector that reached it; more than one = duplicate (equal lists share one array).
    public let via: [[String]]
    public let cumulativeB2sum: String
    /// Where each patch's piece ends in the cumulative: piece i is `pieceEnds[i-1]..<pieceEnds[i]`.
    let pieceEnds: [Int]
    /// Each file the series touches (old and new names), with the last patch that touches it: the apply check
    /// drops a file after that patch.
    let lastUse: [String: Int]
    /// Overlapping hunks from different scopes or campaigns (empty unless asked for).
    public let conflicts: [CampaignConflict]

    public var count: Int { names.count }
    /// Patch i's path under patches/.
    public func path(_ i: Int) -> Substring { names[i].dropFirst(Self.prefix.count) }
    /// The patches reached by more than one selector.
    public var duplicates: [Int] { via.indices.filter { via[$0].count > 1 } }
    static let prefix = "patches/"

    func pieceRange(_ i: Int) -> Range<Int> { (i == 0 ? 0 : pieceEnds[i - 1])..<pieceEnds[i] }
}

/// One admitted patch, handed to the scan's caller in resolution order.
public struct ScannedPatch {
    public let index: Int
    /// How many patches the series has.
    public let count: Int
    /// `patches/<path>` (the string the series keeps).
    public let name: String
    public let path: TreePath
    public let via: [String]
    public let patch: PatchFile
    /// SHA-256 of the file's bytes, hex (when the scan hashes).
    public let fileSHA256: String?
}

extension Resolver {
    /// What a scan computes beyond the cumulative's b2sum.
    public struct ScanOptions: Sendable {
        /// Each patch's BLAKE2b, SHA-256 and content hash (the lock and the pins need them; ka status does not).
        public var hashes = true
        /// Overlapping hunks across scopes or campaigns.
        public var conflicts = true
        public init(hashes: Bool = true, conflicts: Bool = true) { self.hashes = hashes; self.conflicts = conflicts }
    }

    /// Selects `manifest`'s series and streams it: the patches are read, parsed and hashed on worker threads a
    /// bounded window ahead, and taken in resolution order on this one, which admits each (policy, blocks),
    /// appends its piece to `cumulative` while hashing it, and hands it to `each` (promote writes its lock entry
    /// and its pin there). With `cumulative` nil the cumulative is only hashed.
    /// The first refusal in resolution order is thrown, with a count of the other refused patches.
    public func scan(_ manifest: Manifest, into cumulative: StagedFile?, options: ScanOptions = .init(),
                     each: (ScannedPatch) throws -> Void = { _ in }) throws -> ScannedSeries {
        let selection = try select(manifest)
        let open = try blocks?.openBlocks() ?? []
        let paths = selection.paths, n = paths.count
        let dir = Self.patchesDirPrefix(workspace), hashing = options.hashes
        var sink = FileSink(cumulative)
        var names: [String] = []
        names.reserveCapacity(n)
        var pieceEnds: [Int] = []
        pieceEnds.reserveCapacity(n)
        var lastUse: [String: Int] = [:]
        var touches = ConflictDetector.Collector()
        let failures = Failures()
        try OrderedPipeline.run(count: n, produce: { i -> Result<(PatchFile, String?), KAError> in
            Self.readPatch(paths[i], under: dir, hashing: hashing).map { p in
                (p, hashing ? Timings.measure("file sha256") { Hex.encode(Array(SHA256.hash(data: p.bytes))) } : nil)
            }
        }, consume: { i, result in
            // After a refusal the rest is only checked, so the refusal can say how many more there are.
            let patch: PatchFile, fileSHA: String?
            switch result {
            case let .failure(e): return failures.record(i, e.within(manifest.file))
            case let .success(value): (patch, fileSHA) = value
            }
            do { try admit(patch, at: paths[i], reachedBy: selection.via[i], manifest: manifest, openBlocks: open) } catch let e as KAError {
                return failures.record(i, e)
            }
            guard failures.isEmpty else { return }
            try Timings.measure("cumulative append") {
                try CumulativeSeries.append(patch.bytes, index: i, count: n, to: &sink)
            }
            pieceEnds.append(sink.count)
            let name = ScannedSeries.prefix + paths[i].value
            names.append(name)
            for f in patch.files {
                lastUse[f.targetPath] = i
                lastUse[f.path] = i
            }
            if options.conflicts { touches.add(entry: i, path: paths[i], campaign: patch.campaign, files: patch.files) }
            try each(ScannedPatch(index: i, count: n, name: name, path: paths[i], via: selection.via[i], patch: patch, fileSHA256: fileSHA))
        })
        try failures.throwFirst()
        let cumulativeB2sum = try sink.finish()
        Timings.mark("scan: read + parse + hash + append \(n) patches")
        Timings.flushBuckets()
        return ScannedSeries(manifest: manifest, names: names, via: selection.via, cumulativeB2sum: cumulativeB2sum,
                             pieceEnds: pieceEnds, lastUse: lastUse, conflicts: options.conflicts ? touches.detect { paths[$0].value } : [])
    }
}
