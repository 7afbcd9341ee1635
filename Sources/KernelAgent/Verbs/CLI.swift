import ArgumentParser
import Foundation

/// The CLI front door.
package enum CLI {
    package typealias AuditHook = @Sendable (_ verb: String, _ arguments: [String], _ result: String, _ succeeded: Bool) async -> Void

    /// What the `ka` binary passes in to its verbs: the `[ka:audit]` issue after every direct invocation (with verb,
    /// arguments, result text, succeeded) when Gitea is configured, and the dashboard page's renderer.
    package struct FrontDoor: Sendable {
        package var audit: AuditHook?
        package var renderDashboard: StatusVerb.HTMLRenderer?
        package init(audit: AuditHook? = nil, renderDashboard: StatusVerb.HTMLRenderer? = nil) {
            self.audit = audit; self.renderDashboard = renderDashboard
        }
        /// A verb run through ArgumentParser alone (no `ka` binary around it): no audit, no page.
        package static let bare = FrontDoor()
    }

    /// `readsStateOnly`: open the state database read-only, or use an empty view when there is none yet.
    package static func context(readsStateOnly: Bool = false, frontDoor: FrontDoor = .bare) throws -> VerbContext {
        var ctx = try bareContext(readsStateOnly: readsStateOnly)
        ctx.renderDashboard = frontDoor.renderDashboard
        return ctx
    }

    static func bareContext(readsStateOnly: Bool) throws -> VerbContext {
        let ws = Workspace.fromEnvironment()
        try Policy.refuseHome(ws.stateDir, shown: "state dir \(ws.stateDir.path) (KA_STATE_DIR)", root: ws.root)
        // KA_CONFIG is read once, when something first needs it (a verb that needs none starts without it)
        let settings = SettingsSource.environment(stateDir: ws.stateDir)
        // A journal left by a dead process may hold state steps to undo: then the store must be writable.
        if readsStateOnly && !TreeTransaction.hasJournals(ws) {
            if let store = try SQLiteStateStore.openForReading(ws) {
                return VerbContext(workspace: ws, state: store, blocks: store, jobs: store.jobs,
                                   transports: HostTransports.lazy(ws, settings: settings), settings: settings)
            }
            if !FS.exists(ws.stateDir.appendingPathComponent("state.sqlite")) {
                let empty = MemoryStateStore()
                return VerbContext(workspace: ws, state: empty, blocks: empty, settings: settings)
            }
        }
        let store = try SQLiteStateStore.open(ws)
        return VerbContext(workspace: ws, state: store, blocks: store, jobs: store.jobs,
                           transports: HostTransports.lazy(ws, settings: settings), settings: settings)
    }

    /// The CLI adapter of the pipeline: print the outcome (a job: a line per step on stderr, the summary on
    /// stdout), the audit issue, the exit code. SIGINT and SIGTERM stop a job, which is left interrupted.
    package static func run<V: Verb>(_ verb: V, frontDoor: FrontDoor = .bare) async throws {
        let auditHook = frontDoor.audit
        Timings.mark("process start → verb")
        var args = Array(CommandLine.arguments.dropFirst())
        if args.first == V.verbName { args.removeFirst() }   // `ka abandon x` vs `ka-abandon x`
        let ctx: VerbContext
        let performed: VerbPipeline.Performed
        do {
            ctx = try context(readsStateOnly: !verb.writesState, frontDoor: frontDoor)
            Timings.mark("open state store")
            // the plan and the job show the arguments as typed, as the bot's do
            performed = try await VerbPipeline.perform(verb, consented: nil, arguments: args, origin: .cli(user: ProcessInfo.processInfo.userName), in: ctx)
        } catch let e as KAError {
            await auditHook?(V.verbName, args, e.description, false)
            FileHandle.standardError.write(Data("ka \(V.verbName): \(e.kind == .refusal ? "refused: " : e.kind == .notAvailable ? "" : "error: ")\(e)\n".utf8))
            throw ExitCode(e.exitCode)
        }
        switch performed {
        case let .done(plan, outcome):
            print(outcome.text, terminator: outcome.text.hasSuffix("\n") ? "" : "\n")
            await auditHook?(V.verbName, plan.arguments, outcome.text, true)
        case let .consentVoid(changed):
            // the CLI consents to nothing: unreachable, but said plainly if it ever happens
            FileHandle.standardError.write(Data("ka \(V.verbName): refused: inputs changed: \(changed.joined(separator: "; "))\n".utf8))
            throw ExitCode(2)
        case let .job(job, spec):
            FileHandle.standardError.write(Data("ka \(V.verbName): job \(job.id)\n".utf8))
            let steps = spec.steps
            let work = Task { try await VerbPipeline.run(job, steps: steps, observer: StepLinePrinter(), in: ctx) }
            let signals = SignalCanceller(signals: [SIGINT, SIGTERM]) { work.cancel() }
            defer { signals.stop() }
            let ended: JobRecord
            do { ended = try await work.value } catch let e as KAError {
                FileHandle.standardError.write(Data("ka \(V.verbName): error: \(e)\n".utf8))
                throw ExitCode(e.exitCode)
            }
            let text = spec.summary(ended, ctx)
            print(text, terminator: text.hasSuffix("\n") ? "" : "\n")
            await auditHook?(V.verbName, job.arguments, text, ended.state == .succeeded)
            switch ended.state {
            case .succeeded: return
            case .interrupted, .cancelled: throw ExitCode(130)
            default: throw ExitCode(1)
            }
        }
    }
}
