import Crypto
import Foundation

/// One patch of a scanned series: what the lock, the pins and the plan need of it. Its text is not kept: it went
/// into the cumulative as it streamed past.
public struct ScannedPatch: Sendable {
    public let path: TreePath
    /// Every selector that reached it; more than one = duplicate.
    public let via: [String]
    /// Its Scope: trailer (the lock's `scope`) and its Campaign: trailer.
    public let scope: String
    public let campaign: String?
}

/// A manifest's series after one streaming pass: each patch read, parsed, hashed and admitted in resolution
/// order, its piece appended to the cumulative, and only a summary kept.
public struct ScannedSeries: Sendable {
    public let manifest: Manifest
    public let patches: [ScannedPatch]
    /// Per patch, `digestSize` bytes: BLAKE2b-512 of the file, SHA-256 of the file, SHA-256 of its content
    /// (the content hash). Raw bytes in one buffer: a hex string each would cost several times more per patch.
    private let digests: [UInt8]
    static let digestSize = 64 + 32 + 32
    /// Whether the per-patch hashes were computed (ka status needs only the cumulative's).
    let hashed: Bool
    public let cumulativeB2sum: String
    /// Where each patch's piece ends in the cumulative: piece i is `pieceEnds[i-1]..<pieceEnds[i]`.
    let pieceEnds: [Int]
    /// Each file the series touches (old and new names), with the last patch that touches it: the apply check
    /// drops a file after that patch.
    let lastUse: [String: Int]
    /// Overlapping hunks from different scopes or campaigns (empty unless asked for).
    public let conflicts: [CampaignConflict]

    public var duplicates: [ScannedPatch] { patches.filter { $0.via.count > 1 } }

    public func b2sum(_ i: Int) -> String { hex(i, 0, 64) }
    public func sha256(_ i: Int) -> String { hex(i, 64, 32) }
    public func contentHash(_ i: Int) -> String { "sha256:" + hex(i, 96, 32) }

    private func hex(_ i: Int, _ offset: Int, _ count: Int) -> String {
        let start = i * Self.digestSize + offset
        return Hex.encode(digests[start..<(start + count)])
    }

    func pieceRange(_ i: Int) -> Range<Int> { (i == 0 ? 0 : pieceEnds[i - 1])..<pieceEnds[i] }

    init(manifest: Manifest, patches: [ScannedPatch], digests: [UInt8], hashed: Bool, cumulativeB2sum: String,
         pieceEnds: [Int], lastUse: [String: Int], conflicts: [CampaignConflict]) {
        self.manifest = manifest; self.patches = patches; self.digests = digests; self.hashed = hashed
        self.cumulativeB2sum = cumulativeB2sum; self.pieceEnds = pieceEnds; self.lastUse = lastUse; self.conflicts = conflicts
    }
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
    /// appends its piece to `cumulative` while hashing it, and keeps a summary. Memory is flat in the number of
    /// patches but for the summaries. With `cumulative` nil the cumulative is only hashed.
    /// The first refusal in resolution order is thrown, with a count of the other refused patches.
    public func scan(_ manifest: Manifest, into cumulative: StagedFile?, options: ScanOptions = .init()) throws -> ScannedSeries {
        let selection = try select(manifest)
        let open = try blocks?.openBlocks() ?? []
        let paths = selection.paths, n = paths.count
        let dir = Self.patchesDirPrefix(workspace), hashing = options.hashes
        var sink = FileSink(cumulative)
        var patches: [ScannedPatch] = []
        patches.reserveCapacity(n)
        var digests: [UInt8] = []
        if hashing { digests.reserveCapacity(n * ScannedSeries.digestSize) }
        var pieceEnds: [Int] = []
        pieceEnds.reserveCapacity(n)
        var lastUse: [String: Int] = [:]
        var touches = ConflictDetector.Collector()
        var strings = Interner()
        let failures = Failures()
        try OrderedPipeline.run(count: n, produce: { i -> Result<(PatchFile, [UInt8]?), KAError> in
            Self.readPatch(paths[i], under: dir, hashing: hashing).map { p in
                (p, hashing ? Timings.measure("file sha256") { Array(SHA256.hash(data: p.bytes)) } : nil)
            }
        }, consume: { i, result in
            // After a refusal the rest is only checked, so the refusal can say how many more there are.
            let patch: PatchFile, fileSHA: [UInt8]?
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
            patches.append(ScannedPatch(path: paths[i], via: selection.via[i], scope: strings.intern(patch.scopeTrailers.first ?? ""),
                                        campaign: patch.campaign.map { strings.intern($0) }))
            if hashing, let fileSHA {
                Self.appendHexBytes(patch.b2sum, to: &digests)
                digests.append(contentsOf: fileSHA)
                Self.appendHexBytes(patch.contentHash.dropFirst("sha256:".count), to: &digests)
            }
            for f in patch.files {
                lastUse[f.targetPath] = i
                lastUse[f.path] = i
            }
            if options.conflicts { touches.add(entry: i, path: paths[i], campaign: patch.campaign, files: patch.files) }
        })
        try failures.throwFirst()
        let cumulativeB2sum = try sink.finish()
        Timings.mark("scan: read + parse + hash + append \(n) patches")
        Timings.flushBuckets()
        return ScannedSeries(manifest: manifest, patches: patches, digests: digests, hashed: hashing, cumulativeB2sum: cumulativeB2sum,
                             pieceEnds: pieceEnds, lastUse: lastUse, conflicts: options.conflicts ? touches.detect { paths[$0].value } : [])
    }

    /// The bytes a lower-case hex string spells (PatchFile keeps its hashes as hex).
    private static func appendHexBytes<S: StringProtocol>(_ hex: S, to out: inout [UInt8]) {
        func nibble(_ c: UInt8) -> UInt8 { c >= 0x61 ? c - 0x61 + 10 : c - 0x30 }
        var high: UInt8?
        for c in hex.utf8 {
            if let h = high { out.append(h << 4 | nibble(c)); high = nil } else { high = nibble(c) }
        }
    }
}

/// One copy of each distinct string: a series has thousands of patches and a handful of scopes and campaigns, and
/// the copy a worker thread's parse made would otherwise be kept once per patch.
struct Interner {
    private var seen: [String: String] = [:]
    mutating func intern(_ s: String) -> String {
        if let known = seen[s] { return known }
        seen[s] = s
        return s
    }
}
