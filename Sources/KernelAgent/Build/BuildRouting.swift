import Foundation

/// Picks the build host for a job: the manifest's own `build_host:` or the fleet's routing for the arch, in
/// order. A host with an open build-fail, bootstrap-missing or host-changed block is skipped; an on-demand host
/// is woken through His first; each candidate is pre-flighted (reachable, disk, tools). A failed pre-flight
/// files [ka:host-changed] (missing tools: [ka:bootstrap-missing]) and the next host is tried. Never a hang:
/// every His call and every ssh call has its own cap.
package struct BuildRouting: Sendable {
    package let registry: HostRegistry
    package let blocks: any BlockStore
    package let his: (any HisOps)?
    package let sleep: SleepMemory
    package let transports: any TransportProvider
    package let workspace: Workspace
    /// How long a woken host may take to answer ssh.
    package var wakeWait: Swift.Duration = .seconds(120)

    static let haltingKinds: Set<BlockKind> = [.buildFail, .bootstrapMissing, .hostChanged]

    /// The candidates in order, for the plan.
    package static func candidates(for manifest: Manifest, registry: HostRegistry) throws -> [HostName] {
        let entry = try registry.entry(manifest.host)
        if let own = manifest.buildHosts {
            return try ([own.primary] + own.fallback).map { raw in
                let h = try HostName(raw)
                guard let e = registry.hosts[h], e.roles.contains(.build) else {
                    throw KAError.refusal(manifest.file, "build_host names '\(raw)', which is not a build host in \(registry.file)",
                                          hint: registry.whereToAddHosts)
                }
                return h
            }
        }
        let route = registry.buildRoute(for: entry.arch)
        guard !route.isEmpty else {
            throw KAError.refusal(registry.file, "no build routing for \(entry.arch.rawValue) (\(manifest.host)'s arch)",
                                  hint: registry.derived ? "add build_host: {primary: <build host>} to \(manifest.file)"
                                                         : "add routing: {\(entry.arch.rawValue): [<build host>…]} to \(registry.file)")
        }
        return route
    }

    /// Tries the candidates; returns the chosen host and one note per skipped one.
    /// `needs`: what the build asks of a candidate besides its roles' tools (a cross compiler, Bar 0's qemu).
    package func choose(_ candidates: [HostName], for target: HostName, flavour: PackageRenderer.Flavour, job: JobID,
                       needs: (HostName) -> HostChecks.BuildNeeds = { _ in .none }, ctx: StepContext) async throws -> (HostName, [String]) {
        var notes: [String] = []
        func skip(_ h: HostName, _ why: String) throws {
            notes.append("\(h): \(why)")
            try ctx.log.append("route", "skip \(h): \(why)")
        }
        let open = try await blocks.openBlocks()
        for host in candidates {
            if let b = open.first(where: { Self.haltingKinds.contains($0.kind) && $0.scope == .buildHost(host.value) }) {
                try skip(host, "open \(b.kind.titlePrefix) \(b.id)")
                continue
            }
            let entry = try registry.entry(host)
            if case .onDemand = entry.wake {
                if let until = try sleep.asleepUntil(host), until > ctx.now() {
                    try skip(host, "on-demand and did not wake last time; not tried again before \(until.formatted(.iso8601))")
                    continue
                }
                guard let his else {
                    try skip(host, "on-demand, and no His is configured to wake it (KA_CONFIG his:)")
                    continue
                }
                // Only His's own calls are "His failed"; the log and the sleep memory fail as themselves.
                let power: HostPower
                do { power = try await his.hostStatus(host) } catch let e as KAError where !Task.isCancelled {
                    try skip(host, "His unreachable or failed (\(e.description)); trying the next host")
                    continue
                }
                try ctx.log.append("route", "\(his.endpoint) host-status \(host): \(power.rawValue)")
                if power != .up {
                    let answer: String
                    do { answer = try await his.wakeHost(host) } catch let e as KAError where !Task.isCancelled {
                        try skip(host, "His unreachable or failed (\(e.description)); trying the next host")
                        continue
                    }
                    try ctx.log.append("route", "\(his.endpoint) wake-host \(host): \(answer)")
                    guard try await waitForSSH(host, ctx: ctx) else {
                        try sleep.noteAsleep(host)
                        try skip(host, "woken through \(his.endpoint), but ssh did not answer within \(wakeWait)")
                        continue
                    }
                }
                try sleep.noteAwake(host)
            }
            switch await preflight(host, entry: entry, flavour: flavour, needs: needs(host), ctx: ctx) {
            case .passed:
                return (host, notes)
            case let .failed(check, why):
                let kind: BlockKind = check.hasPrefix(HostChecks.toolsCheckPrefix) ? .bootstrapMissing : .hostChanged
                let block = try await blocks.file(
                    kind: kind, scope: .buildHost(host.value), title: "\(host): pre-flight failed (\(check); job \(job))",
                    body: "The pre-flight of `ka build \(target)` (job \(job)) failed on build host \(host):\n\n"
                        + "- check: \(check)\n- result: \(why)\n\nBuilds skip \(host) while this issue is open. "
                        + "Close it once \(host) is fixed (`ka preflight \(host)` shows the checks).")
                try skip(host, "pre-flight failed (\(check): \(why)); filed \(kind.titlePrefix) \(block.id)")
            }
        }
        throw KAError.failure("ka build \(target)", "no build host is usable", notes.joined(separator: "; "),
                              hint: "fix or wake one of \(candidates.map(\.value).joined(separator: ", ")), or close a block once its host is fixed")
    }

    enum PreflightResult { case passed, failed(check: String, why: String) }

    /// `ka preflight`'s own checks, run inside this step (same log).
    func preflight(_ host: HostName, entry: HostEntry, flavour: PackageRenderer.Flavour, needs: HostChecks.BuildNeeds = .none,
                   ctx: StepContext) async -> PreflightResult {
        let checks: [JobStep]
        do { checks = try HostChecks().checks(for: entry, host: host, packaging: flavour, needs: needs) } catch { return .failed(check: "setup", why: JobRunner.text(error)) }
        for check in checks {
            do {
                let found = try await check.body(ctx)
                do { try ctx.log.append("preflight", "✓ \(host) \(check.name): \(found)") } catch { return .failed(check: check.name, why: JobRunner.text(error)) }
            } catch {
                return .failed(check: check.name, why: JobRunner.text(error))
            }
        }
        return .passed
    }

    /// Polls `uname -n` until the woken host answers, up to `wakeWait`.
    func waitForSSH(_ host: HostName, ctx: StepContext) async throws -> Bool {
        let deadline = ContinuousClock.now + wakeWait
        let transport = try transports.transport(for: host)
        var last = "no answer yet"
        while ContinuousClock.now < deadline {
            try Task.checkCancellation()
            do {
                let r = try await transport.run(RemoteCommand(["uname", "-n"], timeout: .seconds(10)))
                if r.succeeded { return true }
                last = "uname -n exited \(r.status)"
            } catch let e as KAError where !Task.isCancelled {
                last = e.description   // still asleep: expected while it boots
            }
            try await Task.sleep(for: .milliseconds(500))   // a booting host tells nobody when sshd is up: ask again
        }
        try ctx.log.append("route", "\(host) did not answer ssh within \(wakeWait): \(last)")
        return false
    }
}
