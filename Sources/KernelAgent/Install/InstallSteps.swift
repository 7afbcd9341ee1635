import Foundation

/// One package of an [ka:installable] build, as its record lists it.
package struct InstallPackage: Sendable, Equatable {
    package let file: String
    package let b2sum: String
    package let signature: String?

    /// `<file> b2:<b2sum> sig:<file>.sig` per line (BuildSteps.fileInstallable writes them).
    package static func parse(_ text: String, from shown: String) throws -> [InstallPackage] {
        var out: [InstallPackage] = []
        for line in text.split(separator: "\n") where !line.isEmpty {
            let parts = line.split(separator: " ")
            guard parts.count >= 2, parts[1].hasPrefix("b2:") else { throw KAError.failure(shown, "cannot read the package line '\(line.prefix(200))'") }
            let file = String(parts[0]), sum = String(parts[1].dropFirst(3))
            let sig = parts.count > 2 && parts[2].hasPrefix("sig:") ? String(parts[2].dropFirst(4)) : nil
            guard !file.contains("/"), file.contains(".pkg.tar.") || file.hasSuffix(".deb"), Hex.isLowerHex(sum, count: 128),
                  sig.map({ $0 == file + ".sig" }) ?? true else {
                throw KAError.failure(shown, "not a package line: '\(line.prefix(200))'")
            }
            out.append(InstallPackage(file: file, b2sum: sum, signature: sig))
        }
        guard !out.isEmpty else { throw KAError.failure(shown, "lists no package") }
        return out
    }

    /// `linux-x-7.0-1-aarch64.pkg.tar.zst` → (`linux-x`, `7.0-1`).
    package var nameAndVersion: (name: String, version: String)? {
        let base = file.components(separatedBy: ".pkg.tar.").first ?? file
        let parts = base.split(separator: "-")
        guard parts.count >= 4 else { return nil }
        return (parts.dropLast(3).joined(separator: "-"), "\(parts[parts.count - 3])-\(parts[parts.count - 2])")
    }
}

/// The steps of `ka install <host>`. They hand each other notes in the job's dir (`<state>/jobs/<id>/`):
/// `installable-job` (which build it installs), `backup` (where the /boot backup is), `boot-before` and
/// `reboot-requested` (so a resumed job never reboots twice), `heartbeat` (when the host answered again).
struct InstallSteps: Sendable {
    let setup: InstallSetup
    let workspace: Workspace
    let state: StateStore
    let blocks: any BlockStore
    let records: (any RecordFiler)?
    let now: @Sendable () -> Date

    init(setup: InstallSetup, ctx: VerbContext) {
        self.setup = setup
        workspace = ctx.workspace; state = ctx.state; blocks = ctx.blocks; records = ctx.records; now = ctx.now
    }

    var target: HostName { setup.target }
    var suffix: String { setup.manifest.kernelSuffix }
    var pkgbase: String { "linux-\(suffix)" }
    var install: PipelineConfig.Install { setup.pipeline.install }

