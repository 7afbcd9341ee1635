import Foundation
import GRDB
import KernelAgent

/// What the `[ka:dashboard]` issue and the `GET /` page show: one picture of the fleet, read from the tree, the
/// state store, the job journal and the ledger. Both renderings are made from this value alone, so a test can
/// render a fixture without a fleet.
package struct DashboardModel: Codable, Sendable, Equatable {
    /// A link to a Gitea issue (or a status comment); `url` is nil when it has no issue yet (a block being filed).
    package struct Link: Codable, Sendable, Equatable {
        package var text: String
        package var url: String?
        package init(text: String, url: String?) { self.text = text; self.url = url }
    }

    /// One job as the dashboard shows it: its outcome, how long it took, and where its status comment is.
    package struct Job: Codable, Sendable, Equatable {
        package var id: String
        package var verb: String
        package var arguments: [String]
        package var state: String
        package var createdAt: Date
        package var startedAt: Date?
        package var finishedAt: Date?
        /// `✓ 1. route` …, for the timeline's hover text.
        package var steps: [String]
        /// The step running now, if any.
        package var currentStep: String?
        package var statusComment: String?
        package init(id: String, verb: String, arguments: [String], state: String, createdAt: Date, startedAt: Date?,
                    finishedAt: Date?, steps: [String], currentStep: String?, statusComment: String?) {
            self.id = id; self.verb = verb; self.arguments = arguments; self.state = state; self.createdAt = createdAt
            self.startedAt = startedAt; self.finishedAt = finishedAt; self.steps = steps; self.currentStep = currentStep
            self.statusComment = statusComment
        }
    }

    package struct Host: Codable, Sendable, Equatable {
        package var host: String
        package var roles: [String]
        package var arch: String
        package var note: String?
        /// stock, pending, locked, building, installable, installed, verified, drifted (or error, -).
        package var state: String
        package var detail: String?
        package var lockB2sum: String?
        package var lockedSuffix: String?
        /// The kernel the host runs, as its last install by kernel-agent left it; nil when none did (shown as unknown).
        package var runningVersion: String?
        /// The version built from the lock, once one was (the installable's).
        package var lockedVersion: String?
        package var lastJob: Job?
        package var blocks: [Link]
        package var nextReminder: Date?
        /// The exact command to type next: text to copy, never a trigger.
        package var nextCommand: String?
        package init(host: String, roles: [String], arch: String, note: String?, state: String, detail: String?, lockB2sum: String?,
                    lockedSuffix: String?, runningVersion: String?, lockedVersion: String?, lastJob: Job?, blocks: [Link],
                    nextReminder: Date?, nextCommand: String?) {
            self.host = host; self.roles = roles; self.arch = arch; self.note = note; self.state = state; self.detail = detail
            self.lockB2sum = lockB2sum; self.lockedSuffix = lockedSuffix; self.runningVersion = runningVersion
            self.lockedVersion = lockedVersion; self.lastJob = lastJob; self.blocks = blocks; self.nextReminder = nextReminder
            self.nextCommand = nextCommand
        }
    }

    package struct BuildHost: Codable, Sendable, Equatable {
        package var host: String
        package var arch: String
        /// up, asleep or blocked.
        package var state: String
        package var job: Job?
        package var blocks: [Link]
        package init(host: String, arch: String, state: String, job: Job?, blocks: [Link]) {
            self.host = host; self.arch = arch; self.state = state; self.job = job; self.blocks = blocks
        }
    }

    /// A plan awaiting `/ka-yes <nonce>` before it expires.
    package struct Consent: Codable, Sendable, Equatable {
        package var nonce: String
        package var command: String
        package var issue: Link
        package var expires: Date
        package init(nonce: String, command: String, issue: Link, expires: Date) {
            self.nonce = nonce; self.command = command; self.issue = issue; self.expires = expires
        }
    }

    package struct Installable: Codable, Sendable, Equatable {
        package var host: String
        package var version: String
        package var issue: Link?
        package var filedAt: Date
        package init(host: String, version: String, issue: Link?, filedAt: Date) {
            self.host = host; self.version = version; self.issue = issue; self.filedAt = filedAt
        }
    }

    /// Who paused pruning, and when (`ka pause-prune`).
    package struct PrunePause: Codable, Sendable, Equatable {
        package var by: String
        package var at: Date
        package init(by: String, at: Date) { self.by = by; self.at = at }
    }

    package var generatedAt: Date
    package var repo: String
    package var hosts: [Host]
    package var buildHosts: [BuildHost]
    package var consents: [Consent]
    package var installables: [Installable]
    package var signingFail: [Link]
    package var prunePause: PrunePause?
    /// The jobs of the last 30 days, newest first (the page's timeline).
    package var jobs: [Job]
    /// The rows `ka status --json` prints: `GET /api/status` serves these.
    package var status: [StatusVerb.Row]

    package init(generatedAt: Date, repo: String, hosts: [Host], buildHosts: [BuildHost], consents: [Consent],
                installables: [Installable], signingFail: [Link], prunePause: PrunePause?, jobs: [Job], status: [StatusVerb.Row]) {
        self.generatedAt = generatedAt; self.repo = repo; self.hosts = hosts; self.buildHosts = buildHosts
        self.consents = consents; self.installables = installables; self.signingFail = signingFail
        self.prunePause = prunePause; self.jobs = jobs; self.status = status
    }

    /// The subject of a job id (`fresnel-20261130-1412-a3f9` → `fresnel`): the host a host's job is about.
    package static func subject(ofJob id: String) -> String {
        id.split(separator: "-", omittingEmptySubsequences: false).dropLast(3).joined(separator: "-")
    }

    package static let timelineDays = 30.0
}

