import Foundation

/// Everything a verb may touch, passed in so tests and the bot can swap any part.
package struct VerbContext: Sendable {
    package let workspace: Workspace
    package let state: StateStore
    package let blocks: BlockStore
    package let now: @Sendable () -> Date
    /// Test hook: called before each step of a transaction; throwing there simulates a failure mid-way.
    package let faults: (@Sendable (String) throws -> Void)?
    /// Refuse instead of waiting when another process holds the tree lock (`--no-wait`).
    package var noWait: Bool
    /// Where "waiting for the patch tree, held by …" goes: stderr for the CLI, the status comment for the bot.
    package let note: @Sendable (String) -> Void
    /// Whether a refusal files its own block (promote: [ka:patch-fail], [ka:campaign-conflict]). On with the
    /// control plane, whose blocks a person closes in the tracker; off for the bare CLI.
    package let fileBlocksOnRefusal: Bool
    /// Where jobs are journaled (the state database; in memory for tests).
    package let jobs: any JobStore
    /// How steps reach hosts.
    package let transports: any TransportProvider
    /// Where record issues ([ka:installable]) go; nil for the bare CLI (the state store's record is all there is).
    package let records: (any RecordFiler)?
    /// His's ops (wake-host, host-status); nil: read from KA_CONFIG's `his:` on first use.
    package let his: (any HisOps)?
    /// Who asked: the commenter for the bot; nil for the CLI, where it is the login user.
    package var actor: String?
    /// KA_CONFIG, as the composition root reads it: once, shared with the transports made from the same source.
    package let settingsSource: SettingsSource
    /// `ka status --html`'s page renderer, given by the composition root (nil: this front door renders none).
    package var renderDashboard: StatusVerb.HTMLRenderer?

    /// Who asked, as a record names them (`ka pause-prune`'s "paused by").
    package var requester: String { actor ?? "\(ProcessInfo.processInfo.environment["SUDO_USER"] ?? ProcessInfo.processInfo.userName) (cli)" }

    package init(workspace: Workspace, state: StateStore, blocks: BlockStore,
                now: @escaping @Sendable () -> Date = { Date() }, faults: (@Sendable (String) throws -> Void)? = nil,
                fileBlocksOnRefusal: Bool = false, noWait: Bool = false,
                jobs: any JobStore = MemoryJobStore(), transports: any TransportProvider = StaticTransports([:]),
                records: (any RecordFiler)? = nil, his: (any HisOps)? = nil, settings: SettingsSource? = nil,
                note: @escaping @Sendable (String) -> Void = { FileHandle.standardError.write(Data("ka: \($0)\n".utf8)) }) {
        settingsSource = settings ?? .environment(stateDir: workspace.stateDir)
        self.workspace = workspace; self.state = state; self.blocks = blocks; self.now = now; self.faults = faults
        self.jobs = jobs; self.transports = transports; self.records = records; self.his = his
        self.fileBlocksOnRefusal = fileBlocksOnRefusal
        self.noWait = noWait
        self.note = note
    }

    /// Files the blocks a refusal asked for, when this front door files blocks (the control plane). Filing is
    /// idempotent per kind and scope, so a refusal seen at plan time and again at run time files each block once.
    package func fileRequestedBlocks(of error: Error) async throws {
        guard fileBlocksOnRefusal, let e = error as? KAError else { return }
        for b in e.blocks { try await blocks.file(kind: b.kind, scope: b.scope, title: b.title, body: b.body) }
    }

    /// The open blocks, listed once per context (one invocation, or one phase of a job: plan, or pin check and
    /// run), however many hosts or patches ask. A new context lists them again.
    package func openBlocks() async throws -> [Block] {
        if let listed = blocksListing.stored { return listed }
        let listed = try await blocks.openBlocks()
        blocksListing.store(listed)
        return listed
    }
    private let blocksListing = Stored<[Block]>()

    /// KA_CONFIG's sections, read once per context unless the composition root gave them.
    package func settings() throws -> Settings { try settingsSource.get() }

    /// fleet/hosts.yaml (or the registry derived from the manifests), parsed once per context (a context lives
    /// for one invocation: policy + plan + run).
    package func registry() throws -> HostRegistry {
        try registryCache.value { try HostRegistry.load(workspace, settings: settings) }
    }
    private let registryCache = Memo<HostRegistry>()
    package func policy() throws -> Policy { Policy(registry: try registry(), workspace: workspace) }
}