    func steps() -> [JobStep] {
        let lane = JobStep.lane(target)
        let signer = setup.signing.host
        let timeout = install.heartbeatTimeout
        return [
            JobStep("pre-check: \(target) answers; fetch the packages and signatures from \(signer) over the LAN; pacman-key --verify them on \(target)",
                    lanes: [lane], resumption: .rerun) { ctx in try await preCheck(ctx) },
            JobStep("back up \(target):/boot and its installed kernel version to \(signer):\(setup.signing.backupsDir)/\(target)/<version>/",
                    lanes: [lane], resumption: .rerun) { ctx in try await backup(ctx) },
            JobStep("pacman -U the packages on \(target) as \(setup.privilege.joined(separator: " "))", lanes: [lane],
                    resumption: .check({ ctx in
                        // installed before the interruption: what the step records after pacman -U is recorded now
                        guard try await installedAlready(ctx) else { return false }
                        _ = try await recordRelease(ctx)
                        return true
                    })) { ctx in try await installPackages(ctx) },
            JobStep("make sure /boot/initramfs-\(suffix).img exists (mkinitcpio -p \(pkgbase) when the hook did not)", lanes: [lane],
                    resumption: .rerun) { ctx in try await initramfs(ctx) },
            JobStep("write the managed boot entry \(pkgbase) into /boot/extlinux/extlinux.conf (atomic; \(setup.manifest.installMode.rawValue))",
                    lanes: [lane], resumption: .rerun) { ctx in try await bootEntry(ctx) },
            // Never twice: the note is written before the reboot is asked for, and a resumed job finds it.
            JobStep("reboot \(target)", lanes: [lane],
                    resumption: .check({ ctx in FS.exists(jobDir(ctx).appendingPathComponent("reboot-requested")) })) { ctx in try await reboot(ctx) },
            JobStep("Bar 1: wait for \(target)'s SSH heartbeat (every \(install.heartbeatInterval) s, at most \(BuildSteps.shown(timeout)) after the reboot)",
                    lanes: [lane], resumption: .rerun) { ctx in try await heartbeat(ctx) },
            JobStep("verify Bars 2–4 (and schedule Bar 5), then close [ka:installable]", lanes: [lane], resumption: .rerun) { ctx in
                try await verify(ctx)
            },
        ]
    }

    // MARK: the job's own files

    func jobDir(_ ctx: StepContext) -> URL { JobLog.directory(workspace, ctx.job) }

