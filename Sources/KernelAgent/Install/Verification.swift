import Foundation

/// A verdict in KernelCI's terms: an infra error (the host or the link failed, not the kernel) is retried and is
/// never a regression.
package enum BarCode: String, Sendable, Codable {
    case pass, fail, skip
    case infraError = "infra-error"
}

/// One bar's (or one probe's) verdict.
package struct BarResult: Sendable, Codable, Equatable {
    package let bar: Int
    package let name: String
    package let code: BarCode
    package let required: Bool
    /// What was seen (bounded), or why it was skipped.
    package let detail: String
    /// The probe's text, for Bars 3 and 4.
    package var probe: String?
    /// The patch a Bar 4 probe belongs to.
    package var patch: String?

    package init(bar: Int, name: String, code: BarCode, required: Bool, detail: String, probe: String? = nil, patch: String? = nil) {
        self.bar = bar; self.name = name; self.code = code; self.required = required; self.detail = String(detail.prefix(2000))
        self.probe = probe; self.patch = patch
    }

    package var line: String {
        "bar\(bar) \(code.rawValue)\(required ? "" : " (optional)") \(name)\(probe.map { " `\($0)`" } ?? ""): \(detail.split(separator: "\n").first ?? "")"
    }
}

/// Bars 2–5 after an install (Bar 1 is the install's heartbeat step), and what a failure does: [ka:regression],
/// the host drifted, the installable closed with the outcome. No automatic rollback (seed).
struct Verification: Sendable {
    let steps: InstallSteps

    var target: HostName { steps.target }
    var state: StateStore { steps.state }

    func run(_ ctx: StepContext) async throws -> String {
        let record = try steps.record(ctx)
        var results: [BarResult] = []
        var bar2 = try await Bars.bar2(ctx, host: target, record: record, pkgbase: steps.pkgbase)
        for _ in 0..<steps.install.probeRetries where bar2.code == .infraError {
            bar2 = try await Bars.bar2(ctx, host: target, record: record, pkgbase: steps.pkgbase)
        }
        results.append(bar2)
        if bar2.code == .fail { try await fail(ctx, bar: bar2) }
        if bar2.code == .infraError { throw KAError.failure("Bar 2", bar2.detail, hint: "not a regression: run ka verify \(target) once \(target) answers") }
        let schedule = try await Bars.later(ctx, host: target, manifest: steps.setup.manifest, retries: steps.install.probeRetries)
        for r in schedule {
            results.append(r)
            if r.required && r.code == .fail { try await fail(ctx, bar: r, all: results) }
            if r.required && r.code == .infraError {
                // KernelCI: an infra error is never a regression. The install stays `installed`; ka verify retries it.
                try steps.update(ctx) { $0.bars = ([$0.bars] + results.map(\.line)).filter { !$0.isEmpty }.joined(separator: "\n") }
                throw KAError.failure("Bar \(r.bar) probe `\(r.probe ?? "")`", "infra error after retries: \(r.detail.prefix(300))",
                                      hint: "not a regression: fix the link to \(target), then run ka verify \(target)")
            }
        }
        let burnIn = Bars.burnInHours(steps.setup.manifest)
        let at = steps.now()
        try steps.update(ctx) {
            $0.state = .verified
            $0.bars = ([$0.bars] + results.map(\.line)).filter { !$0.isEmpty }.joined(separator: "\n")
            $0.burnInUntil = burnIn.map { at.addingTimeInterval(TimeInterval($0 * 3600)) }
        }
        try state.clearDrift(host: target.value)
        let passed = results.filter { $0.code == .pass }.count
        let outcome = "installed and verified on \(target) by install job \(ctx.job): Bars 1–4 passed (\(passed + 1) check(s))"
            + (burnIn.map { "; Bar 5 burn-in runs \($0) h (ka verify \(target) checks it)" } ?? "")
        try await closeInstallable(ctx, outcome: "✅ " + outcome)
        return outcome
    }

    /// A required failure: the regression issue, the drift mark, the installable closed; then the step fails.
    func fail(_ ctx: StepContext, bar: BarResult, all: [BarResult] = []) async throws -> Never {
        let record = try steps.record(ctx)
        let block = try await Regression.file(ctx, host: target, bar: bar, record: record, state: state, blocks: steps.blocks,
                                              pkgbase: steps.pkgbase, signer: steps.setup.signing.host, now: steps.now())
        try steps.update(ctx) {
            $0.state = .drifted
            $0.bars = ([$0.bars] + (all.isEmpty ? [bar] : all).map(\.line)).filter { !$0.isEmpty }.joined(separator: "\n")
        }
        try await closeInstallable(ctx, outcome: "❌ installed on \(target) by install job \(ctx.job), but Bar \(bar.bar) (\(bar.name)) failed: "
                                   + "\(bar.detail.prefix(300)). Filed \(block.kind.titlePrefix) \(block.id); the host is drifted.")
        throw KAError.failure("Bar \(bar.bar) (\(bar.name))\(bar.probe.map { " probe `\($0)`" } ?? "")", String(bar.detail.prefix(500)),
                              "filed \(block.kind.titlePrefix) \(block.id); \(target) is drifted; no automatic rollback")
    }

