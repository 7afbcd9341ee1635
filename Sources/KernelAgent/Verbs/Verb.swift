import ArgumentParser
import Foundation
import Synchronization

/// One concrete step a verb will take, and the inputs it is pinned to. A consent reply lists the steps;
/// at run time the pins are recomputed and any change voids the consent.
public struct Plan: Sendable {
    public struct Pin: Sendable, Equatable, Codable {
        public let name: String
        public let value: String
        public init(_ name: String, _ value: String) { self.name = name; self.value = value }
    }

    public let verb: String
    public let arguments: [String]
    public var steps: [String]
    public var pins: [Pin]
    /// Work already done while planning (e.g. promote's parsed, hashed series), reused by `run`
    /// when the plan is run right away. Never part of what consent pins.
    public var prepared: (any Sendable)?

    public init(verb: String, arguments: [String], steps: [String], pins: [Pin] = [], prepared: (any Sendable)? = nil) {
        self.verb = verb; self.arguments = arguments; self.steps = steps; self.pins = pins; self.prepared = prepared
    }

    /// Pins that differ between this plan and a fresh one, as "name: old → new" lines.
    public func changedPins(comparedTo fresh: Plan) -> [String] {
        let old = Dictionary(pins.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        let new = Dictionary(fresh.pins.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        return Set(old.keys).union(new.keys).sorted().compactMap { k in
            old[k] == new[k] ? nil : "\(k): \(old[k] ?? "(none)") → \(new[k] ?? "(gone)")"
        }
    }

    public func render() -> String {
        var out = "ka \(([verb] + arguments).joined(separator: " ")) will:\n"
        for (i, s) in steps.enumerated() { out += "  \(i + 1). \(s)\n" }
        if !pins.isEmpty {
            out += "pinned to:\n"
            for p in pins { out += "  \(p.name) = \(p.value)\n" }
        }
        return out
    }
}

public struct VerbOutcome: Sendable {
    public let text: String
    public init(_ text: String) { self.text = text }
}

/// A value computed once and shared by copies of the struct that holds it.
final class Memo<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T?
    func value(_ make: () throws -> T) throws -> T {
        lock.lock(); defer { lock.unlock() }
        if let stored { return stored }
        let v = try make()
        stored = v
        return v
    }
}

/// The value parsed from the last bytes seen for a file, reused while those bytes stay the same.
final class LastParsed<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()   // a pthread mutex, which ThreadSanitizer sees (it does not model Mutex's futex)
    // The bytes as an array, not Data: Data keeps its storage behind an enum whose tag bits hide the pointer from
    // LeakSanitizer, which then reports this long-lived cache as a leak.
    private var last: (file: String, bytes: [UInt8], value: T)?
    func value(for bytes: Data, file: String, _ parse: () throws -> T) throws -> T {
        if let hit = lock.withLock({ last.flatMap { $0.file == file && $0.bytes.elementsEqual(bytes) ? $0.value : nil } }) { return hit }
        let v = try parse()   // outside the lock: a slow parse does not hold up readers of the last value
        lock.withLock { last = (file, Array(bytes), v) }
        return v
    }
}

/// A value kept once it is known (a listing read asynchronously, outside any lock).
final class Stored<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()   // a pthread mutex, which ThreadSanitizer sees
    private var value: T?
    var stored: T? { lock.withLock { value } }
    func store(_ v: T) { lock.withLock { value = v } }
}

/// `--no-wait`, shared by the verbs that read or change the tree.
public struct TreeLockOptions: ParsableArguments, Sendable {
    @Flag(help: "Refuse at once, instead of waiting, when another kernel-agent process holds the patch tree.")
    public var noWait = false
    public init() {}
}

/// A verb that offers `--no-wait`.
public protocol WaitsForTree {
    var lockOptions: TreeLockOptions { get }
}

/// What runs one verb at a time on one resource. The control plane serializes runs per lane.
public enum Lane: Sendable, Equatable, Hashable, CustomStringConvertible {
    case tree                 // changes patches/ or fleet/
    case host(HostName)       // touches one host
    case none                 // read-only
    public var description: String {
        switch self {
        case .tree: return "the patch tree"
        case let .host(h): return "host \(h)"
        case .none: return "nothing"
        }
    }
}

/// Everything a verb may touch, passed in so tests and the bot can swap any part.
public struct VerbContext: Sendable {
    public let workspace: Workspace
    public let state: StateStore
    public let blocks: BlockStore
    public let now: @Sendable () -> Date
    /// Test hook: called before each step of a transaction; throwing there simulates a failure mid-way.
    public let faults: (@Sendable (String) throws -> Void)?
    /// Refuse instead of waiting when another process holds the tree lock (`--no-wait`).
    public var noWait: Bool
    /// Where "waiting for the patch tree, held by …" goes: stderr for the CLI, the status comment for the bot.
    public let note: @Sendable (String) -> Void
    /// Whether a refusal files its own block (promote: [ka:patch-fail], [ka:campaign-conflict]). On with the
    /// control plane, whose blocks a person closes in the tracker; off for the bare CLI.
    public let fileBlocksOnRefusal: Bool
    /// Where jobs are journaled (the state database; in memory for tests).
    public let jobs: any JobStore
    /// How steps reach hosts.
    public let transports: any TransportProvider
    /// Where record issues ([ka:installable]) go; nil for the bare CLI (the state store's record is all there is).
    public let records: (any RecordFiler)?
    /// His's ops (wake-host, host-status); nil: read from KA_CONFIG's `his:` on first use.
    public let his: (any HisOps)?
    /// Who asked: the commenter for the bot; nil for the CLI, where it is the login user.
    public var actor: String?

