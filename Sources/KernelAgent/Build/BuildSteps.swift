import Foundation
import NIOConcurrencyHelpers

/// The steps of `ka build <host>`. They hand each other files in the job's own dir (`<state>/jobs/<id>/`):
/// `build-host` (the routed host), `package/` (the rendered PKGBUILD and sources), `pkgrel`, `packages/` and
/// `packages.b2sums` (what the build host reported), so a resumed job goes on from what its finished steps left.
struct BuildSteps: Sendable {
    let setup: BuildSetup
    let workspace: Workspace
    let registry: HostRegistry
    let state: StateStore
    let blocks: any BlockStore
    let records: (any RecordFiler)?
    let his: (any HisOps)?
    /// The job journal: the makepkg step compares its time with the last succeeded build of the target.
    let jobs: any JobStore

    static let root = HostChecks.workRoot

    init(setup: BuildSetup, ctx: VerbContext) throws {
        self.setup = setup
        workspace = ctx.workspace
        registry = try ctx.registry()
        state = ctx.state
        blocks = ctx.blocks
        records = ctx.records
        // The routing step, which the plan lists, may wake a host: leave for wake-host even if His marks it destructive.
        his = try ctx.his ?? ctx.settings().hisClient(allowDestructive: [.wakeHost])
        jobs = ctx.jobs
    }

    static func buildStepPrefix(_ flavour: PackageRenderer.Flavour) -> String { flavour == .arch ? "makepkg" : "build the .debs" }

    var target: HostName { setup.target }
    var build: PipelineConfig.Build { setup.pipeline.build }

    func steps() throws -> [JobStep] {
        let lane = JobStep.lane(target)
        let signer = setup.pipeline.signing.map { "\($0.host)" } ?? "the signing host"
        let repo = setup.pipeline.signing.map { s in setup.flavour == .arch ? s.repoDir : (s.debianRepo?.dir ?? "the apt repo") } ?? "the repo"
        return [
            // The pre-flight comes first (the seed's order); a stale lock was refused by the plan before any host was touched.
            JobStep("pre-flight: route to a build host (\(setup.candidates.map(\.value).joined(separator: " → "))), waking an on-demand one",
                    lanes: [lane], resumption: .rerun) { ctx in try await route(ctx) },
            JobStep("check manifest.lock against the manifest, the patches, the config and the baseline", lanes: [lane], resumption: .rerun) { ctx in
                try await checkLock(ctx)
            },
            JobStep(setup.recipe.map { "check the recipe \($0.shown) against the lock, stamp a copy (_srctag, pkgrel, _cumulative_b2sum)" }
                        ?? "render the package from packaging/\(setup.flavour.rawValue)", lanes: [lane], resumption: .rerun) { ctx in
                try await render(ctx)
            },
            JobStep("ship the sources to the build host's \(Self.root)/source/<job>/", lanes: [lane], resumption: .rerun) { ctx in
                try await ship(ctx)
            },
            JobStep("\(Self.buildStepPrefix(setup.flavour)) as the build user (cap \(Self.shown(build.wallClockCap)), stall warning \(Self.shown(build.stallWarn)), "
                    + "failure \(Self.shown(build.stallFail)))", lanes: [lane],
                    resumption: .check({ ctx in try await builtAlready(ctx) })) { ctx in try await makepkg(ctx) },
            JobStep(bar0Title, lanes: [lane], resumption: .rerun) { ctx in try await bar0(ctx) },
            JobStep("collect the packages from \(Self.root)/output/<job>/", lanes: [lane], resumption: .rerun) { ctx in
                try await collect(ctx)
            },
            JobStep("stage the packages on \(signer)", lanes: [lane], resumption: .rerun) { ctx in try await stage(ctx) },
            JobStep("sign and publish into \(signer):\(repo) (\(setup.pipeline.signing?.publishCommand.map { "\($0.joined(separator: " ")), then checked: signature and db" } ?? (setup.flavour == .arch ? "gpg, repo-add -s" : "apt-ftparchive, gpg InRelease")))", lanes: [lane],
                    resumption: .check({ ctx in try await publishedAlready(ctx) })) { ctx in try await signAndPublish(ctx) },
            JobStep("file [ka:installable] \(target)", lanes: [lane],
                    resumption: .check({ ctx in try state.installable(job: ctx.job.value) != nil })) { ctx in try await fileInstallable(ctx) },
        ]
    }

    static func shown(_ seconds: Int) -> String {
        seconds % 3600 == 0 ? "\(seconds / 3600)h" : seconds % 60 == 0 ? "\(seconds / 60)m" : "\(seconds)s"
    }

    // MARK: the job's own files

    func jobDir(_ ctx: StepContext) -> URL { JobLog.directory(workspace, ctx.job) }