    func note(_ ctx: StepContext, _ name: String) throws -> String? {
        let url = jobDir(ctx).appendingPathComponent(name)
        guard FS.exists(url) else { return nil }
        return String(decoding: try FS.read(url, display: url.path, limit: 1 << 20), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func writeNote(_ ctx: StepContext, _ name: String, _ text: String) throws {
        try FS.writeAtomically(Data((text + "\n").utf8), to: jobDir(ctx).appendingPathComponent(name))
    }

    /// The build this job installs: the one its first step pinned (a resumed job never switches to a newer build).
    func installable(_ ctx: StepContext) throws -> InstallableRecord {
        guard let job = try note(ctx, "installable-job") else {
            guard let r = setup.installable else { throw KAError.refusal("host \(target)", "has no open [ka:installable]") }
            return r
        }
        guard let r = try state.installable(job: job) else { throw KAError.failure("job \(ctx.job)", "its build \(job) has no installable record") }
        return r
    }

    func packages(_ ctx: StepContext) throws -> [InstallPackage] {
        let r = try installable(ctx)
        return try InstallPackage.parse(r.packages, from: "the installable record of \(r.job)")
    }

    func stageDir(_ ctx: StepContext) -> String { "\(install.cacheDir)/\(ctx.job)" }

    func privileged(_ argv: [RemoteArgument]) -> [RemoteArgument] { setup.privilege.map { RemoteArgument($0) } + argv }

    func record(_ ctx: StepContext) throws -> InstallRecord {
        guard let r = try state.installs.install(job: ctx.job.value) else { throw KAError.failure("job \(ctx.job)", "has no install record; its first step did not finish") }
        return r
    }

    func update(_ ctx: StepContext, _ change: (inout InstallRecord) -> Void) throws {
        var r = try record(ctx)
        change(&r)
        r.updatedAt = now()
        try state.installs.record(r)
    }

    func runChecked(_ ctx: StepContext, _ argv: [RemoteArgument], on host: HostName, timeout: Int = 300, what: String) async throws -> CommandResult {
        let r = try await ctx.run(RemoteCommand(argv, timeout: .seconds(timeout)), on: host)
        guard r.succeeded else {
            let last = r.stderrText.split(separator: "\n").last.map(String.init) ?? ""
            throw KAError.failure("\(what) on \(host)", "exit \(r.status)\(last.isEmpty ? "" : ": \(last.prefix(300))")")
        }
        return r
    }

    // MARK: 1. pre-check

    func preCheck(_ ctx: StepContext) async throws -> String {
        let r = try installable(ctx)
        try writeNote(ctx, "installable-job", r.job)
        let lock = try LockFile.load(JobLog.directory(workspace, try JobID(r.job)).appendingPathComponent("manifest.lock"),
                                     shown: "the lock of build \(r.job)")
        try FS.writeAtomically(lock.bytes, to: jobDir(ctx).appendingPathComponent("manifest.lock"))
        if try state.installs.install(job: ctx.job.value) == nil {
            try state.installs.record(InstallRecord(job: ctx.job.value, host: target.value, buildJob: r.job, version: r.version, lockB2sum: lock.b2sum,
                                                    patches: lock.patches.map { "\($0.path) b2:\($0.b2sum)" }.joined(separator: "\n"),
                                                    baselineRef: lock.baselineRef, state: .installing, startedAt: now()))
        }
        let release = try await runChecked(ctx, ["uname", "-r"], on: target, timeout: 60, what: "uname -r").stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        // Over the LAN from the signing host, through this agent, never over HTTPS (seed: slow wifi).
        let signer = try ctx.transports.transport(for: setup.signing.host)
        let targetT = try ctx.transports.transport(for: target)
        let local = jobDir(ctx).appendingPathComponent("packages")
        if FS.exists(local) { try FileManager.default.removeItem(at: local) }
        try FileManager.default.createDirectory(at: local, withIntermediateDirectories: true)
        let stage = stageDir(ctx)
        _ = try await runChecked(ctx, ["rm", "-rf", "--", RemoteArgument(stage)], on: target, timeout: 120, what: "clear \(stage)")
        _ = try await runChecked(ctx, ["mkdir", "-p", "--", RemoteArgument(stage)], on: target, timeout: 60, what: "make \(stage)")
        let pkgs = try packages(ctx)
        for p in pkgs {
            let file = local.appendingPathComponent(p.file)
            try await signer.copy(fromRemote: "\(setup.repoDir)/\(p.file)", to: file, timeout: .seconds(1800))
            let got = try PackageRenderer.b2sum(file)
            guard got == p.b2sum else {
                throw KAError.refusal("\(setup.signing.host):\(setup.repoDir)/\(p.file)", "has b2sum \(got.prefix(16))…, not the installable's \(p.b2sum.prefix(16))…",
                                      hint: "the published package changed after it was built; run ka build \(target) again")
            }
            try await targetT.copy(file, toRemote: "\(stage)/\(p.file)", timeout: .seconds(1800))
            if let sig = p.signature {
                let sigFile = local.appendingPathComponent(sig)
                try await signer.copy(fromRemote: "\(setup.repoDir)/\(sig)", to: sigFile, timeout: .seconds(300))
                try await targetT.copy(sigFile, toRemote: "\(stage)/\(sig)", timeout: .seconds(300))
                let v = try await ctx.run(RemoteCommand(privileged(["pacman-key", "--verify", RemoteArgument("\(stage)/\(sig)"), RemoteArgument("\(stage)/\(p.file)")]),
                                                        timeout: .seconds(120)), on: target)
                guard v.succeeded else {
                    throw KAError.refusal("\(p.file)", "its signature does not verify on \(target) against the repo key (pacman-key --verify exit \(v.status))",
                                          hint: "trust the signing key on \(target) (pacman-key --lsign-key), or rebuild; nothing was installed")
                }
            } else {
                throw KAError.refusal("\(p.file)", "has no signature in the installable record", hint: "rebuild with ka build \(target): it signs every package")
            }
        }
        return "\(target) runs \(release); \(pkgs.count) package(s) staged in \(stage), b2sums and signatures verified"
    }

    // MARK: 2. backup

    func backup(_ ctx: StepContext) async throws -> String {
        let release = try await runChecked(ctx, ["uname", "-r"], on: target, timeout: 60, what: "uname -r").stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !release.isEmpty, release.utf8.count <= 100, !release.contains("/"), release != ".", release != ".." else {
            throw KAError.failure("uname -r on \(target)", "'\(release.prefix(100))' cannot name a backup dir")
        }
        let q = try await runChecked(ctx, ["pacman", "-Q"], on: target, timeout: 60, what: "pacman -Q")
        let kernels = q.stdoutText.split(separator: "\n").filter { $0.hasPrefix("linux") }.joined(separator: "\n")
        // one file per install job: a second attempt from the same running kernel never overwrites the first's backup
        let name = "\(target)-boot-pre-install-\(ctx.job).tgz"
        let remoteTar = "\(stageDir(ctx))/\(name)"
        _ = try await runChecked(ctx, privileged(["tar", "-C", "/boot", "-czf", RemoteArgument(remoteTar), "."]), on: target, timeout: 900, what: "tar of /boot")
        let local = jobDir(ctx).appendingPathComponent(name)
        try await ctx.transports.transport(for: target).copy(fromRemote: remoteTar, to: local, timeout: .seconds(1800))
        let sum = try PackageRenderer.b2sum(local)
        let dir = "\(setup.signing.backupsDir)/\(target)/\(release)"
        let signer = setup.signing.host
        // Made lazily, on first use per host (seed: the backup dir did not exist the first time).
        _ = try await runChecked(ctx, ["install", "-d", "-m", "0750", "--", RemoteArgument(dir)], on: signer, timeout: 60, what: "install -d \(dir)")
        let transport = try ctx.transports.transport(for: signer)
        try await transport.copy(local, toRemote: "\(dir)/\(name)", timeout: .seconds(1800))
        let meta = jobDir(ctx).appendingPathComponent("backup-info.txt")
        let info = "host: \(target)\nrunning: \(release)\ntaken: \(now().formatted(.iso8601))\njob: \(ctx.job)\nb2sum: \(sum)  \(name)\n"
            + "installed kernel packages:\n\(kernels)\n"
        try FS.writeAtomically(Data(info.utf8), to: meta)
        try await transport.copy(meta, toRemote: "\(dir)/backup-info-\(ctx.job).txt", timeout: .seconds(60))
        let check = try await runChecked(ctx, ["b2sum", "--", RemoteArgument("\(dir)/\(name)")], on: signer, timeout: 300, what: "b2sum of the backup")
        guard check.stdoutText.split(separator: " ").first.map(String.init) == sum else {
            throw KAError.failure("backup \(signer):\(dir)/\(name)", "its b2sum on \(signer) is not the one taken on \(target); nothing was installed")
        }
        try FileManager.default.removeItem(at: local)
        try writeNote(ctx, "backup", "\(signer):\(dir)/\(name)")
        try update(ctx) { $0.backup = "\(signer):\(dir)/\(name)" }
        return "\(signer):\(dir)/\(name) (b2:\(sum.prefix(16))…, verified)"
    }

    // MARK: 3. install

    func installedAlready(_ ctx: StepContext) async throws -> Bool {
        let want = try packages(ctx).map { p in
            guard let nv = p.nameAndVersion else { throw KAError.failure(p.file, "is not a <name>-<version>-<rel>-<arch>.pkg.tar.* file name") }
            return nv
        }
        let q = try await ctx.run(RemoteCommand(["pacman", "-Q", "--"] + want.map { RemoteArgument($0.name) }, timeout: .seconds(60)), on: target)
        guard q.succeeded else { return false }
        let have = Set(q.stdoutText.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) })
        return want.allSatisfy { have.contains("\($0.name) \($0.version)") }
    }