    /// Who asked, as a record names them (`ka pause-prune`'s "paused by").
    public var requester: String { actor ?? "\(ProcessInfo.processInfo.environment["SUDO_USER"] ?? ProcessInfo.processInfo.userName) (cli)" }

    public init(workspace: Workspace, state: StateStore, blocks: BlockStore,
                now: @escaping @Sendable () -> Date = { Date() }, faults: (@Sendable (String) throws -> Void)? = nil,
                fileBlocksOnRefusal: Bool = false, noWait: Bool = false,
                jobs: any JobStore = MemoryJobStore(), transports: any TransportProvider = StaticTransports([:]),
                records: (any RecordFiler)? = nil, his: (any HisOps)? = nil,
                note: @escaping @Sendable (String) -> Void = { FileHandle.standardError.write(Data("ka: \($0)\n".utf8)) }) {
        self.workspace = workspace; self.state = state; self.blocks = blocks; self.now = now; self.faults = faults
        self.jobs = jobs; self.transports = transports; self.records = records; self.his = his
        self.fileBlocksOnRefusal = fileBlocksOnRefusal
        self.noWait = noWait
        self.note = note
    }

    /// Files the blocks a refusal asked for, when this front door files blocks (the control plane). Filing is
    /// idempotent per kind and scope, so a refusal seen at plan time and again at run time files each block once.
    public func fileRequestedBlocks(of error: Error) async throws {
        guard fileBlocksOnRefusal, let e = error as? KAError else { return }
        for b in e.blocks { try await blocks.file(kind: b.kind, scope: b.scope, title: b.title, body: b.body) }
    }

    /// The open blocks, listed once per context (one invocation, or one phase of a job: plan, or pin check and
    /// run), however many hosts or patches ask. A new context lists them again.
    public func openBlocks() async throws -> [Block] {
        if let listed = blocksListing.stored { return listed }
        let listed = try await blocks.openBlocks()
        blocksListing.store(listed)
        return listed
    }
    private let blocksListing = Stored<[Block]>()

    /// fleet/hosts.yaml, parsed once per context (a context lives for one invocation: policy + plan + run).
    public func registry() throws -> HostRegistry {
        try registryCache.value { try HostRegistry.load(workspace) }
    }
    private let registryCache = Memo<HostRegistry>()
    public func policy() throws -> Policy { Policy(registry: try registry(), workspace: workspace) }
}

/// A kernel-agent verb: its arguments (ArgumentParser), what the hard rules must check, its plan and its run.
/// The CLI runs `plan` then `run` at once; the control plane shows `plan` for consent first.
public protocol Verb: AsyncParsableCommand {
    /// What the policy must admit before anything else happens. Every verb answers, even if with nothing.
    func policySubject(in ctx: VerbContext) throws -> PolicySubject
    var lane: Lane { get }
    /// What it does to patches/ and fleet/; the runner holds the tree lock accordingly (default: read, or
    /// write for verbs on the tree lane).
    var treeAccess: TreeAccess { get }
    /// Whether it records anything in the state store (default yes); a read-only verb starts faster.
    var writesState: Bool { get }
    func plan(in ctx: VerbContext) async throws -> Plan
    func run(_ plan: Plan, in ctx: VerbContext) async throws -> VerbOutcome
}

extension Verb {
    public static var verbName: String { configuration.commandName ?? "\(Self.self)" }

    public var treeAccess: TreeAccess { lane == .tree ? .write : .read }
    public var writesState: Bool { true }

    /// Runs `body` holding the tree lock this verb needs, after recovering any transaction a dead process left.
    /// Both front doors go through here, so no verb ever reads a half-done tree or undoes another's live work.
    public func withTreeAccess<T>(in ctx: VerbContext, _ body: () async throws -> T) async throws -> T {
        let noWait = ctx.noWait || ((self as? any WaitsForTree)?.lockOptions.noWait ?? false)
        let lock = try TreeLock.acquire(ctx.workspace, access: treeAccess, state: ctx.state,
                                        holder: "ka \(Self.verbName)", noWait: noWait, note: ctx.note)
        defer { lock.release() }
        return try await body()
    }

    /// The one path every front door takes: the tree lock, then policy, plan and run.
    public func execute(in ctx: VerbContext) async throws -> (Plan, VerbOutcome) {
        try await withTreeAccess(in: ctx) {
            try ctx.policy().admit(try policySubject(in: ctx))
            let plan = try await plan(in: ctx)
            return (plan, try await run(plan, in: ctx))
        }
    }

