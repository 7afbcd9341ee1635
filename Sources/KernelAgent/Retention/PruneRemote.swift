import Foundation

/// The remote side of retention: listing scripts and their parsers, guarded removal, and the archive of one build
/// job (its tree from the build host, its logs from the job dir) on the signing host. Every script takes its values as
/// positional arguments of `sh -c`; nothing from a listing is ever spliced into a script.
enum PruneRemote {
    static let root = HostChecks.workRoot

    /// `area<TAB>name<TAB>mtime<TAB>.ka-keep's first line or -` for every dir under `$1/{source,output,keep}/`.
    static let listBuildDirs = """
        for area in source output keep; do
          [ -d "$1/$area" ] || continue
          for d in "$1/$area"/*; do
            [ -d "$d" ] && [ ! -L "$d" ] || continue
            k=-
            if [ -f "$d/.ka-keep" ]; then k=$(head -n 1 -- "$d/.ka-keep" | tr -d '\\t\\r'); [ -n "$k" ] || k='(empty)'; fi
            printf '%s\\t%s\\t%s\\t%s\\n' "$area" "${d##*/}" "$(stat -c %Y -- "$d")" "$k"
          done
        done
        """

    /// `path<TAB>mtime` for every dir `$2` levels below `$1` (1: archives; 2: backups' host/version, logs' host/job).
    static let listDated = """
        [ -d "$1" ] || exit 0
        if [ "$2" = 2 ]; then set -- "$1"/*/*; else set -- "$1"/*; fi
        for d in "$@"; do
          [ -d "$d" ] && [ ! -L "$d" ] || continue
          printf '%s\\t%s\\n' "$d" "$(stat -c %Y -- "$d")"
        done
        """

    /// Removes the build dir `$1` only if its `.ka-keep` still reads `$2` (`-`: none), as when it was listed: a
    /// `ka keep` that came in between wins. Exit 3 when it was left.
    static let removeBuildDir = """
        [ -e "$1" ] || exit 0
        k=-
        if [ -f "$1/.ka-keep" ]; then k=$(head -n 1 -- "$1/.ka-keep" | tr -d '\\t\\r'); [ -n "$k" ] || k='(empty)'; fi
        [ "$k" = "$2" ] || { echo "its .ka-keep changed since it was listed ($2 -> $k): left" >&2; exit 3; }
        rm -rf -- "$1"
        """

    static func parseBuildDirs(_ text: String, host: HostName) throws -> [PruneInventory.BuildDir] {
        try text.split(separator: "\n").map { line in
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard f.count == 4, let area = PruneInventory.BuildDir.Area(rawValue: f[0]), let t = Int(f[2]), !f[1].isEmpty, !f[1].contains("/") else {
                throw KAError.failure("\(host):\(root)", "cannot read the listing line '\(line.prefix(200))'")
            }
            return .init(host: host.value, area: area, name: f[1], modified: Date(timeIntervalSince1970: TimeInterval(t)), keepMark: f[3] == "-" ? nil : f[3])
        }
    }

    static func parseDated(_ text: String, under dir: String, host: HostName) throws -> [PruneInventory.Dated] {
        try text.split(separator: "\n").map { line in
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard f.count == 2, let t = Int(f[1]), f[0].hasPrefix(dir + "/") else {
                throw KAError.failure("\(host):\(dir)", "cannot read the listing line '\(line.prefix(200))'")
            }
            _ = try RemotePath(f[0], host: host)
            return .init(path: f[0], modified: Date(timeIntervalSince1970: TimeInterval(t)))
        }
    }

    static func backups(_ dated: [PruneInventory.Dated], under dir: String) -> [PruneInventory.Backup] {
        dated.compactMap { d in
            let parts = d.path.dropFirst(dir.count + 1).split(separator: "/").map(String.init)
            guard parts.count == 2 else { return nil }
            return .init(host: parts[0], version: parts[1], modified: d.modified, path: d.path)
        }
    }

    /// Runs a listing on `host` and returns its stdout, or throws naming the host.
    /// `script` is one of this file's constant listings; the paths reach it only as positional arguments ($1…), never
    /// inside the script text.
    static func list(_ script: String, _ args: [String], on host: HostName, _ ctx: StepContext) async throws -> String {
        let argv: [RemoteArgument] = ["sh", "-c", RemoteArgument(script), "ka-prune-list"] + args.map { RemoteArgument($0) }
        let r = try await ctx.transports.transport(for: host).run(RemoteCommand(argv, timeout: .seconds(120)))
        guard r.succeeded else { throw KAError.failure("listing on \(host)", "exit \(r.status): \(r.stderrText.suffix(300))") }
        return r.stdoutText
    }

    // MARK: the archive of one build job

    /// `<archive_dir>/<job>/`: `tree.tar.gz` (the build dir as it was), `logs.tar.gz` (the job dir: log, notes, the
    /// lock; not the packages, which the repo has), `job.json` (the job record) and `b2sums` over the three, checked on
    /// the signing host before the tree is removed.
    static let files = ["tree.tar.gz", "logs.tar.gz", "job.json"]

    static func archiveDir(_ signing: PipelineConfig.Signing, _ job: JobID) -> String { "\(signing.archiveDir)/\(job)" }

    /// True when the job's archive is complete and its b2sums hold.
    static func archived(_ job: JobID, signing: PipelineConfig.Signing, _ ctx: StepContext) async throws -> Bool {
        let dir = try RemotePath(archiveDir(signing, job), host: signing.host).value
        // a constant script (b2sum -c needs the archive dir as its cwd); the validated dir is its $1
        let script = "cd -- \"$1\" 2>/dev/null || exit 1; [ -f .complete ] && b2sum --quiet -c b2sums"
        return try await ctx.run(RemoteCommand(["sh", "-c", RemoteArgument(script), "ka-archived", RemoteArgument(dir)], timeout: .seconds(600)),
                                 on: signing.host).succeeded
    }