    func installPackages(_ ctx: StepContext) async throws -> String {
        let pkgs = try packages(ctx)
        let argv = privileged(["pacman", "-U", "--noconfirm", "--"] + pkgs.map { RemoteArgument("\(stageDir(ctx))/\($0.file)") })
        _ = try await runChecked(ctx, argv, on: target, timeout: 1800, what: "pacman -U")
        guard try await installedAlready(ctx) else {
            throw KAError.failure("pacman -U on \(target)", "exited 0 but pacman -Q does not show \(pkgs.compactMap(\.nameAndVersion).map { "\($0.name) \($0.version)" }.joined(separator: ", "))")
        }
        let release = try await recordRelease(ctx)
        return pkgs.compactMap(\.nameAndVersion).map { "\($0.name) \($0.version)" }.joined(separator: ", ") + " installed (release \(release))"
    }

    /// The release the package installed (the modules dir whose pkgbase file names this package), into the record.
    func recordRelease(_ ctx: StepContext) async throws -> String {
        let find = try await runChecked(ctx, ["sh", "-c", "for d in /usr/lib/modules/*/; do [ \"$(cat \"$d/pkgbase\" 2>/dev/null)\" = \"$1\" ] && basename \"$d\"; done; exit 0",
                                              "ka-release", RemoteArgument(pkgbase)], on: target, timeout: 60, what: "find the installed release")
        let releases = find.stdoutText.split(separator: "\n").map(String.init)
        guard releases.count == 1, let release = releases.first, !release.contains("/"), release.utf8.count <= 100 else {
            throw KAError.failure("host \(target)", "expected one /usr/lib/modules/<release>/pkgbase naming \(pkgbase), found \(releases.count)")
        }
        try update(ctx) { $0.kernelRelease = release; if $0.state == .installing { $0.state = .installed } }
        return release
    }

