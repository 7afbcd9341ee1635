import ArgumentParser
import Foundation
import KAControlPlane
import KernelAgent
import Logging

/// `ka <verb> …`, or `ka-<verb> …` through a link named after the verb (see README, "ka-<verb> names").
@available(macOS 10.15, macCatalyst 13, iOS 13, tvOS 13, watchOS 6, *)
struct KA: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ka",
        abstract: "kernel-agent: the kernel side of the home fleet.",
        discussion: "Every verb runs immediately from the CLI. Refusals exit 2 and change nothing.",
        version: "\(KernelAgentVersion.string) (git \(kaGitCommit))",
        subcommands: Verbs.all.map { $0 as ParsableCommand.Type } + [Serve.self, Labels.self, Reminders.self, DoctorCommand.self, FleetTopic.self])
}

struct ConfigOption: ParsableArguments {
    @Option(help: "Config file (YAML). Every key can also come from KA_* environment variables.")
    var config: String?

    /// One config for the server and every verb it runs: `--config` becomes `KA_CONFIG` (absolute) for this
    /// process, since verbs and their steps read `KA_CONFIG`; without `--config`, `KA_CONFIG` is the file. Two
    /// different files are refused rather than one silently winning.
    func establish(env: [String: String] = ProcessInfo.processInfo.environment) throws -> String? {
        let cwd = FileManager.default.currentDirectoryPath
        func absolute(_ p: String) -> String { URL(fileURLWithPath: p, relativeTo: URL(fileURLWithPath: cwd)).standardizedFileURL.path }
        let fromEnv = env["KA_CONFIG"].flatMap { $0.isEmpty ? nil : absolute($0) }
        guard let config else { return fromEnv }
        let file = absolute(config)
        if let fromEnv, FS.realPath(URL(fileURLWithPath: fromEnv)) != FS.realPath(URL(fileURLWithPath: file)) {
            throw KAError.refusal("--config \(config)", "KA_CONFIG names another file (\(fromEnv))",
                                  hint: "give one config: drop --config or unset KA_CONFIG")
        }
        setenv("KA_CONFIG", file, 1)
        return file
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the control plane: Gitea webhook receiver, poller, consent and runs, outbox, reminders.")
    @OptionGroup var options: ConfigOption

    func run() async throws {
        LoggingSystem.bootstrap(StreamLogHandler.standardError)
        var logger = Logger(label: "ka.serve")
        logger.logLevel = ProcessInfo.processInfo.environment["KA_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
        do {
            let file = try options.establish()
            try await ControlPlaneServer.run(config: try ControlPlaneConfig.load(file: file), logger: logger)
        } catch let e as KAError {
            FileHandle.standardError.write(Data("ka serve: \(e)\n".utf8))
            throw ExitCode(e.exitCode)
        } catch let e as GiteaError {
            FileHandle.standardError.write(Data("ka serve: cannot start: \(e)\n  fix: check KA_GITEA_URL, the network and KA_GITEA_TOKEN\n".utf8))
            throw ExitCode(1)
        }
    }
}

struct Labels: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Manage the repo's ka:* labels.", subcommands: [Sync.self])

    struct Sync: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make the repo's labels match labels/labels.yaml (Prow label_sync semantics; dry run unless --confirm).")
        @OptionGroup var options: ConfigOption
        @Flag(help: "Apply the changes (default: only print them).") var confirm = false
        @Option(help: "Labels file (default kernel-agent's labels/labels.yaml).") var file: String?

        func run() async throws {
            do {
                let config = try ControlPlaneConfig.load(file: try options.establish())
                let path = file.map { URL(fileURLWithPath: $0) } ?? Workspace(root: config.root).asset("labels/labels.yaml")
                let specs = try LabelSpec.load(path, display: file ?? "labels/labels.yaml")
                let api = DefaultGiteaClient(baseURL: config.giteaURL, owner: config.owner, repo: config.repo, token: config.token)
                let actions = LabelSync.plan(desired: specs, current: try await api.listLabels())
                if actions.isEmpty { print("labels are in sync (\(specs.count))"); return }
                for a in actions { print((confirm ? "" : "would ") + a.description) }
                if confirm { try await LabelSync.apply(actions, api: api) } else { print("dry run: pass --confirm to apply") }
            } catch let e as KAError {
                FileHandle.standardError.write(Data("ka labels sync: \(e)\n".utf8)); throw ExitCode(e.exitCode)
            } catch let e as GiteaError {
                FileHandle.standardError.write(Data("ka labels sync: \(e)\n".utf8)); throw ExitCode(1)
            }
        }
    }
}

/// `ka help fleet` (or `ka fleet`): what a checkout's fleet/ holds, in ka's own words.
struct FleetTopic: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleet", abstract: "What fleet/ holds: the manifest keys, the host registry (fleet/hosts.yaml or derived) and the outputs.",
        discussion: FleetHelp.text)
    func run() { print(FleetHelp.text) }
}