    func readNote(_ ctx: StepContext, _ name: String) throws -> String {
        let url = jobDir(ctx).appendingPathComponent(name)
        guard FS.exists(url) else { throw KAError.failure("job \(ctx.job)", "\(name) is missing from the job dir; an earlier step did not finish") }
        return String(decoding: try FS.read(url, display: url.path, limit: 1 << 20), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func writeNote(_ ctx: StepContext, _ name: String, _ text: String) throws {
        try FS.writeAtomically(Data((text + "\n").utf8), to: jobDir(ctx).appendingPathComponent(name))
    }

    func buildHost(_ ctx: StepContext) throws -> HostName { try HostName(try readNote(ctx, "build-host")) }

    func sourceDir(_ ctx: StepContext) -> String { "\(Self.root)/source/\(ctx.job)" }
    func outputDir(_ ctx: StepContext) -> String { "\(Self.root)/output/\(ctx.job)" }
    func keepDir(_ ctx: StepContext) -> String { "\(Self.root)/keep/\(ctx.job)" }

    // MARK: 1. the lock

    /// The lock, checked against what it pins now; refuses a missing or stale one, naming the input that moved.
    static func checkedLock(_ s: BuildSetup, ctx: VerbContext) async throws -> LockFile {
        let ws = ctx.workspace
        guard FS.exists(s.lockURL) else {
            throw KAError.refusal(ws.display(s.lockURL), "no lock",
                                  hint: "run ka promote \(s.target) first" + (ws.legacyOutNote(s.target).map { "; \($0)" } ?? ""))
        }
        let lock = try LockFile.load(s.lockURL, shown: ws.display(s.lockURL))
        guard lock.host == s.target.value else {
            throw KAError.refusal(lock.file, "is the lock of '\(lock.host)', not \(s.target)", hint: "run ka promote \(s.target)")
        }
        let (series, sums) = try LockFile.currentSeries(s.manifest, resolver: Resolver(workspace: ws, policy: try ctx.policy(), openBlocks: try await ctx.openBlocks()))
        let inputs = try BuildInputs.resolve(s.manifest, ws: ws, pipeline: s.pipeline)
        if let why = lock.staleness(manifest: s.manifest, series: series, patchB2sums: sums, inputs: inputs) {
            throw KAError.refusal(lock.file, "is stale: \(why)", hint: "run ka promote \(s.target) to pin the inputs again, then ka build \(s.target)")
        }
        // a recipe of the user's carries its own config and fetches (and pins) its own sources
        guard lock.config != nil || s.recipe != nil else {
            throw KAError.refusal(s.manifest.file, "names no kernel config", hint: "add config: {file: fleet/config/\(s.target).config} and run ka promote \(s.target)")
        }
        guard lock.tarballB2sum != nil || s.recipe != nil else {
            throw KAError.refusal(lock.file, "the baseline tarball \(lock.tarballName) is unpinned (\(lock.unpinned ?? "no b2sum"))",
                                  hint: "set baseline: {mirror: <dir>} (or url + b2sum) in KA_CONFIG and run ka promote \(s.target)")
        }
        guard FS.exists(s.cumulativeURL), try PackageRenderer.b2sum(s.cumulativeURL) == lock.cumulativeB2sum else {
            throw KAError.refusal(ws.display(s.cumulativeURL), "is missing or differs from the lock's b2sum", hint: "run ka promote \(s.target)")
        }
        return lock
    }

    func checkLock(_ ctx: StepContext) async throws -> String {
        let vctx = VerbContext(workspace: workspace, state: state, blocks: blocks)
        let lock = try await Self.checkedLock(setup, ctx: vctx)
        // The job keeps its own copies of what the lock pins, so a rerun renders those, not what the tree holds then.
        let inputs = jobDir(ctx).appendingPathComponent("inputs")
        if FS.exists(inputs) { try FileManager.default.removeItem(at: inputs) }
        try FileManager.default.createDirectory(at: inputs, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: setup.cumulativeURL, to: inputs.appendingPathComponent("cumulative.patch"))
        if let c = lock.config { try FileManager.default.copyItem(at: workspace.root.appendingPathComponent(c.path), to: inputs.appendingPathComponent("config")) }
        guard try PackageRenderer.b2sum(inputs.appendingPathComponent("cumulative.patch")) == lock.cumulativeB2sum,
              try lock.config.map({ try PackageRenderer.b2sum(inputs.appendingPathComponent("config")) == $0.b2sum }) ?? true else {
            throw KAError.refusal(lock.file, "its inputs changed while they were copied", hint: "run ka promote \(target) again, then ka build \(target)")
        }
        try FS.writeAtomically(lock.bytes, to: jobDir(ctx).appendingPathComponent("manifest.lock"))
        return "lock b2:\(lock.b2sum.prefix(16))… holds (\(lock.patches.count) patch(es), config \(lock.config?.path ?? "-"), \(lock.tarballName))"
    }

    // MARK: 2. route

    func route(_ ctx: StepContext) async throws -> String {
        let routing = BuildRouting(registry: registry, blocks: blocks, his: his, sleep: SleepMemory(stateDir: workspace.stateDir),
                                   transports: ctx.transports, workspace: workspace)
        let (host, skipped) = try await routing.choose(setup.candidates, for: target, flavour: setup.flavour, job: ctx.job, needs: { candidate in
            HostChecks.BuildNeeds(crossPrefix: setup.crossPrefixes[candidate], targetArch: setup.entry.arch, bar0: setup.bar0.spec.boots)
        }, ctx: ctx)
        try writeNote(ctx, "build-host", host.value)
        let env = setup.buildEnvironment(on: host)
        try writeNote(ctx, "build-env", env)
        try holdHost(host, ctx, building: true)
        let cross = setup.crossPrefixes[host].map { ", cross-building for \(setup.entry.arch.rawValue) with \($0)gcc" } ?? ""
        return host.value + cross + (skipped.isEmpty ? "" : " (skipped \(skipped.joined(separator: "; ")))")
    }

    /// An on-demand build host is held while this job may still build on it (up to the wall-clock cap), and for its
    /// idle_release once the job is done with it (a stored timer, per job: another job's end never releases it).
    func holdHost(_ host: HostName, _ ctx: StepContext, building: Bool) throws {
        guard case let .onDemand(_, idle) = try registry.entry(host).wake else { return }
        try WakeLeases(stateDir: workspace.stateDir).hold(host, job: ctx.job, for: idle * 60 + (building ? build.wallClockCap : 0))
        if !building { try ctx.log.append("ka", "\(host) is on demand: this job releases it to His after \(idle) idle minutes") }
    }

    // MARK: 3. render

    func render(_ ctx: StepContext) async throws -> String {
        if let recipe = setup.recipe { return try await stampRecipe(recipe, ctx) }
        let lock = try LockFile.load(jobDir(ctx).appendingPathComponent("manifest.lock"), shown: "the job's manifest.lock")
        let inputs = try BuildInputs.resolve(setup.manifest, ws: workspace, pipeline: setup.pipeline)
        guard let config = lock.config else { throw KAError.failure("render", "the lock names no config") }
        guard inputs.tarball.b2sum == lock.tarballB2sum else {
            throw KAError.refusal("the baseline tarball \(inputs.tarball.name)", "changed since this job checked the lock", hint: "run ka promote \(target) again")
        }
        let pinned = jobDir(ctx).appendingPathComponent("inputs")
        let out = jobDir(ctx).appendingPathComponent("package")
        if FS.exists(out) { try FileManager.default.removeItem(at: out) }
        let pkgrel = try await pkgrel(ctx, pkgver: BaselineTarball.version(ofName: lock.tarballName) ?? "")
        let template = workspace.asset("packaging/\(setup.flavour.rawValue)")
        var input = PackageRenderer.Inputs(
            host: target, suffix: setup.manifest.kernelSuffix,
            tarballFile: inputs.tarball.file.map(URL.init(fileURLWithPath:)), tarballName: inputs.tarball.name, tarballURL: inputs.tarball.url,
            tarballB2sum: lock.tarballB2sum ?? "", patch: pinned.appendingPathComponent("cumulative.patch"), config: pinned.appendingPathComponent("config"),
            olddefconfig: config.olddefconfig, installMode: setup.manifest.installMode,
            replaces: setup.manifest.installMode == .replace ? try stockKernel() : nil)
        input.pkgrel = pkgrel
        input.srcname = setup.pipeline.baseline?.topDir
        let rendered = try PackageRenderer(template: template, shown: "packaging/\(setup.flavour.rawValue)").render(input, into: out)
        let runner = workspace.asset("packaging/remote/build-\(setup.flavour == .arch ? "arch" : "deb")")
        try FileManager.default.copyItem(at: runner, to: out.appendingPathComponent(".ka-build"))
        try addBar0Files(to: out)
        return "\(rendered.pkgbase) \(rendered.pkgver)-\(rendered.pkgrel): \(rendered.files.joined(separator: ", "))"
    }

    /// `package.template_at`: the recipe checked against the lock and the plan's pins, then a stamped copy.
    func stampRecipe(_ planned: RecipeTemplate, _ ctx: StepContext) async throws -> String {
        let lock = try LockFile.load(jobDir(ctx).appendingPathComponent("manifest.lock"), shown: "the job's manifest.lock")
        guard let now = try RecipeTemplate.locate(setup.manifest, pipeline: setup.pipeline, stateRoot: workspace.root), now.files == planned.files else {
            throw KAError.refusal(planned.shown, "changed since the plan", hint: "ka build \(target) again to plan with the recipe as it is now")
        }
        let name = Promotion.cumulativeName(target)
        let notes = try now.verify(against: lock, cumulativeName: name)
        for n in notes { try ctx.log.append("recipe", n) }
        let out = jobDir(ctx).appendingPathComponent("package")
        if FS.exists(out) { try FileManager.default.removeItem(at: out) }
        let pkgrel = try await pkgrel(ctx, pkgver: BaselineTarball.version(ofName: lock.tarballName) ?? "")
        try now.stamp(into: out, cumulative: jobDir(ctx).appendingPathComponent("inputs/cumulative.patch"), cumulativeName: name,
                      cumulativeB2sum: lock.cumulativeB2sum, srctag: lock.baselineRef, pkgrel: pkgrel)
        // a pinned local baseline goes with it, for a recipe whose source array names the tarball
        let inputs = try BuildInputs.resolve(setup.manifest, ws: workspace, pipeline: setup.pipeline)
        if let file = inputs.tarball.file, inputs.tarball.b2sum == lock.tarballB2sum, !FS.exists(out.appendingPathComponent(inputs.tarball.name)) {
            try FileManager.default.copyItem(at: URL(fileURLWithPath: file), to: out.appendingPathComponent(inputs.tarball.name))
        }
        try FileManager.default.copyItem(at: workspace.asset("packaging/remote/build-arch"), to: out.appendingPathComponent(".ka-build"))
        try addBar0Files(to: out)
        return "\(now.shown): \(notes.count) recipe-side patch(es) match the lock; stamped _srctag=\(lock.baselineRef) pkgrel=\(pkgrel) _cumulative_b2sum=\(lock.cumulativeB2sum.prefix(16))…"
    }

    func stockKernel() throws -> String? {
        setup.stockKernel ?? setup.manifest.installAlongside
    }

    /// One more than the newest release of this package at the same version, in the published repo (the signing
    /// host's listing) or this agent's installables: a published package file is never replaced.
    func pkgrel(_ ctx: StepContext, pkgver: String) async throws -> String {
        if FS.exists(jobDir(ctx).appendingPathComponent("pkgrel")) { return try readNote(ctx, "pkgrel") }   // a rerun keeps its release
        var newest = 0
        if let last = try state.installables([target.value])[target.value], last.version.hasPrefix(pkgver + "-"),
           let n = Int(last.version.dropFirst(pkgver.count + 1).split(separator: ".").first ?? "") {
            newest = n
        }
        if let s = setup.pipeline.signing, let dir = publishedDir(s) {
            let r = try await ctx.run(RemoteCommand(["sh", "-c", "[ ! -d \"$1\" ] || ls -1 -- \"$1\"", "ka-releases", RemoteArgument(dir)],
                                                    timeout: .seconds(60)), on: s.host)
            guard r.succeeded else { throw KAError.failure("host \(s.host)", "cannot list \(dir): \(r.stderrText.suffix(200))") }
            newest = max(newest, setup.flavour == .arch
                ? Self.newestRelease(in: r.stdoutText, pkgbase: "linux-\(setup.manifest.kernelSuffix)", pkgver: pkgver)
                : Self.newestDebianRelease(in: r.stdoutText, package: "linux-image-\(setup.manifest.kernelSuffix)", pkgver: pkgver))
        }
        let rel = String(newest + 1)
        try writeNote(ctx, "pkgrel", rel)
        return rel
    }

    /// Where the published packages of this flavour are listed: the pacman repo dir, or the apt repo's pool.
    func publishedDir(_ s: PipelineConfig.Signing) -> String? {
        setup.flavour == .arch ? s.repoDir : s.debianRepo.map { "\($0.dir)/pool/main" }
    }

    /// The highest `<rel>` of `<package>_<pkgver>-<rel>_<arch>.deb` in a listing (0: none).
    static func newestDebianRelease(in listing: String, package: String, pkgver: String) -> Int {
        let prefix = "\(package)_\(pkgver)-"
        return listing.split(separator: "\n").compactMap { line -> Int? in
            guard line.hasPrefix(prefix), line.hasSuffix(".deb") else { return nil }
            return Int(line.dropFirst(prefix.count).split(separator: "_").first?.split(separator: ".").first ?? "")
        }.max() ?? 0
    }

    /// The highest `<rel>` of `<pkgbase>-<pkgver>-<rel>-<arch>.pkg.tar.*` in a listing (0: none).
    static func newestRelease(in listing: String, pkgbase: String, pkgver: String) -> Int {
        let prefix = "\(pkgbase)-\(pkgver)-"
        return listing.split(separator: "\n").compactMap { line -> Int? in
            guard line.hasPrefix(prefix), line.contains(".pkg.tar."), !line.hasSuffix(".sig") else { return nil }
            let rest = line.dropFirst(prefix.count).split(separator: "-")
            guard rest.count == 2 else { return nil }   // the headers package has one more '-' before pkgver: not ours here
            return Int(rest[0].split(separator: ".").first ?? "")
        }.max() ?? 0
    }

    // MARK: 4. ship

    /// `dir` on `host`, empty (what a rerun of the step left there is gone). Two plain argvs, no shell.
    func freshDir(_ dir: String, on host: HostName, _ ctx: StepContext) async throws {
        let rm = try await ctx.run(RemoteCommand(["rm", "-rf", "--", RemoteArgument(dir)], timeout: .seconds(120)), on: host)
        let mk = rm.succeeded ? try await ctx.run(RemoteCommand(["mkdir", "-p", "--", RemoteArgument(dir)], timeout: .seconds(60)), on: host) : rm
        guard mk.succeeded else { throw KAError.failure("host \(host)", "cannot make an empty \(dir): exit \(mk.status) \(mk.stderrText.suffix(200))") }
    }

    func ship(_ ctx: StepContext) async throws -> String {
        let host = try buildHost(ctx)
        let transport = try ctx.transports.transport(for: host)
        let dir = sourceDir(ctx)
        try await freshDir(dir, on: host, ctx)
        let package = jobDir(ctx).appendingPathComponent("package")
        // a job routed before build-env existed has none: it builds natively, as it was planned
        let buildEnv = FS.exists(jobDir(ctx).appendingPathComponent("build-env")) ? try readNote(ctx, "build-env") : ""
        let env = "KA_JOB=\(ctx.job)\nKA_TARGET=\(target)\nCCACHE_DIR=\(Self.root)/ccache\nCCACHE_BASEDIR=\(Self.root)/source\n"
            + (buildEnv.isEmpty ? "" : buildEnv + "\n")
        try FS.writeAtomically(Data(env.utf8), to: package.appendingPathComponent(".ka-env"))
        var bytes = 0
        let files = try FileManager.default.contentsOfDirectory(atPath: package.path).sorted()
        for name in files {
            let url = package.appendingPathComponent(name)
            bytes += (try FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int) ?? 0
            try await transport.copy(url, toRemote: "\(dir)/\(name)", timeout: .seconds(1800))
        }
        return "\(files.count) files, \(bytes / 1024) KiB to \(host):\(dir)"
    }

    // MARK: 5. makepkg

    /// Done when the output dir carries the mark the runner writes after a successful makepkg.
    func builtAlready(_ ctx: StepContext) async throws -> Bool {
        let host = try buildHost(ctx)
        let r = try await ctx.run(RemoteCommand(["test", "-e", RemoteArgument("\(outputDir(ctx))/.ka-built")], timeout: .seconds(30)), on: host)
        return r.succeeded
    }

    func makepkg(_ ctx: StepContext) async throws -> String {
        let host = try buildHost(ctx)
        let activity = LastActivity()
        // read when the build runs, not when its steps are listed (every plan and resume lists them)
        let previous = BuildProgress.previous(of: target, in: jobs, stepPrefix: Self.buildStepPrefix(setup.flavour))
        let progress = BuildProgress(target: target.value, previous: previous)
        let started = ContinuousClock.now
        let elapsed: @Sendable () -> Double = { (ContinuousClock.now - started).secondsValue }
        let log = ctx.log, report = ctx.progress
        let observe: @Sendable (OutputLine) -> Void = { line in
            activity.touch()
            guard line.stream == .stdout, let text = progress.take(line.text, elapsed: elapsed()) else { return }
            do { try log.append("ka", "progress: \(text)") } catch {}   // the line itself is in the log; only the summary is lost
            report?(text)
        }
        let cap = build.wallClockCap, warn = build.stallWarn, fail = build.stallFail
        let command = RemoteCommand(["bash", RemoteArgument("\(sourceDir(ctx))/.ka-build"), RemoteArgument(sourceDir(ctx)), RemoteArgument(outputDir(ctx))],
                                    timeout: .seconds(cap))
        let outcome: Result<CommandResult, Error> = await withTaskGroup(of: Result<CommandResult, Error>?.self) { group in
            group.addTask {
                do { return .success(try await ctx.run(command, on: host, observe: observe)) } catch { return .failure(error) }
            }
            group.addTask {
                // A stall is output that does not come, so no event marks it: a timer looks at the last line's time.
                var warned = false
                while !Task.isCancelled {
                    do { try await Task.sleep(for: .milliseconds(min(1000, max(100, warn * 100)))) } catch { return nil }
                    let idle = activity.idleSeconds
                    if idle >= Double(fail) {
                        return .failure(Stalled(text: "stalled: no build output for \(Self.shown(fail)); killed"))
                    }
                    if idle >= Double(warn), !warned {
                        warned = true
                        let text = "no build output from \(host) for \(Self.shown(warn)) (the build fails after \(Self.shown(fail)) without output)"
                        do { try ctx.log.append("ka", "warning: \(text)") } catch { return .failure(error) }
                        ctx.warn?(text)
                    }
                }
                return nil
            }
            var first: Result<CommandResult, Error> = .failure(CancellationError())
            for await r in group {
                guard let r else { continue }
                first = r
                group.cancelAll()   // a stall ends the build: the transport kills the remote process group
                break
            }
            return first
        }
        let why: String
        switch outcome {
        case let .success(r) where r.succeeded:
            return "built on \(host) in \(outputDir(ctx)) (\(progress.summary(elapsed: elapsed())))"
        case let .success(r):
            if Task.isCancelled { throw CancellationError() }   // a cancel that ended the build is no build failure
            why = "\(setup.flavour == .arch ? "makepkg" : "the .deb build") exited \(r.status)"
        case let .failure(e as Stalled):
            why = e.text
        case let .failure(e as KAError) where TransportError.isTimeout(e):
            why = "killed after the wall-clock cap of \(Self.shown(cap)) (the remote build was stopped)"
        case let .failure(e):
            if e is CancellationError || Task.isCancelled { throw e }
            why = JobRunner.text(e)
        }
        try await keepFailedTree(ctx, host: host, why: why)
        throw KAError.failure("makepkg on \(host)", why, hint: "the tree is in \(host):\(keepDir(ctx)); `ka debug \(ctx.job)` opens a shell there")
    }

    /// Moves the failed tree to keep/ and files [ka:build-fail] for the build host with the log's tail (or, with
    /// `details`, those lines: Bar 0's console).
    func keepFailedTree(_ ctx: StepContext, host: HostName, why: String, failedAt: String? = nil,
                        details: (title: String, lines: [String])? = nil) async throws {
        let moved = try await ctx.run(RemoteCommand(["sh", "-c", "mkdir -p -- \"$(dirname -- \"$2\")\" && rm -rf -- \"$2\" && mv -T -- \"$1\" \"$2\"",
                                                     "ka-keep", RemoteArgument(sourceDir(ctx)), RemoteArgument(keepDir(ctx))], timeout: .seconds(120)), on: host)
        let kept = moved.succeeded ? keepDir(ctx) : sourceDir(ctx)
        if !moved.succeeded {
            try ctx.log.append("ka", "the tree stays in \(sourceDir(ctx)): moving it to keep/ failed (exit \(moved.status)): \(moved.stderrText.suffix(300))")
        }
        try writeNote(ctx, "tree", "\(host):\(kept)")
        let quoted = details ?? ("Log tail", ctx.log.recentLines(30))
        try await blocks.file(
            kind: .buildFail, scope: .buildHost(host.value), title: "\(host): ka build \(target) failed\(failedAt.map { " at \($0)" } ?? "") (job \(ctx.job))",
            body: "`ka build \(target)` failed on build host \(host): \(why).\n\n- job: \(ctx.job)\n- tree: \(host):\(kept)\n"
                + "- debug: `ka debug \(ctx.job)`\n\n\(quoted.title):\n\n\(MarkdownText.block(quoted.lines.joined(separator: "\n")))\n\n"
                + "Builds skip \(host) while this issue is open; close it once the cause is fixed.")
    }

    // MARK: 6. Bar 0

    var bar0Title: String {
        switch setup.bar0.spec {
        case let .skip(reason): return "Bar 0: skipped (\(reason); \(setup.bar0.origin))"
        case let .run(timeout, modules):
            return "Bar 0: boot the built kernel in qemu-system-aarch64 -M virt (TCG) to userspace within \(timeout) s, "
                + (modules.isEmpty ? "loading the first module it built" : "loading \(modules.joined(separator: ", "))")
        }
    }

    /// The scripts the build host runs for Bar 0, shipped with the sources.
    func addBar0Files(to out: URL) throws {
        try FileManager.default.copyItem(at: workspace.asset("packaging/remote/bar0"), to: out.appendingPathComponent(".ka-bar0"))
        try FileManager.default.copyItem(at: workspace.asset("packaging/remote/bar0-init.c"), to: out.appendingPathComponent(".ka-bar0-init.c"))
    }

    /// Boots what makepkg built, on the build host; a kernel that does not reach userspace with its release and
    /// modules fails the build here, before anything is signed, with the console's last lines in [ka:build-fail].
    func bar0(_ ctx: StepContext) async throws -> String {
        guard case let .run(timeout, modules) = setup.bar0.spec else { return "skipped" }
        let host = try buildHost(ctx)
        let command = RemoteCommand(["bash", RemoteArgument("\(sourceDir(ctx))/.ka-bar0"), RemoteArgument(sourceDir(ctx)), RemoteArgument(outputDir(ctx)),
                                     RemoteArgument("\(timeout)")] + modules.map { RemoteArgument($0) },
                                    timeout: .seconds(timeout + 300))   // the init's compile and the headers besides the boot
        let r = try await ctx.run(command, on: host)
        let verdict = Bar0Verdict.judge(r.stdoutText, modules: modules)
        let why: String
        switch (r.succeeded, verdict.outcome) {
        case (true, .passed):
            let loaded = verdict.loaded.isEmpty ? "" : ", loaded \(verdict.loaded.joined(separator: ", "))"
            return "\(verdict.release ?? "?") reached userspace in qemu on \(host)\(loaded)"
        case let (true, .failed(text)): why = text
        case (false, _): why = "the bar0 script exited \(r.status): \(r.stderrText.suffix(300))"
        }
        try await keepFailedTree(ctx, host: host, why: "Bar 0: \(why) (release \(verdict.release ?? "unknown"))", failedAt: "Bar 0",
                                 details: ("The guest's console, last \(Bar0Verdict.quotedLines) lines", verdict.tail))
        throw KAError.failure("Bar 0 on \(host)", why, hint: "nothing was signed or published; the console is in the job's log (`ka jobs show \(ctx.job)`)")
    }

    // MARK: 7. collect

    func collect(_ ctx: StepContext) async throws -> String {
        let host = try buildHost(ctx)
        let transport = try ctx.transports.transport(for: host)
        let r = try await ctx.run(RemoteCommand(["cat", "--", RemoteArgument("\(outputDir(ctx))/.b2sums")], timeout: .seconds(30)), on: host)
        guard r.succeeded else { throw KAError.failure("host \(host)", "no \(outputDir(ctx))/.b2sums: \(r.stderrText.suffix(200))") }
        let reported = try Self.parseB2sums(r.stdoutText, from: "\(host):\(outputDir(ctx))/.b2sums")
        let local = jobDir(ctx).appendingPathComponent("packages")
        if FS.exists(local) { try FileManager.default.removeItem(at: local) }
        try FileManager.default.createDirectory(at: local, withIntermediateDirectories: true)
        for (name, sum) in reported {
            let dest = local.appendingPathComponent(name)
            try await transport.copy(fromRemote: "\(outputDir(ctx))/\(name)", to: dest, timeout: .seconds(1800))
            let got = try PackageRenderer.b2sum(dest)
            guard got == sum else { throw KAError.failure("copy of \(host):\(outputDir(ctx))/\(name)", "b2sum \(got.prefix(16))… is not the reported \(sum.prefix(16))…") }
        }
        try writeNote(ctx, "packages.b2sums", reported.map { "\($0.b2sum)  \($0.name)" }.joined(separator: "\n"))
        try holdHost(host, ctx, building: false)   // the last use of the build host: the idle time starts now
        return reported.map(\.name).joined(separator: ", ")
    }

    /// `b2sum` output: `<128 hex>  <file>` per line; names are plain package file names.
    static func parseB2sums(_ text: String, from shown: String) throws -> [(name: String, b2sum: String)] {
        var out: [(String, String)] = []
        for line in text.split(separator: "\n") where !line.isEmpty {
            let parts = line.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
            guard parts.count == 2 else { throw KAError.failure(shown, "cannot read the line '\(line.prefix(200))'") }
            let sum = String(parts[0]), name = parts[1].trimmingCharacters(in: .whitespaces)
            guard Hex.isLowerHex(sum, count: 128), PackageRenderer.isPackageName(name.lowercased().replacingOccurrences(of: "_", with: "-")),
                  !name.contains("/"), name.contains(".pkg.tar.") || name.hasSuffix(".deb") else {
                throw KAError.failure(shown, "not a package b2sum line: '\(line.prefix(200))'")
            }
            out.append((name, sum))
        }
        guard !out.isEmpty else { throw KAError.failure(shown, "lists no package") }
        return out
    }

    func packages(_ ctx: StepContext) throws -> [(name: String, b2sum: String)] {
        try Self.parseB2sums(try readNote(ctx, "packages.b2sums"), from: "the job's packages.b2sums")
    }

    // MARK: 7–8. stage, sign, publish

    /// The signing settings, or a signing failure (with its global block) when they cannot sign.
    func signing(_ ctx: StepContext) async throws -> PipelineConfig.Signing {
        guard let s = setup.pipeline.signing else {
            throw try await signingFailed(ctx, "KA_CONFIG has no signing section (host, key, repo)")
        }
        guard let key = s.key, Hex.isLowerHex(key.lowercased(), count: 40) else {
            throw try await signingFailed(ctx, "the signing key \(s.key.map { "'\($0)'" } ?? "(none)") in \(s.origin) is not a 40-hex-digit fingerprint")
        }
        if setup.flavour == .debian, s.debianRepo == nil {
            throw try await signingFailed(ctx, "\(target) is a Debian target and \(s.origin) has no signing.debian_repo {dir, codename}")
        }
        if let open = try await blocks.openBlocks().first(where: { $0.kind == .signingFail }) {
            throw KAError.refusal("signing", "halted by the open \(open.kind.titlePrefix) \(open.id)", hint: "fix signing on \(s.host) and close \(open.id); then ka build \(target) again")
        }
        return s
    }

    func signingFailed(_ ctx: StepContext, _ why: String) async throws -> KAError {
        let block = try await blocks.file(kind: .signingFail, scope: .global, title: "signing failed (job \(ctx.job))",
                                          body: "`ka build \(target)` (job \(ctx.job)) could not sign or publish: \(why).\n\nNothing was published. "
                                              + "Every build stops at signing while this issue is open; close it once signing works again.")
        return KAError.failure("signing", why, "filed \(block.kind.titlePrefix) \(block.id); nothing was published")
    }

    func stage(_ ctx: StepContext) async throws -> String {
        let s = try await signing(ctx)
        let transport = try ctx.transports.transport(for: s.host)
        let dir = "\(s.stagingDir)/\(ctx.job)"
        do { try await freshDir(dir, on: s.host, ctx) } catch let e as KAError where !Task.isCancelled {
            throw try await signingFailed(ctx, e.description)
        }
        let local = jobDir(ctx).appendingPathComponent("packages")
        let pkgs = try packages(ctx)
        for p in pkgs { try await transport.copy(local.appendingPathComponent(p.name), toRemote: "\(dir)/\(p.name)", timeout: .seconds(1800)) }
        try await transport.copy(workspace.asset("packaging/remote/publish-\(setup.flavour == .arch ? "arch" : "deb")"),
                                 toRemote: "\(dir)/.ka-publish", timeout: .seconds(60))
        return "\(pkgs.count) package(s) in \(s.host):\(dir)"
    }

    /// Done when the repo's db lists every package of the job and the files are there with the reported b2sums.
    func publishedAlready(_ ctx: StepContext) async throws -> Bool {
        guard let s = setup.pipeline.signing else { return false }
        let pkgs = try packages(ctx)
        var argv: [RemoteArgument]
        if setup.flavour == .arch {
            let script = "cd \"$1\" && shift && db=\"$1\" && shift && list=$(bsdtar -tf \"$db\") || exit 1; "
                + "while [ $# -gt 0 ]; do [ -f \"$1.sig\" ] && [ \"$(b2sum -- \"$1\" | cut -d' ' -f1)\" = \"$2\" ] "
                + "&& printf '%s\\n' \"$list\" | grep -qx -- \"$3/desc\" || exit 1; shift 3; done"
            argv = ["sh", "-c", RemoteArgument(script), "ka-published", RemoteArgument(s.repoDir), RemoteArgument("\(s.repoName).db.tar.zst")]
            for p in pkgs { argv += [RemoteArgument(p.name), RemoteArgument(p.b2sum), RemoteArgument(Self.dbEntry(p.name))] }
        } else {
            guard let d = s.debianRepo else { return false }
            let script = "cd \"$1\" && shift && index=\"$1\" && shift && [ -f \"$index\" ] || exit 1; "
                + "while [ $# -gt 0 ]; do [ \"$(b2sum -- \"pool/main/$1\" | cut -d' ' -f1)\" = \"$2\" ] "
                + "&& grep -qx -- \"Filename: pool/main/$1\" \"$index\" || exit 1; shift 2; done"
            argv = ["sh", "-c", RemoteArgument(script), "ka-published", RemoteArgument(d.dir), RemoteArgument("dists/\(d.codename)/main/binary-arm64/Packages")]
            for p in pkgs { argv += [RemoteArgument(p.name), RemoteArgument(p.b2sum)] }
        }
        return try await ctx.run(RemoteCommand(argv, timeout: .seconds(60)), on: s.host).succeeded
    }

    /// `linux-x-7.0-1-aarch64.pkg.tar.zst` → `linux-x-7.0-1` (the db's entry dir).
    static func dbEntry(_ file: String) -> String {
        let base = file.components(separatedBy: ".pkg.tar.").first ?? file
        guard let dash = base.lastIndex(of: "-") else { return base }
        return String(base[..<dash])
    }

    func signAndPublish(_ ctx: StepContext) async throws -> String {
        let s = try await signing(ctx)
        if let command = s.publishCommand { return try await publishWithTheirCommand(command, s, ctx) }
        let dir = "\(s.stagingDir)/\(ctx.job)"
        let (repoDir, repoName) = setup.flavour == .arch ? (s.repoDir, s.repoName) : (s.debianRepo?.dir ?? "", s.debianRepo?.codename ?? "")
        var argv: [RemoteArgument] = ["bash", RemoteArgument("\(dir)/.ka-publish"), RemoteArgument(s.gnupgHome), RemoteArgument(s.key ?? ""),
                                      RemoteArgument(repoDir), RemoteArgument(repoName), RemoteArgument(dir)]
        for p in try packages(ctx) { argv += [RemoteArgument(p.name), RemoteArgument(p.b2sum)] }
        let r: CommandResult
        do { r = try await ctx.run(RemoteCommand(argv, timeout: .seconds(900)), on: s.host) } catch let e as KAError where !Task.isCancelled {
            throw try await signingFailed(ctx, "publish on \(s.host) did not finish: \(e.description)")
        }
        guard r.succeeded else {
            let last = r.stderrText.split(separator: "\n").last.map(String.init) ?? "exit \(r.status)"
            throw try await signingFailed(ctx, "publish on \(s.host) exited \(r.status): \(last)")
        }
        return "signed with \(s.key ?? "?") and published into \(s.host):\(repoDir)"
    }

    /// `signing.publish_command`: the user's publish (marfrit-publish-arch: sign, repo-add, sync), given the staged
    /// packages. ka does not trust its exit alone: each package must then be in the repo with a signature that is good
    /// under the configured fingerprint, and the db must list it.
    func publishWithTheirCommand(_ command: [String], _ s: PipelineConfig.Signing, _ ctx: StepContext) async throws -> String {
        guard setup.flavour == .arch else {
            throw try await signingFailed(ctx, "signing.publish_command publishes pacman packages; \(target) is a Debian target")
        }
        let dir = "\(s.stagingDir)/\(ctx.job)"
        let pkgs = try packages(ctx)
        let argv = command.map { RemoteArgument($0) } + pkgs.map { RemoteArgument("\(dir)/\($0.name)") }
        let r: CommandResult
        do { r = try await ctx.run(RemoteCommand(argv, timeout: .seconds(900)), on: s.host) } catch let e as KAError where !Task.isCancelled {
            throw try await signingFailed(ctx, "\(command.joined(separator: " ")) on \(s.host) did not finish: \(e.description)")
        }
        guard r.succeeded else {
            let last = r.stderrText.split(separator: "\n").last.map(String.init) ?? "exit \(r.status)"
            throw try await signingFailed(ctx, "\(command.joined(separator: " ")) on \(s.host) exited \(r.status): \(last)")
        }
        // the signature must be good under the configured key, and the db must list the package
        let key = (s.key ?? "").uppercased()
        let script = "export GNUPGHOME=\"$1\"; cd \"$2\" && db=\"$3\" && fpr=\"$4\" && shift 4 && list=$(bsdtar -tf \"$db\") || exit 1; "
            + "while [ $# -gt 0 ]; do "
            + "[ \"$(b2sum -- \"$1\" | cut -d' ' -f1)\" = \"$2\" ] || { echo \"$1: not in the repo with the built b2sum\" >&2; exit 1; }; "
            + "gpg --batch --status-fd 1 --verify -- \"$1.sig\" \"$1\" 2>/dev/null | grep -q \"^\\[GNUPG:\\] VALIDSIG $fpr \" "
            + "|| { echo \"$1: no good signature by $fpr\" >&2; exit 1; }; "
            + "printf '%s\\n' \"$list\" | grep -qx -- \"$3/desc\" || { echo \"$1: the db does not list $3\" >&2; exit 1; }; shift 3; done"
        var check: [RemoteArgument] = ["sh", "-c", RemoteArgument(script), "ka-verify-publish", RemoteArgument(s.gnupgHome), RemoteArgument(s.repoDir),
                                       RemoteArgument("\(s.repoName).db.tar.zst"), RemoteArgument(key)]
        for p in pkgs { check += [RemoteArgument(p.name), RemoteArgument(p.b2sum), RemoteArgument(Self.dbEntry(p.name))] }
        let v = try await ctx.run(RemoteCommand(check, timeout: .seconds(120)), on: s.host)
        guard v.succeeded else {
            let last = v.stderrText.split(separator: "\n").last.map(String.init) ?? "exit \(v.status)"
            throw try await signingFailed(ctx, "\(command.joined(separator: " ")) exited 0, but \(s.host):\(s.repoDir) does not hold what it should: \(last)")
        }
        return "published by \(command.joined(separator: " ")) on \(s.host); verified: signed by \(key), listed in \(s.repoName).db"
    }

    // MARK: 9. installable

    func fileInstallable(_ ctx: StepContext) async throws -> String {
        let s = setup.pipeline.signing
        let pkgs = try packages(ctx)
        let lock = try LockFile.load(jobDir(ctx).appendingPathComponent("manifest.lock"), shown: "the job's manifest.lock")
        guard let pkgver = BaselineTarball.version(ofName: lock.tarballName) else {
            throw KAError.failure("the job's manifest.lock", "cannot tell the version from the tarball name \(lock.tarballName)")
        }
        let version = "\(pkgver)-\(try readNote(ctx, "pkgrel"))"
        let lines = pkgs.map { "\($0.name) b2:\($0.b2sum)" + (setup.flavour == .arch ? " sig:\($0.name).sig" : "") }
        let record = InstallableRecord(job: ctx.job.value, host: target.value, version: version, packages: lines.joined(separator: "\n"),
                                       lockB2sum: lock.b2sum, repo: s.map { "\($0.host):\(publishedDir($0) ?? $0.repoDir)" } ?? "-", filedAt: ctx.now())
        // The issue first (its ref makes a retry file nothing new), then the record, which marks this step done:
        // a kill between the two runs the step again instead of losing the issue.
        if let records {
            let arch = setup.flavour == .arch
            let rows: [String] = pkgs.map { p in "| `\(p.name)` | `\(p.b2sum)` | \(arch ? "`\(p.name).sig`" : "InRelease") |" }
            var body = "`ka build \(target)` (job \(ctx.job)) built, signed and published \(target)'s kernel \(version) "
            body += "(lock b2:\(lock.b2sum.prefix(16))…).\n\n| package | b2sum | signature |\n|---|---|---|\n"
            body += rows.joined(separator: "\n")
            body += "\n\nRepo: \(record.repo)\n\nInstall it (backup, \(arch ? "pacman -U" : "apt install"), reboot) with:\n\n    ka install \(target)\n\n"
            body += "or `/ka-install \(target)` here. Nothing is installed until a person says so."
            try await records.fileRecord(title: "[ka:installable] \(target) \(version)", body: body, label: "ka:installable",
                                         ref: "installable-\(ctx.job)")
        }
        try state.recordInstallable(record)
        return "\(target) \(version) installable (\(pkgs.count) package(s))"
    }
}

/// The stall watcher's verdict: the build printed nothing for too long.
struct Stalled: Error { let text: String }

/// When a remote build last printed a line.
final class LastActivity: Sendable {
    private let last = NIOLockedValueBox(ContinuousClock.now)
    func touch() { last.withLockedValue { $0 = ContinuousClock.now } }
    var idleSeconds: Double {
        last.withLockedValue { ContinuousClock.now - $0 }.secondsValue
    }
}