    // MARK: 4. initramfs

    func initramfs(_ ctx: StepContext) async throws -> String {
        let image = "/boot/initramfs-\(suffix).img"
        if try await ctx.run(RemoteCommand(["test", "-s", RemoteArgument(image)], timeout: .seconds(30)), on: target).succeeded {
            return "\(image) exists (made by the package's hook)"
        }
        // The seed's bootstrap: mkinitcpio's own hook watches vmlinuz, not Image, so it may not have run.
        _ = try await runChecked(ctx, privileged(["mkinitcpio", "-p", RemoteArgument(pkgbase)]), on: target, timeout: 900, what: "mkinitcpio -p \(pkgbase)")
        guard try await ctx.run(RemoteCommand(["test", "-s", RemoteArgument(image)], timeout: .seconds(30)), on: target).succeeded else {
            throw KAError.failure("mkinitcpio -p \(pkgbase) on \(target)", "exited 0 but \(image) is still missing")
        }
        return "\(image) made by mkinitcpio -p \(pkgbase)"
    }

    // MARK: 5. boot entry

    func bootEntry(_ ctx: StepContext) async throws -> String {
        let conf = "/boot/extlinux/extlinux.conf"
        let transport = try ctx.transports.transport(for: target)
        let before = jobDir(ctx).appendingPathComponent("extlinux.conf.before")
        try await transport.copy(fromRemote: conf, to: before, timeout: .seconds(60))
        let old = try FS.read(before, display: "\(target):\(conf)", limit: 1 << 20)
        let stock = try Extlinux.defaultEntry(in: old, shown: "\(target):\(conf)")
        let block = ExtlinuxBlock(suffix: suffix, menuLabel: "\(pkgbase) \(try installable(ctx).version) (kernel-agent)",
                                  kernel: "/Image-\(suffix)", initrd: "/initramfs-\(suffix).img",
                                  fdt: stock.fdt.map { Extlinux.dtbsPath($0, suffix: suffix) }, fdtdir: stock.fdtdir.map { _ in "/dtbs-\(suffix)" },
                                  append: stock.append)
        let new: Data
        do { new = try block.apply(to: old) } catch let e as ExtlinuxBlock.EditError {
            throw KAError.failure("\(target):\(conf)", e.description, hint: "fix the managed markers by hand; nothing was written")
        }
        let boots = try Extlinux.defaultEntry(in: new, shown: "the new \(target):\(conf)")
        guard boots.label == block.label else {
            throw KAError.failure("\(target):\(conf)", "with the block, U-Boot would still boot '\(boots.label)' (a DEFAULT after the entries?)",
                                  hint: "move the file's DEFAULT line above its first LABEL; nothing was written")
        }
        if new == old { return "\(conf) already holds the block for \(pkgbase)" }
        let staged = jobDir(ctx).appendingPathComponent("extlinux.conf.new")
        try FS.writeAtomically(new, to: staged)
        let remoteNew = "\(stageDir(ctx))/extlinux.conf"
        try await transport.copy(staged, toRemote: remoteNew, timeout: .seconds(60))
        // A temp file beside the real one, then a rename: a crash leaves the old file or the new one, never half.
        let tmp = "\(conf).ka-new"
        _ = try await runChecked(ctx, privileged(["install", "-m", "0644", RemoteArgument(remoteNew), RemoteArgument(tmp)]), on: target, timeout: 60, what: "install \(tmp)")
        _ = try await runChecked(ctx, privileged(["mv", "-f", "-T", RemoteArgument(tmp), RemoteArgument(conf)]), on: target, timeout: 60, what: "mv \(tmp) \(conf)")
        let after = jobDir(ctx).appendingPathComponent("extlinux.conf.after")
        try await transport.copy(fromRemote: conf, to: after, timeout: .seconds(60))
        guard try FS.read(after, display: "\(target):\(conf)", limit: 1 << 20) == new else {
            throw KAError.failure("\(target):\(conf)", "does not hold what was written (changed by something else?)")
        }
        return "\(conf): block \(pkgbase) written; the stock entry \(stock.label) stays as the fallback"
    }