    func closeInstallable(_ ctx: StepContext, outcome: String) async throws {
        let record = try steps.record(ctx)
        // The issue first (idempotent by ref), then the local closure: a kill between them repeats the close, never loses it.
        try await steps.records?.closeRecord(ref: "installable-\(record.buildJob)", outcome: outcome)
        try state.installs.closeInstallable(InstallableClosure(buildJob: record.buildJob, installJob: ctx.job.value, outcome: outcome, closedAt: steps.now()))
    }
}

/// The bars' checks, shared by the install's last step and `ka verify`.
enum Bars {
    /// Bar 2: the running kernel release and the installed package version equal the install's (the lock's build).
    static func bar2(_ ctx: StepContext, host: HostName, record: InstallRecord, pkgbase: String) async throws -> BarResult {
        let uname = try await ctx.run(RemoteCommand(["uname", "-r"], timeout: .seconds(60)), on: host)
        let q = try await ctx.run(RemoteCommand(["pacman", "-Q", "--", RemoteArgument(pkgbase)], timeout: .seconds(60)), on: host)
        guard uname.succeeded else { return BarResult(bar: 2, name: "running kernel and package version", code: .infraError, required: true, detail: "uname -r exited \(uname.status)") }
        let running = uname.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        let installed = q.succeeded ? q.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines) : "\(pkgbase) not installed (pacman -Q exit \(q.status))"
        let want = "\(pkgbase) \(record.version)"
        var wrong: [String] = []
        if let release = record.kernelRelease, running != release { wrong.append("running \(running), the package installed \(release)") }
        if record.kernelRelease == nil { wrong.append("the install recorded no kernel release") }
        if installed != want { wrong.append("pacman -Q says '\(installed)', the lock's build is '\(want)'") }
        return BarResult(bar: 2, name: "running kernel and package version", code: wrong.isEmpty ? .pass : .fail, required: true,
                         detail: wrong.isEmpty ? "running \(running); \(installed)" : wrong.joined(separator: "; "))
    }

    /// Bars 3 and 4: the manifest's device-tree checks (all required) and per-patch probes, in order; the first
    /// required failure ends the list (greenboot's rule). Infra errors are retried by the runner and never a failure:
    /// one that persists is reported as infra-error, which fails the step without a regression.
    static func later(_ ctx: StepContext, host: HostName, manifest: Manifest, retries: Int) async throws -> [BarResult] {
        guard let spec = manifest.verify, !(spec.deviceTree.isEmpty && spec.probes.isEmpty) else { return [] }
        let runner = ProbeRunner(host: TransportProbeHost(transport: try ctx.transports.transport(for: host)), infraRetries: retries,
                                 retryDelay: .seconds(2))
        var out: [BarResult] = []
        func judged(_ r: ProbeResult, bar: Int, required: Bool, patch: String?) throws -> BarResult {
            let code: BarCode = switch r.code { case .pass: .pass; case .fail: .fail; case .skip: .skip; case .infraError: .infraError }
            try ctx.log.append("ka", "bar\(bar) \(r.code.rawValue) `\(r.probe)`: \(r.reason)\(r.attempts > 1 ? " (\(r.attempts) attempts)" : "")")
            return BarResult(bar: bar, name: bar == 3 ? "device tree matches the manifest" : "per-patch probe", code: code, required: required,
                             detail: r.reason + (r.observed.isEmpty ? "" : "\nobserved: \(r.observed)"), probe: r.probe, patch: patch)
        }
        for probe in spec.deviceTree {
            let r = try judged(await runner.run(probe), bar: 3, required: true, patch: nil)
            out.append(r)
            if r.code == .fail || r.code == .infraError { return out }
        }
        for p in spec.probes {
            let r = try judged(await runner.run(p.probe), bar: 4, required: p.required, patch: p.patch.value)
            out.append(r)
            if p.required && (r.code == .fail || r.code == .infraError) { return out }
        }
        return out
    }

    /// Bar 5's opt-in: hours of burn-in, or nil.
    static func burnInHours(_ manifest: Manifest) -> Int? { manifest.verify?.burnInHours }
}