    /// Archives `job`'s tree (on `buildHost`) and logs (`<state>/jobs/<job>/`) to the signing host, through `scratch`.
    static func archive(_ job: JobID, record: JobRecord, buildHost: HostName, signing: PipelineConfig.Signing,
                        workspace: Workspace, scratch: URL, _ ctx: StepContext) async throws -> String {
        if try await archived(job, signing: signing, ctx) { return "already archived in \(signing.host):\(archiveDir(signing, job))" }
        let local = scratch.appendingPathComponent(job.value)
        if FS.exists(local) { try FileManager.default.removeItem(at: local) }
        try FileManager.default.createDirectory(at: local, withIntermediateDirectories: true)
        defer { do { try FileManager.default.removeItem(at: local) } catch { ctx.warn?("cannot remove the scratch copy \(local.path): \(error)") } }
        // The tree, packed on the build host.
        let packed = try RemotePath("\(root)/source/\(job).ka-archive.tar.gz", host: buildHost).value
        let r = try await ctx.run(RemoteCommand(["tar", "-C", RemoteArgument("\(root)/source"), "-czf", RemoteArgument(packed), "--", RemoteArgument(job.value)],
                                                timeout: .seconds(3600)), on: buildHost)
        guard r.succeeded else { throw KAError.failure("packing \(buildHost):\(root)/source/\(job)", "tar exited \(r.status): \(r.stderrText.suffix(300))") }
        let build = try ctx.transports.transport(for: buildHost)
        try await build.copy(fromRemote: packed, to: local.appendingPathComponent("tree.tar.gz"), timeout: .seconds(3600))
        _ = try await ctx.run(RemoteCommand(["rm", "-f", "--", RemoteArgument(packed)], timeout: .seconds(60)), on: buildHost)
        // The logs, packed here.
        let jobDir = JobLog.directory(workspace, job)
        let tar = try await ProcessRunner.run(["tar", "-C", jobDir.deletingLastPathComponent().path, "--exclude=\(job)/packages", "--exclude=\(job)/package",
                                               "-czf", local.appendingPathComponent("logs.tar.gz").path, "--", job.value], timeout: .seconds(600))
        guard tar.status == 0 else { throw KAError.failure("packing \(jobDir.path)", "tar exited \(tar.status): \(String(decoding: tar.stderr.suffix(300), as: UTF8.self))") }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        enc.dateEncodingStrategy = .iso8601
        try FS.writeAtomically(try enc.encode(record), to: local.appendingPathComponent("job.json"))
        let sums = try files.map { "\(try PackageRenderer.b2sum(local.appendingPathComponent($0)))  \($0)" }.joined(separator: "\n") + "\n"
        try FS.writeAtomically(Data(sums.utf8), to: local.appendingPathComponent("b2sums"))
        // Onto the signing host, checked there before it counts.
        let dir = try RemotePath(archiveDir(signing, job), host: signing.host).value
        let removed = try await ctx.run(RemoteCommand(["rm", "-rf", "--", RemoteArgument(dir)], timeout: .seconds(120)), on: signing.host)
        let made = removed.succeeded
            ? try await ctx.run(RemoteCommand(["install", "-d", "-m", "0750", "--", RemoteArgument(dir)], timeout: .seconds(60)), on: signing.host) : removed
        guard made.succeeded else { throw KAError.failure("\(signing.host):\(dir)", "cannot make the archive dir: \(made.stderrText.suffix(300))") }
        let signer = try ctx.transports.transport(for: signing.host)
        for f in files + ["b2sums"] { try await signer.copy(local.appendingPathComponent(f), toRemote: "\(dir)/\(f)", timeout: .seconds(3600)) }
        let check = "cd -- \"$1\" && b2sum --quiet -c b2sums && : > .complete"
        let checked = try await ctx.run(RemoteCommand(["sh", "-c", RemoteArgument(check), "ka-archive-check", RemoteArgument(dir)], timeout: .seconds(600)), on: signing.host)
        guard checked.succeeded else { throw KAError.failure("the archive \(signing.host):\(dir)", "its b2sums do not hold: \(checked.stderrText.suffix(300))") }
        return "archived to \(signing.host):\(dir)"
    }

    /// Publishes `<state>/jobs/<job>/log` as `<logs.dir>/<subject>/<job>/log.txt` on the log host.
    static func publishLog(_ job: JobID, subject: String, logs: PipelineConfig.Logs, workspace: Workspace,
                           transports: any TransportProvider) async throws -> String {
        let log = JobLog.url(workspace, job)
        guard FS.exists(log) else { throw KAError.failure("job \(job)", "has no log at \(log.path)") }
        let dir = try RemotePath(logs.dir(subject: subject, job: job), host: logs.host).value
        let t = try transports.transport(for: logs.host)
        let made = try await t.run(RemoteCommand(["install", "-d", "-m", "0755", "--", RemoteArgument(dir)], timeout: .seconds(60)))
        guard made.succeeded else { throw KAError.failure("\(logs.host):\(dir)", "cannot make the log dir: \(made.stderrText.suffix(300))") }
        try await t.copy(log, toRemote: "\(dir)/log.txt", timeout: .seconds(600))
        return logs.link(subject: subject, job: job)
    }

    /// The host a job is about: its id without the `-YYYYMMDD-HHMM-xxxx` tail.
    static func subject(of job: JobID) -> String { subject(of: job.value) }
    static func subject(of job: String) -> String {
        job.split(separator: "-", omittingEmptySubsequences: false).dropLast(3).joined(separator: "-")
    }
}