    /// ArgumentParser's entry: the CLI runs the verb immediately.
    public mutating func run() async throws {
        try await CLI.runImmediately(self)
    }
}

/// The CLI front door.
public enum CLI {
    public typealias AuditHook = @Sendable (_ verb: String, _ arguments: [String], _ result: String, _ succeeded: Bool) async -> Void

    /// Called after every direct invocation with (verb, arguments, result text, succeeded). The `ka` binary sets
    /// it to file the `[ka:audit]` issue when Gitea is configured.
    public static var auditHook: AuditHook? {
        get { auditHookStorage.withLock { $0 } }
        set { auditHookStorage.withLock { $0 = newValue } }
    }
    private static let auditHookStorage = Mutex<AuditHook?>(nil)

    /// `readsStateOnly`: open the state database read-only, or use an empty view when there is none yet.
    public static func context(readsStateOnly: Bool = false) throws -> VerbContext {
        let ws = Workspace.fromEnvironment()
        try Policy.refuseHome(ws.stateDir, shown: "state dir \(ws.stateDir.path) (KA_STATE_DIR)", root: ws.root)
        // A journal left by a dead process may hold state steps to undo: then the store must be writable.
        if readsStateOnly && !TreeTransaction.hasJournals(ws) {
            if let store = try SQLiteStateStore.openForReading(ws) {
                return VerbContext(workspace: ws, state: store, blocks: store, jobs: store.jobs, transports: try HostTransports.fromEnvironment(ws))
            }
            if !FS.exists(ws.stateDir.appendingPathComponent("state.sqlite")) {
                let empty = MemoryStateStore()
                return VerbContext(workspace: ws, state: empty, blocks: empty)
            }
        }
        let store = try SQLiteStateStore.open(ws)
        return VerbContext(workspace: ws, state: store, blocks: store, jobs: store.jobs, transports: try HostTransports.fromEnvironment(ws))
    }

    public static func runImmediately<V: Verb>(_ verb: V) async throws {
        Timings.mark("process start → verb")
        do {
            let ctx = try context(readsStateOnly: !verb.writesState)
            Timings.mark("open state store")
            let (plan, outcome) = try await verb.execute(in: ctx)
            print(outcome.text, terminator: outcome.text.hasSuffix("\n") ? "" : "\n")
            await auditHook?(V.verbName, plan.arguments, outcome.text, true)
        } catch let e as KAError {
            var args = Array(CommandLine.arguments.dropFirst())
            if args.first == V.verbName { args.removeFirst() }   // `ka abandon x` vs `ka-abandon x`
            await auditHook?(V.verbName, args, e.description, false)
            FileHandle.standardError.write(Data("ka \(V.verbName): \(e.kind == .refusal ? "refused: " : e.kind == .notAvailable ? "" : "error: ")\(e)\n".utf8))
            throw ExitCode(e.exitCode)
        }
    }
}

/// The verbs of the seed, in the order `ka --help` lists them.
public enum Verbs {
    public static let all: [any Verb.Type] = [
        PromoteVerb.self, ImportVerb.self, CloseVerb.self, AbandonVerb.self, StatusVerb.self, MigrateTreeVerb.self, AdoptVerb.self,
        BuildVerb.self, InstallVerb.self, VerifyVerb.self, YankVerb.self, KeepVerb.self, PruneVerb.self, PausePruneVerb.self, ResumePruneVerb.self,
        RestoreArchiveVerb.self, SnoozeVerb.self, DebugVerb.self, WakeDataVerb.self,
        PreflightVerb.self, ProbeVerb.self, JobsVerb.self, BlocksVerb.self,
    ]

    public static func named(_ name: String) -> (any Verb.Type)? { all.first { $0.verbName == name } }

    public static var names: [String] { all.map { $0.verbName } }

    public static var abstracts: [(String, String)] { all.map { ($0.verbName, $0.configuration.abstract) } }

    /// Parses `args` with the verb's own ArgumentParser definition (the control plane's front door).
    public static func parse(_ type: any Verb.Type, _ args: [String]) throws -> any Verb {
        func open<V: Verb>(_ t: V.Type) throws -> any Verb { try t.parse(args) }
        return try open(type)
    }

    /// The verb's own error text and help for bad arguments.
    public static func usageReply(_ type: any Verb.Type, error: Error) -> String {
        func open<V: Verb>(_ t: V.Type) -> String {
            "\(t.message(for: error))\n\n```\n\(t.helpMessage(columns: 100))\n```"
        }
        return open(type)
    }

    public static func help(_ type: any Verb.Type) -> String {
        func open<V: Verb>(_ t: V.Type) -> String { t.helpMessage(columns: 100) }
        return open(type)
    }

    /// Refusal shared by the verbs whose pipeline has not landed yet.
    public static func notAvailable(_ verb: String, _ lands: String) -> KAError {
        KAError(.notAvailable, ["ka \(verb)", "not available yet: \(lands)"],
                hint: "nothing was done; the arguments were checked and are kept in the verb's help (ka \(verb) --help)")
    }
}