/// [ka:regression]: what failed, against the last good lock, with the way back.
enum Regression {
    /// A table cell holding any text: a code span, with `|` escaped (GFM ends a cell at `|` even inside one).
    static func cell(_ s: String) -> String { MarkdownText.code(s).replacingOccurrences(of: "|", with: "\\|") }

    /// The issue's body. Host output (the bar's detail, the probe) is fenced so it stays text.
    static func body(host: HostName, job: JobID, bar: BarResult, record: InstallRecord, good: InstallRecord?, newPatches: [String],
                     pkgbase: String, signer: HostName) -> String {
        var body = "Verification of \(host) failed after `ka install \(host)` (job \(job)) installed \(pkgbase) \(record.version).\n\n"
        body += "| | |\n|---|---|\n"
        body += "| bar | Bar \(bar.bar): \(bar.name) |\n"
        if let p = bar.probe { body += "| probe | \(cell(p))\(bar.patch.map { " (patch \(cell($0)))" } ?? "") |\n" }
        body += "| verdict | \(bar.code.rawValue) |\n"
        // KernelCI's key: the same host + bar/probe + baseline is the same regression.
        body += "| key | \(cell("\(host) / bar\(bar.bar)\(bar.probe.map { " / \($0)" } ?? "") / \(record.baselineRef)")) |\n"
        body += "| failing lock | `b2:\(record.lockB2sum.prefix(16))…` (build \(record.buildJob)) |\n"
        body += "| last good lock | \(good.map { "`b2:\($0.lockB2sum.prefix(16))…` (\($0.version), install \($0.job))" } ?? "none: no install of \(host) verified yet") |\n\n"
        body += "Output:\n\n\(MarkdownText.block(String(bar.detail.prefix(1500))))\n\n"
        if good != nil {
            body += newPatches.isEmpty ? "No patch is new since the last good lock (the baseline or the config changed).\n\n"
                : "Patches new since the last good lock:\n\n" + newPatches.map { "- " + MarkdownText.code(String($0.split(separator: " ").first ?? "")) }.joined(separator: "\n") + "\n\n"
        } else {
            body += "Patches of the failing lock:\n\n" + record.patchLines.map { "- " + MarkdownText.code(String($0.split(separator: " ").first ?? "")) }.joined(separator: "\n") + "\n\n"
        }
        if let suspect = (bar.patch.map { [$0] } ?? newPatches.map { String($0.split(separator: " ").first ?? "") }).first {
            body += "Suggested loopback (takes the patch out of \(host)'s manifest, then promote → build → install converges it; needs consent):\n\n"
            body += "    /ka-yank \(host) \(suspect)\n\n"
        }
        if let backup = record.backup, let colon = backup.firstIndex(of: ":") {
            let path = String(backup[backup.index(after: colon)...])
            let file = (path as NSString).lastPathComponent
            body += "The /boot from before the install is backed up at `\(backup)`. There is no automatic rollback; to restore it:\n\n"
            body += "```sh\nscp \(signer):\(path) \(host):/tmp/\(file)\n"
            body += "ssh \(host) sudo tar -C /boot -xzf /tmp/\(file)      # the old Image, dtbs, initramfs and extlinux.conf\n"
            body += "ssh \(host) sudo pacman -R \(pkgbase) \(pkgbase)-headers   # optional: the stock kernel stays installed alongside\n"
            body += "ssh \(host) sudo reboot\n```\n\n"
        }
        body += "Installs to \(host) are halted while this issue is open. Close it once triaged: that lifts the block."
        return body
    }

    static func file(_ ctx: StepContext, host: HostName, bar: BarResult, record: InstallRecord, state: StateStore, blocks: any BlockStore,
                     pkgbase: String, signer: HostName, now: Date) async throws -> Block {
        let good = try state.installs.lastGood(host: host.value, excluding: record.job)
        let newPatches = record.patchLines.filter { line in !(good?.patchLines.contains(line) ?? false) }
        let body = Self.body(host: host, job: ctx.job, bar: bar, record: record, good: good, newPatches: newPatches,
                             pkgbase: pkgbase, signer: signer)
        let title = "\(host): Bar \(bar.bar) (\(bar.name)) failed after installing \(record.version) (job \(ctx.job))"
        let block = try await blocks.file(kind: .regression, scope: .host(host.value), title: title, body: body)
        try state.markDrifted(host: host.value, reason: "Bar \(bar.bar) failed after install \(ctx.job): \(bar.detail.prefix(200)); see \(block.kind.titlePrefix) \(block.id)", at: now)
        try ctx.log.append("ka", "filed \(block.kind.titlePrefix) \(block.id): \(title)")
        return block
    }
}
