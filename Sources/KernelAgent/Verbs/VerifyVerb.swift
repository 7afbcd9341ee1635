import ArgumentParser
import Foundation

/// `ka verify <host> [--json]`: Bars 1–5 against the host's last install, in order; the first required failure
/// stops the run (as greenboot does) and files [ka:regression]. Exits 0 only when every required bar passed.
/// The install runs Bars 1–4 as its last steps; the timer in webhook/ (`ka-verify@<host>.timer`, the seed's
/// "hertz cron") runs this for Bar 5's burn-in.
package struct VerifyVerb: JobVerb {
    package static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Verify <host>'s installed kernel: Bars 1–4 (heartbeat, version, device tree, probes) and Bar 5's burn-in.",
        discussion: "Exit 0 only when every required bar passed. A failure files [ka:regression] and marks the host drifted; there is no automatic rollback.")

    @Argument(help: "Target host with an install by ka install.")
    package var host: HostName

    @Flag(help: "Print the bars' verdicts as JSON.")
    package var json = false

    package init() {}

    package var lane: Lane { .host(host) }
    package var jobSubject: String { host.value }
    package var arguments: [String] { [host.value] + (json ? ["--json"] : []) }
    package var treeAccess: TreeAccess { .read }

    package func policySubject(in ctx: VerbContext) throws -> PolicySubject { PolicySubject(targets: [host]) }

    struct Setup: Sendable {
        let target: HostName
        let manifest: Manifest
        let install: PipelineConfig.Install
        let record: InstallRecord
        let signer: HostName?
    }

    func setup(_ ctx: VerbContext) throws -> Setup {
        let target = host
        let manifest = try Manifest.load(target, in: ctx.workspace)
        guard let record = try ctx.state.installs.latest(host: target.value), record.state != .installing else {
            throw KAError.refusal("host \(target)", "has no finished install by kernel-agent to verify", hint: "ka install \(target) installs and verifies")
        }
        let pipeline = try ctx.settings().pipeline
        return Setup(target: target, manifest: manifest, install: pipeline.install, record: record, signer: pipeline.signing?.host)
    }

    package func steps(in ctx: VerbContext) throws -> [JobStep] {
        let s = try setup(ctx)
        let run = VerifyRun(setup: s, state: ctx.state, blocks: ctx.blocks, records: ctx.records, now: ctx.now, workspace: ctx.workspace)
        let lane = JobStep.lane(s.target)
        var steps = [
            JobStep("Bar 1: \(s.target) answers over SSH (tried every \(s.install.heartbeatInterval) s for \(BuildSteps.shown(s.install.heartbeatTimeout)))",
                    lanes: [lane], resumption: .rerun) { ctx in try await run.bar1(ctx) },
            JobStep("Bar 2: the running kernel and linux-\(s.manifest.kernelSuffix)'s version equal install \(s.record.job)'s (\(s.record.version))",
                    lanes: [lane], resumption: .rerun) { ctx in try await run.bar2(ctx) },
            JobStep("Bars 3–4: the manifest's device-tree checks and per-patch probes", lanes: [lane], resumption: .rerun) { ctx in
                try await run.bars3and4(ctx)
            },
        ]
        if s.record.burnInUntil != nil {
            steps.append(JobStep("Bar 5: burn-in until \(s.record.burnInUntil.map { $0.formatted(.iso8601) } ?? "-") (no reboot since the install)",
                                 lanes: [lane], resumption: .rerun) { ctx in try await run.bar5(ctx) })
        }
        if s.record.state == .installed {
            steps.append(JobStep("record install \(s.record.job) as verified and close its [ka:installable]", lanes: [lane], resumption: .rerun) { ctx in
                try await run.recordVerified(ctx)
            })
        }
        return steps
    }

    package func summary(of job: JobRecord, in ctx: VerbContext) -> String {
        let results: [BarResult]
        do { results = try VerifyRun.results(ctx.workspace, job.id) } catch { return "ka verify \(host): cannot read the verdicts: \(JobRunner.text(error))" }
        let passed = job.state == .succeeded
        if json {
            struct Out: Encodable { let host: String; let job: String; let passed: Bool; let bars: [BarResult] }
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            do { return String(decoding: try enc.encode(Out(host: host.value, job: job.id.value, passed: passed, bars: results)), as: UTF8.self) } catch {
                return "{\"error\": \"cannot encode the verdicts\"}"
            }
        }
        var lines = results.map { "\($0.code == .pass ? "✓" : $0.code == .skip ? "-" : "✗") \($0.line)" }
        lines.append("verify \(host): \(passed ? "verified" : "FAILED\(job.detail.map { " (\($0))" } ?? "")") — job \(job.id)")
        return lines.joined(separator: "\n")
    }
}