    // MARK: 6. reboot

    static let bootIDPath = "/proc/sys/kernel/random/boot_id"
    /// The notes' times, to the millisecond (the benchmark reads them).
    static let stamp = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    func bootID(_ ctx: StepContext, timeout: Int = 30) async throws -> String {
        let r = try await runChecked(ctx, ["cat", RemoteArgument(Self.bootIDPath)], on: target, timeout: timeout, what: "read the boot id")
        return r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func reboot(_ ctx: StepContext) async throws -> String {
        let before = try await bootID(ctx)
        try writeNote(ctx, "boot-before", before)
        let at = now()
        try writeNote(ctx, "reboot-requested", Self.stamp.format(at))
        try update(ctx) { $0.bootBefore = before; $0.rebootedAt = at }
        // The connection may drop under the command: that is the reboot, not a failure.
        let result: CommandResult?
        do { result = try await ctx.run(RemoteCommand(privileged(["reboot"]), timeout: .seconds(60)), on: target) } catch let e as KAError where !Task.isCancelled {
            try ctx.log.append("ka", "the reboot command's connection ended: \(e.description)")
            result = nil
        }
        if let r = result, !r.succeeded, r.status != 255 {
            throw KAError.failure("reboot on \(target)", "exit \(r.status): \(r.stderrText.suffix(300))", hint: "check the privilege command's rule for reboot on \(target)")
        }
        return "reboot requested at \(at.formatted(.iso8601)) (boot id was \(before.prefix(8))…)"
    }

    // MARK: 7. Bar 1

    func heartbeat(_ ctx: StepContext) async throws -> String {
        guard let before = try note(ctx, "boot-before"), let asked = try note(ctx, "reboot-requested") else {
            throw KAError.failure("job \(ctx.job)", "the reboot step left no boot-before/reboot-requested note")
        }
        let requested: Date
        do { requested = try Self.stamp.parse(asked) } catch {
            throw KAError.failure("job \(ctx.job)", "its reboot-requested note '\(asked.prefix(40))' is not an ISO 8601 time")
        }
        let deadline = requested.addingTimeInterval(TimeInterval(install.heartbeatTimeout))
        var tries = 0
        var stillOld = false   // the last try reached the host and it had the boot id from before: it is not rebooting
        while true {
            try Task.checkCancellation()
            tries += 1
            do {
                let id = try await bootID(ctx, timeout: max(5, min(30, install.heartbeatInterval * 3)))
                stillOld = id == before
                if !id.isEmpty && id != before {
                    let at = now()
                    try writeNote(ctx, "heartbeat", Self.stamp.format(at))
                    try update(ctx) { $0.bootAfter = id; $0.heartbeatAt = at; $0.bars = "bar1 pass heartbeat \(Int(at.timeIntervalSince(requested))) s after the reboot" }
                    return "\(target) answered \(String(format: "%.1f", at.timeIntervalSince(requested))) s after the reboot (new boot id \(id.prefix(8))…, try \(tries))"
                }
            } catch let e as KAError where !Task.isCancelled {
                stillOld = false
                if tries == 1 || tries % 10 == 0 { try ctx.log.append("ka", "no heartbeat yet: \(e.message)") }
            }
            if now() >= deadline, stillOld {
                // The kernel was never booted: not a regression of it (a reboot that was refused or never sent).
                throw KAError.failure("Bar 1", "\(target) did not reboot: it still answers with the boot id from before (\(before.prefix(8))…)",
                                      hint: "reboot \(target) by hand, then run ka verify \(target); nothing was filed")
            }
            if now() >= deadline {
                let text = "no SSH heartbeat from \(target) within \(BuildSteps.shown(install.heartbeatTimeout)) of the reboot (\(tries) tries)"
                try await Verification(steps: self).fail(ctx, bar: BarResult(bar: 1, name: "SSH heartbeat", code: .fail, required: true, detail: text))
                throw KAError.failure("Bar 1", text, hint: "see the [ka:regression] issue for \(target): it has the backup and the restore commands")
            }
            try await Task.sleep(for: .seconds(install.heartbeatInterval))
        }
    }

    // MARK: 8. Bars 2–5

    func verify(_ ctx: StepContext) async throws -> String {
        let v = Verification(steps: self)
        return try await v.run(ctx)
    }
}

/// What extlinux.conf says of its default entry (the stock one before an install).
enum Extlinux {
    struct Entry: Equatable { let label: String; let fdt: String?; let fdtdir: String?; let append: String? }

