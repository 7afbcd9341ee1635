import ArgumentParser
import Foundation

/// `ka prune [--dry-run]`: the seed's retention as a job. It lists the build dirs of every always-on build host, the
/// install backups and archives on the signing host and the published logs on the log host, decides by
/// `PruneRules` what goes and why, archives each succeeded build (tree + logs) before its build dirs are removed,
/// and removes the rest. It never removes a kept job (`.ka-keep`) or a host's newest backup, and does nothing while
/// pruning is paused (`ka pause-prune`). `webhook/ka-prune.timer` runs it daily.
package struct PruneVerb: JobVerb {
    package static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Archive succeeded builds and remove build dirs, backups, archives and published logs past their retention; lists what and why.",
        discussion: "Failed builds stay 14 days in keep/ (longer with ka keep), backups 7 days (a host's newest always), archives and published logs 1 year. Nothing happens while ka pause-prune holds.")

    @Flag(name: .customLong("dry-run"), help: "Only list what would be archived, removed or left, and why.")
    package var dryRun = false

    package init() {}

    package var lane: Lane { .none }
    package var jobSubject: String { "prune" }
    package var arguments: [String] { dryRun ? ["--dry-run"] : [] }
    package func policySubject(in ctx: VerbContext) throws -> PolicySubject { PolicySubject() }

    static let laneName = "retention"
    static let listNote = "prune-list.json"
    static let notesNote = "prune-notes"
    static let archivedNote = "prune-archived"
    static let pausedNote = "prune-paused"

    /// What the steps read, cheap and local.
    struct Setup: Sendable {
        let pipeline: PipelineConfig
        let buildHosts: [HostName]
        let onDemand: [HostName]
        let workspace: Workspace
        let state: StateStore
        let jobs: any JobStore
        let now: @Sendable () -> Date
    }

    func setup(_ ctx: VerbContext) throws -> Setup {
        let registry = try ctx.registry()
        let builders = registry.hosts.keys.sorted().filter { registry.hosts[$0]?.roles.contains(.build) ?? false }
        let onDemand = builders.filter { if case .onDemand = registry.hosts[$0]?.wake { return true }; return false }
        return Setup(pipeline: try ctx.settings().pipeline, buildHosts: builders.filter { !onDemand.contains($0) }, onDemand: onDemand,
                     workspace: ctx.workspace, state: ctx.state, jobs: ctx.jobs, now: ctx.now)
    }

    package func steps(in ctx: VerbContext) throws -> [JobStep] {
        let s = try setup(ctx)
        let signer = s.pipeline.signing.map { "\($0.host)" } ?? "the signing host"
        var steps = [
            JobStep("list build dirs on \(s.buildHosts.map(\.value).joined(separator: ", ")), backups and archives on \(signer)"
                    + "\(s.pipeline.logs.map { ", published logs on \($0.host)" } ?? ""); decide what goes and why",
                    lanes: [Self.laneName], resumption: .rerun) { step in try await Self.list(s, step) },
        ]
        if !dryRun {
            steps.append(JobStep("archive each succeeded build's tree and logs to \(signer):\(s.pipeline.signing?.archiveDir ?? PipelineConfig.Signing.defaultArchiveDir)/<job>/"
                                 + "\(s.pipeline.logs.map { " and publish job logs to \($0.host):\($0.dir)" } ?? "")",
                                 lanes: [Self.laneName], resumption: .rerun) { step in try await Self.archive(s, step) })
            steps.append(JobStep("remove what the list names (re-checking each build dir's .ka-keep)", lanes: [Self.laneName],
                                 resumption: .rerun) { step in try await Self.remove(s, step) })
        }
        return steps
    }

    // MARK: the steps

    static func jobDir(_ s: Setup, _ step: StepContext) -> URL { JobLog.directory(s.workspace, step.job) }

    static func note(_ s: Setup, _ step: StepContext, _ name: String, _ text: String) throws {
        try FS.writeAtomically(Data(text.utf8), to: jobDir(s, step).appendingPathComponent(name))
    }

    static func readNote(_ dir: URL, _ name: String) throws -> String? {
        let url = dir.appendingPathComponent(name)
        guard FS.exists(url) else { return nil }
        return String(decoding: try FS.read(url, display: url.path, limit: 64 << 20), as: UTF8.self)
    }

    /// The pause, noted in the job dir (so the summary says so); nil when pruning may go on.
    static func paused(_ s: Setup, _ step: StepContext) throws -> String? {
        guard let p = try s.state.prunePause() else { return nil }
        try note(s, step, pausedNote, p.shown)
        try step.log.append("ka", "pruning is \(p.shown); nothing is archived or removed")
        return "pruning is \(p.shown): nothing done (ka resume-prune lifts it)"
    }

    static func list(_ s: Setup, _ step: StepContext) async throws -> String {
        if let why = try paused(s, step) {
            try note(s, step, listNote, "[]")
            return why
        }
        var inv = PruneInventory()
        var notes: [String] = s.onDemand.map { "\($0): on demand, not woken for pruning" }
        for host in s.buildHosts {
            do {
                inv.buildDirs += try PruneRemote.parseBuildDirs(try await PruneRemote.list(PruneRemote.listBuildDirs, [PruneRemote.root], on: host, step), host: host)
            } catch let e as KAError where !Task.isCancelled {
                notes.append("\(host): not listed, left as it is (\(e.description))")
            }
        }
        for name in Set(inv.buildDirs.map(\.name)) where JobID.isValid(name) {
            if let job = try s.jobs.job(try JobID(name)) { inv.jobStates[name] = job.state }
        }
        if let sign = s.pipeline.signing {
            let backups = try await PruneRemote.list(PruneRemote.listDated, [sign.backupsDir, "2"], on: sign.host, step)
            inv.backups = PruneRemote.backups(try PruneRemote.parseDated(backups, under: sign.backupsDir, host: sign.host), under: sign.backupsDir)
            let archives = try await PruneRemote.list(PruneRemote.listDated, [sign.archiveDir, "1"], on: sign.host, step)
            inv.archives = try PruneRemote.parseDated(archives, under: sign.archiveDir, host: sign.host)
        } else {
            notes.append("KA_CONFIG has no signing section: backups and archives not listed")
        }
        if let logs = s.pipeline.logs {
            let listed = try await PruneRemote.list(PruneRemote.listDated, [logs.dir, "2"], on: logs.host, step)
            inv.publishedLogs = try PruneRemote.parseDated(listed, under: logs.dir, host: logs.host)
        }
        let items = PruneRules.decide(inv, now: s.now(), signer: s.pipeline.signing?.host.value ?? "-", logHost: s.pipeline.logs?.host.value ?? "-")
        for i in items { try step.log.append("ka", i.line) }
        for n in notes { try step.log.append("ka", "note: \(n)") }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try FS.writeAtomically(try enc.encode(items), to: jobDir(s, step).appendingPathComponent(listNote))
        try note(s, step, notesNote, notes.joined(separator: "\n"))
        let count = { (a: PruneItem.Action) in items.filter { $0.action == a }.count }
        return "\(count(.archive)) to archive, \(count(.remove)) to remove, \(count(.leave)) left"
    }

    static func items(_ s: Setup, _ step: StepContext) throws -> [PruneItem] {
        guard let text = try readNote(jobDir(s, step), listNote) else { throw KAError.failure("job \(step.job)", "the prune list is missing: the listing step did not finish") }
        return try JSONDecoder().decode([PruneItem].self, from: Data(text.utf8))
    }

    static func archive(_ s: Setup, _ step: StepContext) async throws -> String {
        if let why = try paused(s, step) { return why }
        let wanted = try items(s, step).filter { $0.action == .archive }
        var archived: [String] = [], failed: [String] = []
        if !wanted.isEmpty, s.pipeline.signing == nil { failed.append("no signing section in KA_CONFIG: nothing archived, build dirs left") }
        if let sign = s.pipeline.signing {
            let scratch = jobDir(s, step).appendingPathComponent("scratch")
            for item in wanted {
                do {
                    let id = try JobID(item.job ?? "")
                    guard let record = try s.jobs.job(id) else { throw KAError.failure("job \(id)", "is not in this state dir any more") }
                    let text = try await PruneRemote.archive(id, record: record, buildHost: try HostName(item.host), signing: sign,
                                                             workspace: s.workspace, scratch: scratch, step)
                    try step.log.append("ka", "\(id): \(text)")
                    try FS.writeAtomically(Data("\(sign.host):\(PruneRemote.archiveDir(sign, id))\n".utf8),
                                           to: JobLog.directory(s.workspace, id).appendingPathComponent("archived"))
                    archived.append(id.value)
                } catch let e as KAError where !Task.isCancelled {
                    failed.append("\(item.job ?? item.path): not archived, its build dirs stay (\(e.description))")
                    try step.log.append("ka", "error: \(failed.last ?? "")")
                }
            }
        }
        try note(s, step, archivedNote, archived.joined(separator: "\n"))
        var published = 0
        if s.pipeline.logs != nil {
            // Every finished job's log, once: the status comment links to it.
            for job in try s.jobs.jobs(states: [.succeeded, .failed, .cancelled], limit: 1000) {
                let dir = JobLog.directory(s.workspace, job.id)
                guard FS.exists(dir.appendingPathComponent("log")), !FS.exists(dir.appendingPathComponent("log-published")) else { continue }
                do {
                    _ = try await JobLogPublisher.publish(job.id, workspace: s.workspace, transports: step.transports, pipeline: s.pipeline)
                    published += 1
                } catch let e as KAError where !Task.isCancelled {
                    failed.append("the log of \(job.id): not published (\(e.description))")
                    try step.log.append("ka", "error: \(failed.last ?? "")")
                }
            }
        }
        try note(s, step, "prune-failures", failed.joined(separator: "\n"))
        return "\(archived.count) archived" + (s.pipeline.logs == nil ? "" : ", \(published) log(s) published") + (failed.isEmpty ? "" : ", \(failed.count) failed")
    }

    static func remove(_ s: Setup, _ step: StepContext) async throws -> String {
        if let why = try paused(s, step) { return why }
        let archived = Set((try readNote(jobDir(s, step), archivedNote) ?? "").split(separator: "\n").map(String.init))
        var failed = (try readNote(jobDir(s, step), "prune-failures") ?? "").split(separator: "\n").map(String.init)
        var removed = 0, left = 0
        let all = try items(s, step)
        let toArchive = Set(all.filter { $0.action == .archive }.compactMap(\.job))
        for item in all where item.action != .leave {
            if let why = try paused(s, step) { failed.append(why); break }   // a pause that came in mid-way holds the rest
            let job = item.job ?? ""
            let isBuildDir = item.job != nil
            // A succeeded build's dirs go only once its archive holds.
            if isBuildDir, toArchive.contains(job), !archived.contains(job) {
                left += 1
                try step.log.append("ka", "left \(item.host):\(item.path): its job's archive did not complete")
                continue
            }
            do {
                let host = try HostName(item.host)
                let path = try RemotePath(item.path, host: host).value
                guard allowed(path, isBuildDir: isBuildDir, s.pipeline) else {
                    throw KAError.refusal("\(host):\(path)", "is not under a dir prune manages")
                }
                let argv: [RemoteArgument] = isBuildDir
                    ? ["sh", "-c", RemoteArgument(PruneRemote.removeBuildDir), "ka-prune-rm", RemoteArgument(path), RemoteArgument(item.keepMark ?? "-")]
                    : ["rm", "-rf", "--", RemoteArgument(path)]
                let r = try await step.run(RemoteCommand(argv, timeout: .seconds(1800)), on: host)
                if r.status == 3 { left += 1; continue }   // kept since it was listed
                guard r.succeeded else { throw KAError.failure("removing \(host):\(path)", "exit \(r.status): \(r.stderrText.suffix(300))") }
                removed += 1
            } catch let e as KAError where !Task.isCancelled {
                failed.append("\(item.host):\(item.path): not removed (\(e.description))")
            }
        }
        let text = "\(removed) removed" + (left > 0 ? ", \(left) left after a re-check" : "")
        guard failed.isEmpty else {
            throw KAError.failure("ka prune", "\(text); \(failed.count) problem(s): " + failed.joined(separator: "; "),
                                  hint: "ka jobs show \(step.job) has the log; the next ka prune tries again")
        }
        return text
    }

    /// Only the dirs prune manages, one level below their root (build dirs: below source/, output/ or keep/).
    static func allowed(_ path: String, isBuildDir: Bool, _ p: PipelineConfig) -> Bool {
        func below(_ root: String, depth: Int) -> Bool {
            guard path.hasPrefix(root + "/") else { return false }
            return path.dropFirst(root.count + 1).split(separator: "/", omittingEmptySubsequences: false).count == depth
        }
        if isBuildDir { return PruneInventory.BuildDir.Area.allCases.contains { below("\(PruneRemote.root)/\($0.rawValue)", depth: 1) } }
        return [p.signing.map { below($0.backupsDir, depth: 2) || below($0.archiveDir, depth: 1) }, p.logs.map { below($0.dir, depth: 2) }]
            .contains { $0 == true }
    }

    // MARK: what a person reads

    package func summary(of job: JobRecord, in ctx: VerbContext) -> String {
        let dir = JobLog.directory(ctx.workspace, job.id)
        var lines: [String] = []
        do {
            if let paused = try Self.readNote(dir, Self.pausedNote) {
                return "prune: pruning is \(paused.trimmingCharacters(in: .whitespacesAndNewlines)) — nothing was archived or removed; ka resume-prune lifts it (job \(job.id))"
            }
            let items = try Self.readNote(dir, Self.listNote).map { try JSONDecoder().decode([PruneItem].self, from: Data($0.utf8)) } ?? []
            let notes = (try Self.readNote(dir, Self.notesNote) ?? "").split(separator: "\n").map(String.init)
            lines.append(dryRun ? "dry run: nothing was changed. ka prune would:" : "ka prune:")
            for a in [PruneItem.Action.archive, .remove, .leave] {
                for i in items where i.action == a { lines.append("  \(i.line)") }
            }
            if items.isEmpty { lines.append("  nothing to archive, remove or leave") }
            for n in notes { lines.append("  note: \(n)") }
        } catch {
            lines.append("(cannot read the prune list: \(JobRunner.text(error)))")
        }
        lines += job.steps.map { "\($0.state.mark) \($0.name)\($0.outcome.map { ": \($0)" } ?? "")" }
        switch job.state {
        case .succeeded: lines.append("prune: done — job \(job.id)")
        case .cancelled, .interrupted: lines.append("prune: \(job.state.rawValue) — job \(job.id)")
        default: lines.append("prune: FAILED\(job.detail.map { " (\($0))" } ?? "") — job \(job.id)")
        }
        return lines.joined(separator: "\n")
    }
}