/// The steps of `ka verify`: each bar appends its verdicts to `bars.jsonl` in the job's dir.
struct VerifyRun: Sendable {
    let setup: VerifyVerb.Setup
    let state: StateStore
    let blocks: any BlockStore
    let records: (any RecordFiler)?
    let now: @Sendable () -> Date
    let workspace: Workspace

    var target: HostName { setup.target }

    static func results(_ ws: Workspace, _ job: JobID) throws -> [BarResult] {
        let url = JobLog.directory(ws, job).appendingPathComponent("bars.jsonl")
        guard FS.exists(url) else { return [] }
        let data = try FS.read(url, display: url.path, limit: 4 << 20)
        return try data.split(separator: UInt8(ascii: "\n")).map { try JSONDecoder().decode(BarResult.self, from: Data($0)) }
    }

    func note(_ ctx: StepContext, _ r: BarResult) throws {
        let url = JobLog.directory(workspace, ctx.job).appendingPathComponent("bars.jsonl")
        var data = FS.exists(url) ? try FS.read(url, display: url.path, limit: 4 << 20) : Data()
        data.append(try JSONEncoder().encode(r)); data.append(UInt8(ascii: "\n"))
        try FS.writeAtomically(data, to: url)
    }

    /// Notes the verdict; a required failure files the regression and fails the step.
    func judge(_ ctx: StepContext, _ r: BarResult) async throws -> String {
        try note(ctx, r)
        if r.code == .infraError && r.required {
            // KernelCI: an infra error is never a regression; the run fails so the timer tries again.
            throw KAError.failure("Bar \(r.bar) (\(r.name))", "infra error: \(r.detail.prefix(300))", hint: "not a regression; ka verify \(target) again once \(target) answers")
        }
        guard r.code == .fail && r.required else { return r.line }
        var rec = try current()
        let block = try await Regression.file(ctx, host: target, bar: r, record: rec, state: state, blocks: blocks,
                                              pkgbase: "linux-\(setup.manifest.kernelSuffix)", signer: setup.signer ?? target, now: now())
        rec.state = .drifted; rec.updatedAt = now()
        rec.bars = ([rec.bars, r.line]).filter { !$0.isEmpty }.joined(separator: "\n")
        rec.burnInUntil = nil
        try state.installs.record(rec)
        throw KAError.failure("Bar \(r.bar) (\(r.name))\(r.probe.map { " probe `\($0)`" } ?? "")", String(r.detail.prefix(500)),
                              "filed \(block.kind.titlePrefix) \(block.id); \(target) is drifted")
    }

    /// The install record as it is now (another job may have changed it since the steps were made).
    func current() throws -> InstallRecord {
        guard let r = try state.installs.install(job: setup.record.job) else { throw KAError.failure("install \(setup.record.job)", "its record is gone") }
        return r
    }

