import ArgumentParser
import Foundation

/// `ka restore-archive <job-id>`: brings an archived build job back from `<signing host>:<archive_dir>/<job-id>/`:
/// its logs and record into this state dir (when they are gone), and its tree to its build host's
/// `/srv/kernel-agent/source/<job-id>/`, kept from pruning for 14 days, so `ka debug <job-id>` works on it again.
package struct RestoreArchiveVerb: JobVerb {
    package static let configuration = CommandConfiguration(
        commandName: "restore-archive",
        abstract: "Restore an archived build job (tree and logs) from <signing host>:<archive_dir>/<job-id>/ to its build host, for ka debug.")
    @Argument(help: "Build job id (the archive's dir name).") package var job: String
    package init() {}

    package var lane: Lane { .none }
    package var jobSubject: String { JobID.isValid(job) ? PruneRemote.subject(of: job) : "restore" }
    package var arguments: [String] { [job] }
    package func policySubject(in ctx: VerbContext) throws -> PolicySubject { _ = try JobID(job); return PolicySubject() }

    /// How long a restored tree is kept from pruning (a `.ka-keep` date), so a person has time to debug it.
    static let keptDays = 14
    static let fetched = "restore"

    struct Setup: Sendable {
        let archived: JobID
        let signing: PipelineConfig.Signing
        let workspace: Workspace
        let jobs: any JobStore
        let now: @Sendable () -> Date
    }

    func setup(_ ctx: VerbContext) throws -> Setup {
        let id = try JobID(job)
        guard let signing = try ctx.settings().pipeline.signing else {
            throw KAError.refusal("ka restore-archive \(id)", "KA_CONFIG has no signing section", hint: "the archive lives on the signing host: set signing: {host, archive_dir, …}")
        }
        return Setup(archived: id, signing: signing, workspace: ctx.workspace, jobs: ctx.jobs, now: ctx.now)
    }

    package func steps(in ctx: VerbContext) throws -> [JobStep] {
        let s = try setup(ctx)
        let from = "\(s.signing.host):\(PruneRemote.archiveDir(s.signing, s.archived))"
        return [
            JobStep("fetch \(from)/ and check its b2sums", lanes: [PruneVerb.laneName], resumption: .rerun) { step in try await Self.fetch(s, step) },
            JobStep("restore the job's logs and record into the state dir (if they are gone)", lanes: [PruneVerb.laneName], resumption: .rerun) { step in
                try await Self.restoreLogs(s, step)
            },
            JobStep("unpack the tree into its build host's \(PruneRemote.root)/source/\(s.archived)/ (kept \(Self.keptDays) days)", lanes: [PruneVerb.laneName],
                    resumption: .rerun) { step in try await Self.unpack(s, step) },
        ]
    }

    static func local(_ s: Setup, _ step: StepContext) -> URL { JobLog.directory(s.workspace, step.job).appendingPathComponent(fetched) }

    static func fetch(_ s: Setup, _ step: StepContext) async throws -> String {
        let dir = try RemotePath(PruneRemote.archiveDir(s.signing, s.archived), host: s.signing.host).value
        let check = try await step.run(RemoteCommand(["test", "-f", RemoteArgument("\(dir)/.complete")], timeout: .seconds(60)), on: s.signing.host)
        guard check.succeeded else {
            throw KAError.refusal("job \(s.archived)", "has no complete archive in \(s.signing.host):\(dir)", hint: "ka prune archives succeeded builds; ka jobs lists the jobs")
        }
        let local = local(s, step)
        if FS.exists(local) { try FileManager.default.removeItem(at: local) }
        try FileManager.default.createDirectory(at: local, withIntermediateDirectories: true)
        let t = try step.transports.transport(for: s.signing.host)
        for f in PruneRemote.files + ["b2sums"] {
            try await t.copy(fromRemote: "\(dir)/\(f)", to: local.appendingPathComponent(f), timeout: .seconds(3600))
        }
        let sums = String(decoding: try FS.read(local.appendingPathComponent("b2sums"), limit: 4096), as: UTF8.self)
        for line in sums.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, PruneRemote.files.contains(parts[1]) else { throw KAError.failure("\(dir)/b2sums", "cannot read the line '\(line.prefix(200))'") }
            let got = try PackageRenderer.b2sum(local.appendingPathComponent(parts[1]))
            guard got == parts[0] else { throw KAError.failure("\(s.signing.host):\(dir)/\(parts[1])", "b2sum \(got.prefix(16))… is not the archive's \(parts[0].prefix(16))…") }
        }
        return "fetched and checked \(PruneRemote.files.joined(separator: ", "))"
    }

    /// The job dir and record come back only when they are gone: a local log is never overwritten by an older copy.
    static func restoreLogs(_ s: Setup, _ step: StepContext) async throws -> String {
        let local = local(s, step)
        let jobDir = JobLog.directory(s.workspace, s.archived)
        var did: [String] = []
        if !FS.exists(jobDir) {
            let parent = jobDir.deletingLastPathComponent()
            try FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true)
            let tar = try await ProcessRunner.run(["tar", "-xzf", local.appendingPathComponent("logs.tar.gz").path, "-C", parent.path, "--no-same-owner",
                                                   "--", s.archived.value], timeout: .seconds(600))
            guard tar.status == 0 else {
                throw KAError.failure("unpacking the logs of \(s.archived)", "tar exited \(tar.status): \(String(decoding: tar.stderr.suffix(300), as: UTF8.self))")
            }
            did.append("logs to \(s.workspace.display(jobDir))")
        }
        if try s.jobs.job(s.archived) == nil {
            let dec = JSONDecoder()
            dec.dateDecodingStrategy = .iso8601
            let record = try dec.decode(JobRecord.self, from: try FS.read(local.appendingPathComponent("job.json"), limit: 16 << 20))
            guard record.id == s.archived, record.verb == "build" else {
                throw KAError.failure("the archive of \(s.archived)", "its job.json is job \(record.id) (\(record.verb)), not this build")
            }
            try s.jobs.insert(record)
            did.append("its job record")
        }
        return did.isEmpty ? "the job's logs and record are here already" : "restored " + did.joined(separator: " and ")
    }

    static func unpack(_ s: Setup, _ step: StepContext) async throws -> String {
        let jobDir = JobLog.directory(s.workspace, s.archived)
        let noteURL = jobDir.appendingPathComponent("build-host")
        guard FS.exists(noteURL) else { throw KAError.failure("job \(s.archived)", "its logs name no build host (build-host is missing)") }
        let host = try HostName(String(decoding: try FS.read(noteURL, limit: 4096), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        let tree = try RemotePath("\(PruneRemote.root)/source/\(s.archived)", host: host).value
        let packed = try RemotePath("\(PruneRemote.root)/source/\(s.archived).ka-restore.tar.gz", host: host).value
        let until = s.now().addingTimeInterval(TimeInterval(keptDays * 86400)).formatted(.iso8601)
        try await step.transports.transport(for: host).copy(local(s, step).appendingPathComponent("tree.tar.gz"), toRemote: packed, timeout: .seconds(3600))
        // Into a fresh dir beside the tree, then renamed: a tree already there (restored before) is left as it is.
        let script = """
            cd -- "$1/source" || exit 1
            if [ -e "$2" ]; then rm -f -- "$3"; echo "$1/source/$2 is there already: left as it is" >&2; exit 4; fi
            tmp=".ka-restore-$2"; rm -rf -- "$tmp" && mkdir -- "$tmp" || exit 1
            tar -xzf "$3" -C "$tmp" --no-same-owner -- "$2" || exit 1
            printf '%s\\n' "$4" > "$tmp/$2/.ka-keep" && mv -T -- "$tmp/$2" "$2" && rmdir -- "$tmp" && rm -f -- "$3"
            """
        let r = try await step.run(RemoteCommand(["sh", "-c", RemoteArgument(script), "ka-restore", RemoteArgument(PruneRemote.root), RemoteArgument(s.archived.value),
                                                  RemoteArgument(packed), RemoteArgument(until)], timeout: .seconds(3600)), on: host)
        guard r.succeeded || r.status == 4 else { throw KAError.failure("unpacking into \(host):\(tree)", "exit \(r.status): \(r.stderrText.suffix(300))") }
        try FS.writeAtomically(Data("\(host):\(tree)\n".utf8), to: jobDir.appendingPathComponent("tree"))
        return r.status == 4 ? "\(host):\(tree) was there already" : "\(host):\(tree), kept until \(until)"
    }

    package func summary(of job: JobRecord, in ctx: VerbContext) -> String {
        var lines = job.steps.map { "\($0.state.mark) \($0.name)\($0.outcome.map { ": \($0)" } ?? "")" }
        switch job.state {
        case .succeeded: lines.append("restore-archive \(self.job): restored — `ka debug \(self.job)` opens a shell in it (job \(job.id))")
        case .cancelled, .interrupted: lines.append("restore-archive \(self.job): \(job.state.rawValue) — job \(job.id)")
        default: lines.append("restore-archive \(self.job): FAILED\(job.detail.map { " (\($0))" } ?? "") — job \(job.id)")
        }
        return lines.joined(separator: "\n")
    }
}