/// `ka doctor [--json]`: the first command of a new install. Every check prints ✓ or ✗ with one fix line; exit 1
/// when any fails.
struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check a new install: the checkout, KA_CONFIG, Gitea (token, admin, webhook, labels), every host's preflight, the signing key, His.",
        discussion: "Each check prints ✓ or ✗ and, for ✗, one fix: line. Exits 1 when any check fails. Reads only; the host preflights are jobs (ka jobs lists them).")
    @OptionGroup var options: ConfigOption
    @Flag(help: "Print the result as JSON: {ok, checks: [{area, name, ok, detail, fix}]}.") var json = false
    @Option(help: "Labels file to compare the repo's labels with (default kernel-agent's labels/labels.yaml).") var labels: String?

    func run() async throws {
        let file: String?
        do { file = try options.establish() } catch let e as KAError {
            FileHandle.standardError.write(Data("ka doctor: \(e)\n".utf8)); throw ExitCode(e.exitCode)
        }
        let env = ProcessInfo.processInfo.environment
        let ws = Workspace.fromEnvironment(env)
        let doctor = Doctor(workspace: ws, env: env)
        var checks: [DoctorCheck] = []
        let (checkout, registry) = doctor.checkout()
        checks += checkout
        checks += doctor.config(registry: registry)
        let config = Result { try ControlPlaneConfig.load(file: file, env: env) }
        checks += await GiteaDoctor.checks(config: config, labels: labels.map { URL(fileURLWithPath: $0) } ?? ws.asset("labels/labels.yaml"), env: env)
        do {
            let ctx = try CLI.context()
            if let registry { checks += await doctor.hosts(ctx, registry: registry) }
            checks += await doctor.signing(ctx)
        } catch {
            checks.append(.fail("hosts", "state", "cannot open the state dir: \(error)", fix: "check KA_STATE_DIR (default <checkout>/.ka)"))
        }
        checks += await doctor.his(registry: registry)
        let ok = checks.allSatisfy(\.ok)
        if json {
            struct Out: Codable { let ok: Bool; let checks: [DoctorCheck] }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(Out(ok: ok, checks: checks)), as: UTF8.self))
        } else {
            for c in checks { print(c.rendered) }
            let failed = checks.filter { !$0.ok }.count
            print(ok ? "ka doctor: all \(checks.count) checks pass" : "ka doctor: \(failed) of \(checks.count) checks fail")
        }
        if !ok { throw ExitCode(1) }
    }
}

struct Reminders: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the [ka:installable] reminders that are due (for the session hook).")
    func run() throws {
        let ws = Workspace.fromEnvironment()
        let store = try SQLiteStateStore.open(ws)
        let due = try store.dueReminders(now: Date(), limit: 100)
        if due.isEmpty { print("no reminders due"); return }
        for r in due {
            print("#\(r.issue) installable since \(ISO8601DateFormatter().string(from: r.filedAt)) — reminder \(r.stage + 1) due; `ka install <host>` or `ka snooze \(r.issue) --for 6h`")
        }
    }
}

/// `ka status --html FILE`: the dashboard page, from the tree, the state store and (when `ka serve` ran here) its ledger.
let dashboardRenderer: StatusVerb.HTMLRenderer = { ctx in try await DashboardPage.offline(ctx: ctx, env: ProcessInfo.processInfo.environment) }

/// Direct invocations file a `[ka:audit]` issue through the outbox when Gitea is configured.
func auditHook() -> CLI.AuditHook? {
    let env = ProcessInfo.processInfo.environment
    guard env["KA_GITEA_URL"] != nil, env["KA_REPO"] != nil, env["KA_GITEA_TOKEN"] != nil || env["KA_GITEA_TOKEN_FILE"] != nil else { return nil }
    return { verb, args, text, ok in
        guard verb != "status" else { return }
        let title = "[ka:audit] \(verb) \(args.joined(separator: " "))"
        let body = "Direct CLI invocation on \(ProcessInfo.processInfo.hostName): \(ok ? "done" : "refused/failed")\n\n```\n\(text.prefix(6000))\n```"
        let config: ControlPlaneConfig, ledger: Ledger
        do {
            config = try ControlPlaneConfig.load(file: nil)
            ledger = try Ledger(path: config.stateDir.appendingPathComponent("control.sqlite"))
            try ledger.enqueue(.issue(title: title, body: body, labels: ["ka:audit"]), ref: "audit-\(UUID().uuidString)")
        } catch {
            // The verb's own outcome stands; only its audit trail is missing, and the person is told.
            FileHandle.standardError.write(Data("ka: the [ka:audit] issue was not queued: \(error)\n".utf8))
            return
        }
        let api = DefaultGiteaClient(baseURL: config.giteaURL, owner: config.owner, repo: config.repo, token: config.token, maxAttempts: 3)
        // At most 15 s: what does not land now stays in the outbox, and `ka serve` delivers it later.
        await withTaskGroup(of: Void.self) { group in
            group.addTask { _ = await OutboxSender(ledger: ledger, api: api, botLogin: config.botLogin).drain() }
            group.addTask {
                do { try await Task.sleep(for: .seconds(15)) } catch { /* cancelled: the drain ended first */ }
            }
            await group.next()
            group.cancelAll()
        }
    }
}

var args = Array(CommandLine.arguments.dropFirst())
let invokedAs = URL(fileURLWithPath: CommandLine.arguments.first ?? "ka").lastPathComponent
if invokedAs.hasPrefix("ka-") {
    args.insert(String(invokedAs.dropFirst(3)), at: 0)
}
/// Parse and run by hand: `KA.main(args)` resolves to the synchronous overload from top-level code. A verb runs
/// through the pipeline's CLI adapter with what this binary passes in: the audit issue and the page renderer.
func runMain(_ args: [String]) async {
    do {
        var command = try KA.parseAsRoot(args)
        if let verb = command as? any Verb {
            try await CLI.run(verb, frontDoor: CLI.FrontDoor(audit: auditHook(), renderDashboard: dashboardRenderer))
        } else if var asyncCommand = command as? AsyncParsableCommand {
            try await asyncCommand.run()
        } else {
            try command.run()
        }
    } catch {
        KA.exit(withError: error)
    }
}
await runMain(args)