    /// Bars 1–4 passed on an install that had not verified yet (its own verify step ended in an infra error).
    func recordVerified(_ ctx: StepContext) async throws -> String {
        var rec = try current()
        guard rec.state == .installed else { return "install \(rec.job) is \(rec.state.rawValue); nothing to record" }
        rec.state = .verified; rec.updatedAt = now()
        try state.installs.record(rec)
        let outcome = "✅ installed on \(target) by install job \(rec.job) and verified by ka verify (job \(ctx.job))"
        try await records?.closeRecord(ref: "installable-\(rec.buildJob)", outcome: outcome)
        if try state.installs.closure(buildJob: rec.buildJob) == nil {
            try state.installs.closeInstallable(InstallableClosure(buildJob: rec.buildJob, installJob: rec.job, outcome: outcome, closedAt: now()))
        }
        return "install \(rec.job) verified; its [ka:installable] closed"
    }

    func bootID(_ ctx: StepContext) async throws -> String {
        let r = try await ctx.run(RemoteCommand(["cat", RemoteArgument(InstallSteps.bootIDPath)], timeout: .seconds(30)), on: target)
        guard r.succeeded else { throw KAError.failure("host \(target)", "cannot read \(InstallSteps.bootIDPath): exit \(r.status)") }
        return r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func bar1(_ ctx: StepContext) async throws -> String {
        let deadline = now().addingTimeInterval(TimeInterval(setup.install.heartbeatTimeout))
        var last = ""
        while true {
            try Task.checkCancellation()
            do {
                let id = try await bootID(ctx)
                return try await judge(ctx, BarResult(bar: 1, name: "SSH heartbeat", code: .pass, required: true, detail: "answers (boot id \(id.prefix(8))…)"))
            } catch let e as KAError where !Task.isCancelled { last = e.description }
            if now() >= deadline {
                // No reboot is pending here: a host that does not answer is the link's fault until shown otherwise.
                return try await judge(ctx, BarResult(bar: 1, name: "SSH heartbeat", code: .infraError, required: true,
                                                      detail: "no answer within \(BuildSteps.shown(setup.install.heartbeatTimeout)): \(last)"))
            }
            try await Task.sleep(for: .seconds(setup.install.heartbeatInterval))
        }
    }

    func bar2(_ ctx: StepContext) async throws -> String {
        var tries = 0
        while true {
            let r = try await Bars.bar2(ctx, host: target, record: try current(), pkgbase: "linux-\(setup.manifest.kernelSuffix)")
            tries += 1
            if r.code != .infraError || tries > setup.install.probeRetries { return try await judge(ctx, r) }
        }
    }

    func bars3and4(_ ctx: StepContext) async throws -> String {
        let results = try await Bars.later(ctx, host: target, manifest: setup.manifest, retries: setup.install.probeRetries)
        var lines: [String] = []
        for r in results { lines.append(try await judge(ctx, r)) }
        return lines.isEmpty ? "the manifest asks for no device-tree check or probe" : lines.joined(separator: "; ")
    }

    func bar5(_ ctx: StepContext) async throws -> String {
        let record = try current()
        guard let until = record.burnInUntil else { return "no burn-in scheduled" }
        let id = try await bootID(ctx)
        if let after = record.bootAfter, id != after {
            return try await judge(ctx, BarResult(bar: 5, name: "burn-in", code: .fail, required: true,
                                                  detail: "\(target) rebooted during burn-in (boot id \(after.prefix(8))… → \(id.prefix(8))…)"))
        }
        guard now() >= until else {
            let left = Int(until.timeIntervalSince(now()) / 60)
            return try await judge(ctx, BarResult(bar: 5, name: "burn-in", code: .skip, required: false, detail: "running: \(left) min left, no reboot so far"))
        }
        var rec = record
        rec.burnInUntil = nil; rec.updatedAt = now()
        rec.bars = ([rec.bars, "bar5 pass burn-in complete at \(now().formatted(.iso8601))"]).filter { !$0.isEmpty }.joined(separator: "\n")
        try state.installs.record(rec)
        return try await judge(ctx, BarResult(bar: 5, name: "burn-in", code: .pass, required: false, detail: "complete: no reboot and Bars 1–4 held until \(until.formatted(.iso8601))"))
    }
}