    /// The DEFAULT label's entry (the first LABEL when there is no DEFAULT), as U-Boot picks it.
    static func defaultEntry(in data: Data, shown: String) throws -> Entry {
        guard let text = String(data: data, encoding: .utf8) else { throw KAError.failure(shown, "is not UTF-8 text") }
        var def: String?, labels: [String] = []
        var fdt: [String: String] = [:], fdtdir: [String: String] = [:], append: [String: String] = [:]
        var current: String?
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let parts = line.trimmingCharacters(in: .whitespaces).split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
            guard let key = parts.first?.lowercased() else { continue }
            let value = parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespaces) : ""
            switch key {
            case "default": def = value
            case "label": current = value; labels.append(value)
            case "fdt", "devicetree": if let c = current { fdt[c] = value }
            case "fdtdir", "devicetreedir": if let c = current { fdtdir[c] = value }
            case "append": if let c = current { append[c] = value }
            default: break
            }
        }
        guard let label = def ?? labels.first, labels.contains(label) else {
            throw KAError.failure(shown, "has no default entry (DEFAULT \(def ?? "-") names no LABEL)", hint: "fix extlinux.conf by hand first")
        }
        return Entry(label: label, fdt: fdt[label], fdtdir: fdtdir[label], append: append[label])
    }

    /// `/dtbs/rockchip/x.dtb` → `/dtbs-<suffix>/rockchip/x.dtb` (the package's own dtbs dir).
    static func dtbsPath(_ stock: String, suffix: String) -> String {
        let parts = stock.split(separator: "/", omittingEmptySubsequences: true)
        guard parts.count >= 2 else { return "/dtbs-\(suffix)/\(parts.last ?? "")" }
        return "/dtbs-\(suffix)/" + parts.dropFirst().joined(separator: "/")
    }
}
