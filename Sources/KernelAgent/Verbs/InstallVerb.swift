import ArgumentParser
import Foundation

/// `ka install <host>`: the seed's INSTALL stage, consent-via-action. Only a person starts it: from the CLI the
/// command is the consent; from a comment, `/ka-install <host>` gets a plan pinned to the open [ka:installable]'s
/// package b2sums, and runs on `/ka-yes`. Nothing else calls it: not a timer, not a reminder, not a build.
/// The job: pre-check (reachable, signatures verify on the host), back up /boot to the signing host, pacman -U,
/// initramfs, the managed extlinux block, reboot (never twice), Bar 1, then Bars 2–4 (and Bar 5's schedule).
package struct InstallVerb: JobVerb {
    package static let configuration = CommandConfiguration(
        commandName: "install",
        abstract: "Back up, install the signed package on <host> (pacman -U), write its boot entry and reboot, then verify. Only ever by your explicit call.",
        discussion: "A job of steps (`ka jobs show <id>` has its log). Refuses without an open [ka:installable] for the host, and while a [ka:host-drifted] or [ka:regression] block is open on it.")

    @Argument(help: "Target host (must have an open [ka:installable] from ka build).")
    package var host: HostName

    package init() {}

    package var lane: Lane { .host(host) }
    package var jobSubject: String { host.value }
    package var arguments: [String] { [host.value] }

    package func policySubject(in ctx: VerbContext) throws -> PolicySubject { PolicySubject(targets: [host]) }

    func setup(_ ctx: VerbContext) throws -> InstallSetup {
        let target = host
        let entry = try ctx.registry().entry(target)
        guard entry.roles.contains(.target) else {
            throw KAError.refusal("host \(target)", "is not a target (\(entry.rolesText))", hint: "only hosts with the target role get a kernel installed")
        }
        guard entry.distro != .debian else {
            throw KAError.refusal("host \(target)", "is a Debian target: ka install handles pacman targets only so far",
                                  hint: "install the published .deb by hand (apt install ./linux-image-….deb) and run ka verify \(target)")
        }
        let manifest = try Manifest.load(target, in: ctx.workspace)
        guard manifest.installMode == .alongside else {
            throw KAError.refusal(manifest.file, "install.mode: \(manifest.installMode.rawValue) is not supported by ka install yet (the stock entry would point at a removed kernel)",
                                  hint: "use install.mode: alongside; the stock kernel stays as the boot menu's fallback")
        }
        let pipeline = try ctx.settings().pipeline
        guard let signing = pipeline.signing else {
            throw KAError.refusal(pipeline.file ?? "KA_CONFIG", "has no signing section: the install fetches the packages from the signing host and backs up to it",
                                  hint: "add signing: {host, key, repo: {name, dir}} (see webhook/ka.yaml.example)")
        }
        let config = try ctx.settings().agent
        let privilege = config.hosts[target]?.privilegeCommand ?? ["sudo", "-n"]
        return InstallSetup(target: target, manifest: manifest, pipeline: pipeline, signing: signing, privilege: privilege,
                     installable: try Self.openInstallable(target, state: ctx.state))
    }

    /// The newest installable of the host, unless an install already closed it.
    static func openInstallable(_ host: HostName, state: StateStore) throws -> InstallableRecord? {
        guard let r = try state.installables([host.value])[host.value] else { return nil }
        return try state.installs.closure(buildJob: r.job) == nil ? r : nil
    }

    package func plan(in ctx: VerbContext) async throws -> Planned<Void> {
        let s = try setup(ctx)
        guard let r = s.installable else {
            let last = try ctx.state.installables([s.target.value])[s.target.value]
            let closed = try last.flatMap { try ctx.state.installs.closure(buildJob: $0.job) }
            throw KAError.refusal("host \(s.target)", "has no open [ka:installable]"
                                  + (closed.map { " (the last one, build \($0.buildJob), was closed by install \($0.installJob): \($0.outcome))" } ?? ""),
                                  hint: "run ka build \(s.target) first; it files [ka:installable] when the package is signed and published")
        }
        let halting = try await ctx.openBlocks().filter { b in
            (b.kind == .hostDrifted || b.kind == .regression) && b.scope == .host(s.target.value)
        }
        if let b = halting.first {
            throw KAError.refusal("host \(s.target)", "installs are halted by the open \(b.kind.titlePrefix) \(b.id) (\(b.title))",
                                  hint: b.kind == .regression ? "triage it (ka yank \(s.target) <patch> suggests the loopback), then close \(b.id)"
                                      : "converge the host (ka promote → ka build), then close \(b.id)")
        }
        // The build must be of the current lock: one made before a yank or a purge would install what they took out.
        if let current = try ctx.state.promotion(host: s.target.value), current.lockB2sum != r.lockB2sum {
            throw KAError.refusal("host \(s.target)", "its open [ka:installable] \(r.version) (build \(r.job)) was built from lock b2:\(r.lockB2sum.prefix(16))…, "
                                  + "not the current lock b2:\(current.lockB2sum.prefix(16))…", hint: "run ka build \(s.target): it builds the current lock")
        }
        let pkgs = try InstallPackage.parse(r.packages, from: "the installable record of \(r.job)")
        var pins: [Plan.Pin] = [.init("installable", "\(r.job) \(r.version)"), .init("manifest.lock", "b2:\(r.lockB2sum)")]
        for p in pkgs { pins.append(.init(p.file, "b2:\(p.b2sum)\(p.signature.map { " sig:\($0)" } ?? "")")) }
        return Planned(Plan(verb: Self.verbName, arguments: arguments, steps: try steps(in: ctx).map(\.name), pins: pins))
    }

    package func steps(in ctx: VerbContext) throws -> [JobStep] {
        InstallSteps(setup: try setup(ctx), ctx: ctx).steps()
    }

    package func summary(of job: JobRecord, in ctx: VerbContext) -> String {
        var lines = job.steps.map { "\($0.state.mark) \($0.name)\($0.outcome.map { ": \($0)" } ?? "")" }
        let record: InstallRecord?
        do { record = try ctx.state.installs.install(job: job.id.value) } catch { record = nil; lines.append("(cannot read the install record: \(JobRunner.text(error)))") }
        switch job.state {
        case .succeeded:
            lines.append("install \(host): \(record?.state.rawValue ?? "done") \(record?.version ?? "") — job \(job.id)"
                         + (record?.burnInUntil.map { "; burn-in until \($0.formatted(.iso8601)) (ka verify \(host))" } ?? ""))
        case .cancelled: lines.append("install \(host): cancelled — job \(job.id)")
        case .interrupted: lines.append("install \(host): interrupted — job \(job.id); it resumes where its steps allow")
        default:
            lines.append("install \(host): FAILED\(job.detail.map { " (\($0))" } ?? "") — job \(job.id)"
                         + (record?.backup.map { "; the /boot backup is \($0)" } ?? ""))
        }
        return lines.joined(separator: "\n")
    }
}