/// Where the dashboard's links point: Gitea's web pages for the repo (nil: no links, e.g. offline without a config).
package struct DashboardLinks: Sendable {
    package let repoWeb: String?
    package let repo: String
    package init(giteaURL: URL?, owner: String, repo: String) {
        let base = giteaURL.map { $0.absoluteString.hasSuffix("/") ? String($0.absoluteString.dropLast()) : $0.absoluteString }
        repoWeb = base.map { "\($0)/\(owner)/\(repo)" }
        self.repo = "\(owner)/\(repo)"
    }
    package func issue(_ n: Int) -> String? { repoWeb.map { "\($0)/issues/\(n)" } }
    package func comment(issue n: Int, id: Int64) -> String? { repoWeb.map { "\($0)/issues/\(n)#issuecomment-\(id)" } }
    /// `#12` → its issue; a block still being filed (`pending:…`) has no link.
    package func block(_ id: String) -> String? {
        guard id.hasPrefix("#"), let n = Int(id.dropFirst()) else { return nil }
        return issue(n)
    }
}

/// Reads the dashboard's picture from a verb context (tree, state store, jobs, blocks) and, in `ka serve`, the
/// ledger (consents, status comments, installable issues). Reuses `ka status`'s rows for the host state.
package enum DashboardSource {
    package static func build(ctx: VerbContext, ledger: Ledger?, links: DashboardLinks, prunePause: DashboardModel.PrunePause? = nil,
                             now: Date) async throws -> DashboardModel {
        let status = try StatusVerb.parse([])   // parsed, so its option groups hold values
        let rows = try await status.withTreeAccess(in: ctx) { try await status.rows(in: ctx) }
        let registry = try ctx.registry()
        // the stored pause (ka pause-prune), unless the caller gave one
        let prunePause = try prunePause ?? ctx.state.prunePause().map { DashboardModel.PrunePause(by: $0.by, at: $0.at) }
        let blocks = try await ctx.openBlocks()
        let since = now.addingTimeInterval(-DashboardModel.timelineDays * 86_400)
        let records = try ctx.jobs.jobs(states: nil, limit: 20_000)
        let recent = records.filter { $0.createdAt >= since || !$0.state.isFinished }
        let ledgerFacts = try ledger.map { try LedgerFacts.read($0, now: now) } ?? LedgerFacts()
        let jobs = recent.map { job(of: $0, links: links, facts: ledgerFacts) }
        let lastJobByHost = Dictionary(jobs.map { (DashboardModel.subject(ofJob: $0.id), $0) }, uniquingKeysWith: { a, b in a.createdAt >= b.createdAt ? a : b })
        let hostNames = rows.map(\.host)
        let installables = try ctx.state.installables(hostNames)
        let installs = try ctx.state.installs.latest(hosts: hostNames)
        let reminders = try ctx.state.openReminders()
        let reminderByIssue = Dictionary(reminders.map { ($0.issue, $0) }, uniquingKeysWith: { a, _ in a })

        var hosts: [DashboardModel.Host] = []
        for row in rows where row.roles.contains("target") {
            let entry = registry.hosts[try HostName(row.host)]
            let last = lastJobByHost[row.host]
            let inst = installables[row.host]
            let instIssue = inst.flatMap { ledgerFacts.installableIssue[$0.job] }
            var state = row.state
            if let last, last.verb == "build", ["queued", "waiting", "running"].contains(last.state) {
                state = "building"
            } else if state == "locked", let inst, inst.lockB2sum == row.lockB2sum {
                state = "installable"
            }
            let hostBlocks = blocks.filter { b in
                if b.scope == .global { return false }
                return row.openBlocks.contains("\(b.kind.titlePrefix) \(b.id)")
            }.map { DashboardModel.Link(text: "\($0.kind.titlePrefix) \($0.id)", url: links.block($0.id)) }
            hosts.append(DashboardModel.Host(
                host: row.host, roles: row.roles, arch: row.arch, note: entry?.notes, state: state, detail: row.detail,
                lockB2sum: row.lockB2sum, lockedSuffix: row.lockedSuffix,
                runningVersion: installs[row.host].flatMap { $0.state == .installing ? nil : "\($0.version) (\($0.kernelRelease ?? "release unknown"))" },
                lockedVersion: inst.flatMap { $0.lockB2sum == row.lockB2sum ? $0.version : nil },
                lastJob: last, blocks: hostBlocks, nextReminder: instIssue.flatMap { reminderByIssue[$0] }.map(nextDue),
                nextCommand: nextCommand(host: row.host, state: state, job: last)))
        }

        var buildHosts: [DashboardModel.BuildHost] = []
        let leases = WakeLeases(stateDir: ctx.workspace.stateDir, now: { now })
        let leased = Set(try leases.all().leases.filter { $0.releaseAt > now }.map(\.host))
        let running = jobs.filter { $0.state == "running" || $0.state == "waiting" }
        for name in registry.hosts.keys.sorted() {
            guard let e = registry.hosts[name], e.roles.contains(.build) else { continue }
            let mine = blocks.filter { if case let .buildHost(h) = $0.scope { return h == name.value }; return false }
                .map { DashboardModel.Link(text: "\($0.kind.titlePrefix) \($0.id)", url: links.block($0.id)) }
            // a build job names its build host in its routing step's outcome
            let job = running.first { j in
                guard let route = recent.first(where: { $0.id.value == j.id })?.steps.first, route.state == .succeeded else { return false }
                return route.outcome?.split(separator: " ").first.map(String.init) == name.value
            }
            let state: String
            if !mine.isEmpty { state = "blocked" } else if case .onDemand = e.wake, !leased.contains(name.value), job == nil { state = "asleep" } else { state = "up" }
            buildHosts.append(DashboardModel.BuildHost(host: name.value, arch: e.arch.rawValue, state: state, job: job, blocks: mine))
        }

        let issueOfInstallable = Dictionary(installables.values.compactMap { r in ledgerFacts.installableIssue[r.job].map { ($0, r) } },
                                            uniquingKeysWith: { a, _ in a })
        let openInstallables = reminders.sorted { $0.filedAt < $1.filedAt }.map { r -> DashboardModel.Installable in
            let rec = issueOfInstallable[r.issue]
            return DashboardModel.Installable(host: rec?.host ?? "?", version: rec?.version ?? "?",
                                              issue: DashboardModel.Link(text: "#\(r.issue)", url: links.issue(r.issue)), filedAt: r.filedAt)
        }
        let signing = blocks.filter { $0.kind == .signingFail }.map { DashboardModel.Link(text: "\($0.kind.titlePrefix) \($0.id)", url: links.block($0.id)) }
        let consents = ledgerFacts.consents.map { c in
            DashboardModel.Consent(nonce: c.nonce, command: c.command, issue: .init(text: "#\(c.issue)", url: links.issue(c.issue)), expires: c.expires)
        }
        return DashboardModel(generatedAt: now, repo: links.repo, hosts: hosts, buildHosts: buildHosts, consents: consents,
                              installables: openInstallables, signingFail: signing, prunePause: prunePause, jobs: jobs, status: rows)
    }

    /// A snooze moves `nextDue` itself (snoozeReminder).
    static func nextDue(_ r: ReminderRecord) -> Date { r.nextDue }

    static func job(of r: JobRecord, links: DashboardLinks, facts: LedgerFacts) -> DashboardModel.Job {
        var status: String?
        if case let .issue(n, run) = r.origin, let cid = facts.statusComments[run] { status = links.comment(issue: n, id: cid) }
        return DashboardModel.Job(id: r.id.value, verb: r.verb, arguments: r.arguments, state: r.state.rawValue, createdAt: r.createdAt,
                                  startedAt: r.startedAt, finishedAt: r.finishedAt,
                                  steps: r.steps.enumerated().map { "\($1.state.mark) \($0 + 1). \($1.name)" },
                                  currentStep: r.steps.first { $0.state == .running }?.name, statusComment: status)
    }

    /// What a person types next for a host in this state (a command in the tracker or at the CLI; never run from here).
    package static func nextCommand(host: String, state: String, job: DashboardModel.Job?) -> String? {
        switch state {
        case "stock": return "ka promote \(host)   # after writing fleet/\(host).yaml"
        case "pending", "drifted": return "/ka-promote \(host)"
        case "locked": return "/ka-build \(host)"
        case "building": return job.map { "ka jobs show \($0.id)" }
        case "installable": return "/ka-install \(host)"
        case "installed": return "ka verify \(host)"
        case "installing": return job.map { "ka jobs show \($0.id)" }
        case "error": return "ka status"
        default: return nil
        }
    }

    /// The ledger's part: plans awaiting consent, where each run's status comment is, and each installable's issue.
    struct LedgerFacts {
        struct PendingConsent { let nonce: String; let command: String; let issue: Int; let expires: Date }
        var consents: [PendingConsent] = []
        var statusComments: [Int64: Int64] = [:]
        var installableIssue: [String: Int] = [:]

        static func read(_ ledger: Ledger, now: Date) throws -> LedgerFacts {
            try ledger.readSync { db in
                var f = LedgerFacts()
                for r in try Row.fetchAll(db, sql: "SELECT nonce, verb, args, issue, expires_at FROM runs WHERE state = ? AND nonce IS NOT NULL AND expires_at > ? ORDER BY expires_at",
                                          arguments: [RunState.awaiting, now.timeIntervalSince1970]) {
                    let args = try RunStore.decode([String].self, r["args"])
                    f.consents.append(.init(nonce: r["nonce"], command: (["/ka-\(r["verb"] as String)"] + args).joined(separator: " "),
                                            issue: r["issue"], expires: Date(timeIntervalSince1970: r["expires_at"])))
                }
                for r in try Row.fetchAll(db, sql: "SELECT ref, gitea_id FROM outbox WHERE done = 1 AND gitea_id IS NOT NULL AND (ref GLOB 'status-[0-9]*' OR ref GLOB 'installable-*')") {
                    let ref: String = r["ref"], id: Int64 = r["gitea_id"]
                    if ref.hasPrefix("installable-") {
                        f.installableIssue[String(ref.dropFirst("installable-".count))] = Int(id)
                    } else if let run = Int64(ref.dropFirst("status-".count)) {
                        f.statusComments[run] = id
                    }
                }
                return f
            }
        }
    }
}
