import ArgumentParser
import Foundation

/// `ka build <host>`: the seed's BUILD and SIGN stages as one job. From the host's lock (refused when missing or
/// stale), route to a build host (woken and pre-flighted), render the package from packaging/, makepkg it there as
/// the build user under a wall-clock cap and a stall watcher, bring the packages to the signing host (the build
/// host never holds the key), sign and repo-add them, publish, and file [ka:installable]. Nothing is installed.
package struct BuildVerb: JobVerb {
    package static let configuration = CommandConfiguration(
        commandName: "build",
        abstract: "Build <host>'s kernel from its manifest.lock on the routed build host, sign it and publish it to the repo.",
        discussion: "A job of steps (`ka jobs show <id>` has its log). Refuses a missing or stale lock, naming the input that changed. Never installs: that is `ka install <host>`.")

    @Argument(help: "Target host (must have a manifest.lock from ka promote).")
    package var host: HostName

    package init() {}

    package var lane: Lane { .host(host) }
    package var jobSubject: String { host.value }
    package var arguments: [String] { [host.value] }

    package func policySubject(in ctx: VerbContext) throws -> PolicySubject { PolicySubject(targets: [host]) }

    func setup(_ ctx: VerbContext) throws -> BuildSetup {
        let target = host
        let registry = try ctx.registry()
        let entry = try registry.entry(target)
        guard entry.roles.contains(.target) else {
            throw KAError.refusal("host \(target)", "is not a target (\(entry.rolesText))", hint: "only hosts with the target role get a kernel built")
        }
        let manifest = try Manifest.load(target, in: ctx.workspace)
        let out = try ctx.workspace.promoteDir(target, ref: manifest.baseline.ref, manifest: manifest.file)
        let flavour: PackageRenderer.Flavour = entry.distro == .debian ? .debian : .arch
        let settings = try ctx.settings()
        let pipeline = settings.pipeline
        let recipe = try RecipeTemplate.locate(manifest, pipeline: pipeline, stateRoot: ctx.workspace.root)
        if recipe != nil, flavour == .debian {
            throw KAError.refusal(manifest.file, "package.template_at names a PKGBUILD recipe, but \(target) is a Debian target",
                                  hint: "drop template_at for Debian targets: packaging/debian renders their .debs")
        }
        let candidates = try BuildRouting.candidates(for: manifest, registry: registry)
        var s = BuildSetup(target: target, entry: entry, manifest: manifest, lockURL: out.appendingPathComponent("manifest.lock"),
                           cumulativeURL: out.appendingPathComponent(Promotion.cumulativeName(target)),
                           candidates: candidates, pipeline: pipeline, flavour: flavour, recipe: recipe,
                           stockKernel: settings.agent.hosts[target]?.stockKernel)
        for c in candidates where try registry.entry(c).arch != entry.arch {
            guard flavour == .arch else {
                throw KAError.refusal("build host \(c)", "is \(try registry.entry(c).arch.rawValue) and \(target) is \(entry.arch.rawValue): a Debian target is built natively",
                                      hint: "route \(target) to a build host of its own arch")
            }
            s.crossPrefixes[c] = settings.agent.hosts[c]?.crossCompile[entry.arch] ?? entry.arch.defaultCrossPrefix
        }
        return s
    }

    package func plan(in ctx: VerbContext) async throws -> Planned<Void> {
        let s = try setup(ctx)
        // The lock is checked here too, so a stale one is refused before anyone consents.
        let lock = try await BuildSteps.checkedLock(s, ctx: ctx)
        // and the recipe's copies of patches against it: drift is refused before anyone consents
        if let recipe = s.recipe { _ = try recipe.verify(against: lock, cumulativeName: Promotion.cumulativeName(s.target)) }
        return Planned(Plan(verb: Self.verbName, arguments: arguments, steps: try steps(in: ctx).map(\.name),
                    pins: [.init("manifest.lock", "b2:\(lock.b2sum)"), .init("build hosts", s.candidates.map(\.value).joined(separator: " → "))]
                        + (s.recipe?.files.map { .init("recipe \(s.recipe?.shown ?? "")/\($0.name)", "b2:\($0.b2sum)") } ?? [])))
    }

    package func steps(in ctx: VerbContext) throws -> [JobStep] {
        try BuildSteps(setup: try setup(ctx), ctx: ctx).steps()
    }

    package func summary(of job: JobRecord, in ctx: VerbContext) -> String {
        var lines = job.steps.map { "\($0.state.mark) \($0.name)\($0.outcome.map { ": \($0)" } ?? "")" }
        switch job.state {
        case .succeeded:
            let record: InstallableRecord?
            do { record = try ctx.state.installable(job: job.id.value) } catch { record = nil; lines.append("(cannot read the installable record: \(JobRunner.text(error)))") }
            lines.append("build \(host): installable\(record.map { " \($0.version)" } ?? "") — job \(job.id); next: ka install \(host)")
        case .cancelled: lines.append("build \(host): cancelled — job \(job.id)")
        case .interrupted: lines.append("build \(host): interrupted — job \(job.id)")
        default: lines.append("build \(host): FAILED\(job.detail.map { " (\($0))" } ?? "") — job \(job.id)")
        }
        return lines.joined(separator: "\n")
    }
}
