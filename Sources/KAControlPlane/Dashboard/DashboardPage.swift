import Foundation
import KernelAgent
import Mustache
import NIOConcurrencyHelpers

/// The dashboard as one HTML page, rendered on the server with Mustache (`{{…}}` HTML-escapes every value; the
/// template never uses the unescaped forms). A job timeline per host is inline SVG: the last 30 days, one bar per
/// job, coloured by outcome and as long as the job took, its id and steps in the bar's <title>. No JavaScript
/// but a meta refresh; read-only: no form, no button, nothing that changes state.
package enum DashboardPage {
    static let timelineWidth = 720.0

    struct View {
        struct Link { let text: String; let url: String? }
        struct Bar { let x: String; let width: String; let outcome: String; let title: String }
        struct Timeline { let count: Int; let bars: [Bar] }
        struct Host {
            let host: String; let state: String; let detail: String?; let note: String?; let lock: String; let suffix: String
            let running: String; let locked: String; let lastJob: Job?; let blocks: [Link]; let hasBlocks: Bool
            let reminder: String?; let next: String?; let timeline: Timeline
        }
        struct Job { let id: String; let verb: String; let state: String; let url: String?; let step: String? }
        struct BuildHost { let host: String; let arch: String; let state: String; let job: Job?; let blocks: [Link] }
        struct Consent { let nonce: String; let command: String; let issue: Link; let expires: String }
        struct Installable { let host: String; let version: String; let issue: Link?; let age: String }
        let repo: String; let generated: String; let refresh: Int
        let signingFail: [Link]; let signingOK: Bool; let prunePause: String?
        let consents: [Consent]; let installables: [Installable]; let nothingWaits: Bool
        let hosts: [Host]; let buildHosts: [BuildHost]; let other: Timeline?; let width: Int
    }

    static let template: MustacheTemplate = {
        do { return try MustacheTemplate(string: html) } catch {
            fatalError("the dashboard template does not parse: \(error)")   // a constant: a test renders it
        }
    }()

    package static func render(_ m: DashboardModel, now: Date, refresh: Int = 30) -> String {
        template.render(view(m, now: now, refresh: refresh))
    }

    static func view(_ m: DashboardModel, now: Date, refresh: Int) -> View {
        func link(_ l: DashboardModel.Link) -> View.Link { View.Link(text: l.text, url: l.url.flatMap(DashboardRenderer.safeURL)) }
        func job(_ j: DashboardModel.Job) -> View.Job {
            View.Job(id: j.id, verb: j.verb, state: j.state, url: j.statusComment.flatMap(DashboardRenderer.safeURL), step: j.currentStep)
        }
        let start = now.addingTimeInterval(-DashboardModel.timelineDays * 86_400)
        let span = DashboardModel.timelineDays * 86_400
        func bar(_ j: DashboardModel.Job) -> View.Bar {
            let from = j.startedAt ?? j.createdAt
            let to = j.finishedAt ?? now
            let x = max(0, from.timeIntervalSince(start)) / span * timelineWidth
            let w = max(2, to.timeIntervalSince(from) / span * timelineWidth)
            let secs = Int(max(0, to.timeIntervalSince(from)))
            let took = secs < 120 ? "\(secs) s" : secs < 7200 ? "\(secs / 60) min" : "\(secs / 3600) h"
            let title = (["\(j.id) · \(j.verb) \(j.arguments.joined(separator: " ")) · \(j.state) · \(took)"] + j.steps).joined(separator: "\n")
            return View.Bar(x: String(format: "%.1f", min(x, timelineWidth - 2)), width: String(format: "%.1f", w), outcome: j.state, title: title)
        }
        let byHost = Dictionary(grouping: m.jobs, by: { DashboardModel.subject(ofJob: $0.id) })
        let targets = Set(m.hosts.map(\.host))
        let others = m.jobs.filter { !targets.contains(DashboardModel.subject(ofJob: $0.id)) }
        let hosts = m.hosts.map { h -> View.Host in
            let bars = (byHost[h.host] ?? []).map(bar)
            return View.Host(host: h.host, state: h.state, detail: h.detail, note: h.note,
                             lock: h.lockB2sum.map { String($0.prefix(12)) } ?? "none", suffix: h.lockedSuffix.map { "-" + $0 } ?? "none",
                             running: h.runningVersion ?? "unknown", locked: h.lockedVersion ?? h.lockedSuffix.map { "-" + $0 } ?? "none",
                             lastJob: h.lastJob.map(job), blocks: h.blocks.map(link), hasBlocks: !h.blocks.isEmpty,
                             reminder: h.nextReminder.map(DashboardRenderer.time), next: h.nextCommand,
                             timeline: View.Timeline(count: bars.count, bars: bars))
        }
        return View(repo: m.repo, generated: DashboardRenderer.time(m.generatedAt), refresh: refresh,
                    signingFail: m.signingFail.map(link), signingOK: m.signingFail.isEmpty,
                    prunePause: m.prunePause.map { "paused by \($0.by) since \(DashboardRenderer.time($0.at))" },
                    consents: m.consents.map { View.Consent(nonce: $0.nonce, command: $0.command, issue: link($0.issue), expires: DashboardRenderer.time($0.expires)) },
                    installables: m.installables.map { View.Installable(host: $0.host, version: $0.version, issue: $0.issue.map(link),
                                                                         age: DashboardRenderer.age(since: $0.filedAt, now: now)) },
                    nothingWaits: m.consents.isEmpty && m.installables.isEmpty, hosts: hosts,
                    buildHosts: m.buildHosts.map { View.BuildHost(host: $0.host, arch: $0.arch, state: $0.state, job: $0.job.map(job), blocks: $0.blocks.map(link)) },
                    other: others.isEmpty ? nil : View.Timeline(count: others.count, bars: others.map(bar)), width: Int(timelineWidth))
    }

    // Partials are inlined: a link is `{{#url}}<a href="{{url}}">{{text}}</a>{{/url}}{{^url}}{{text}}{{/url}}`.
    static let html = """
    <!doctype html>
    <html lang="en"><head><meta charset="utf-8">
    \(StatusVerb.pageMark)
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <meta http-equiv="refresh" content="{{refresh}}">
    <title>kernel-agent · {{repo}}</title>
    <style>
    :root { color-scheme: light dark; --bg: #fafafa; --fg: #1d1d1f; --card: #fff; --line: #d8d8dc; --muted: #6e6e73;
            --ok: #2e7d32; --fail: #c62828; --run: #1565c0; --cancel: #8d6e63; --warn: #ef6c00; }
    @media (prefers-color-scheme: dark) {
      :root { --bg: #141416; --fg: #e8e8ea; --card: #1e1e21; --line: #3a3a3f; --muted: #a0a0a8;
              --ok: #66bb6a; --fail: #ef5350; --run: #64b5f6; --cancel: #bcaaa4; --warn: #ffa726; }
    }
    body { margin: 0; padding: 1rem; background: var(--bg); color: var(--fg); font: 15px/1.45 system-ui, sans-serif; }
    h1 { font-size: 1.3rem; margin: 0 0 .2rem; } h2 { font-size: 1.1rem; margin: 1.2rem 0 .5rem; } h3 { font-size: 1rem; margin: 0 0 .4rem; }
    .muted { color: var(--muted); }
    .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: .8rem; }
    @media (max-width: 600px) { .grid { grid-template-columns: 1fr; } body { padding: .5rem; } }
    .card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: .7rem .8rem; min-width: 0; }
    dl { display: grid; grid-template-columns: max-content 1fr; gap: .1rem .6rem; margin: 0 0 .4rem; }
    dt { color: var(--muted); } dd { margin: 0; overflow-wrap: anywhere; }
    code { font: 13px ui-monospace, monospace; background: color-mix(in srgb, var(--line) 40%, transparent); padding: 0 .25rem; border-radius: 4px; overflow-wrap: anywhere; }
    .state { font-size: .8rem; padding: .05rem .4rem; border-radius: 999px; border: 1px solid var(--line); }
    .s-locked, .s-installable, .s-installed, .s-verified, .s-up { color: var(--ok); }
    .s-pending, .s-asleep { color: var(--muted); } .s-building { color: var(--run); }
    .s-drifted, .s-error, .s-blocked { color: var(--fail); }
    svg.timeline { width: 100%; height: 28px; display: block; margin: .3rem 0; }
    svg.timeline .axis { fill: none; stroke: var(--line); }
    .bar { fill: var(--muted); } .o-succeeded { fill: var(--ok); } .o-failed { fill: var(--fail); }
    .o-running, .o-waiting, .o-queued { fill: var(--run); } .o-cancelled { fill: var(--cancel); } .o-interrupted { fill: var(--warn); }
    ul { margin: .2rem 0; padding-left: 1.2rem; }
    a { color: var(--run); }
    </style></head>
    <body>
    <header><h1>kernel-agent fleet</h1><p class="muted">{{repo}} · as of {{generated}} · refreshes every {{refresh}} s · read-only</p></header>

    <section id="global"><h2>Global</h2><ul>
    {{#signingOK}}<li>signing: no open <code>[ka:signing-fail]</code></li>{{/signingOK}}
    {{#signingFail}}<li class="s-blocked">signing blocked: {{#url}}<a href="{{url}}">{{text}}</a>{{/url}}{{^url}}{{text}}{{/url}}</li>{{/signingFail}}
    {{#prunePause}}<li>pruning: {{prunePause}} — <code>ka resume-prune</code></li>{{/prunePause}}{{^prunePause}}<li>pruning: running</li>{{/prunePause}}
    </ul></section>

    <section id="waiting"><h2>Waiting on a person</h2><ul>
    {{#nothingWaits}}<li>nothing</li>{{/nothingWaits}}
    {{#consents}}<li class="consent">consent for <code>{{command}}</code> on {{#issue}}{{#url}}<a href="{{url}}">{{text}}</a>{{/url}}{{^url}}{{text}}{{/url}}{{/issue}}: reply <code>/ka-yes {{nonce}}</code> before {{expires}}</li>{{/consents}}
    {{#installables}}<li class="installable"><code>[ka:installable]</code> {{#issue}}{{#url}}<a href="{{url}}">{{text}}</a>{{/url}}{{^url}}{{text}}{{/url}}{{/issue}}: {{host}} <code>{{version}}</code>, open {{age}}</li>{{/installables}}
    </ul></section>

    <section id="hosts"><h2>Target hosts</h2><div class="grid">
    {{#hosts}}<article class="card host" id="host-{{host}}" data-host="{{host}}">
    <h3>{{host}} <span class="state s-{{state}}">{{state}}</span></h3>
    <dl><dt>lock</dt><dd><code>{{lock}}</code> suffix <code>{{suffix}}</code></dd>
    <dt>kernel</dt><dd>running {{running}} · locked {{locked}}</dd>
    {{#detail}}<dt>detail</dt><dd>{{detail}}</dd>{{/detail}}
    <dt>last job</dt><dd>{{#lastJob}}{{#url}}<a href="{{url}}"><code>{{id}}</code></a>{{/url}}{{^url}}<code>{{id}}</code>{{/url}} {{verb}} <span class="state s-{{state}}">{{state}}</span>{{/lastJob}}{{^lastJob}}none{{/lastJob}}</dd>
    {{#hasBlocks}}<dt>blocks</dt><dd>{{#blocks}}<span class="block">{{#url}}<a href="{{url}}">{{text}}</a>{{/url}}{{^url}}{{text}}{{/url}}</span> {{/blocks}}</dd>{{/hasBlocks}}
    {{#reminder}}<dt>reminder</dt><dd>{{reminder}}</dd>{{/reminder}}
    {{#note}}<dt>note</dt><dd class="note">{{note}}</dd>{{/note}}
    </dl>
    {{#timeline}}<svg class="timeline" viewBox="0 0 {{width}} 24" preserveAspectRatio="none" role="img" data-jobs="{{count}}"><title>{{count}} job(s) of {{host}} in the last 30 days</title><rect class="axis" x="0" y="0.5" width="{{width}}" height="23"/>{{#bars}}<rect class="bar o-{{outcome}}" x="{{x}}" y="4" width="{{width}}" height="16"><title>{{title}}</title></rect>{{/bars}}</svg>{{/timeline}}
    <p class="next">next: {{#next}}<code>{{next}}</code>{{/next}}{{^next}}nothing to do{{/next}}</p>
    </article>
    {{/hosts}}</div></section>

    <section id="build-hosts"><h2>Build hosts</h2><div class="grid">
    {{#buildHosts}}<article class="card build-host" data-host="{{host}}"><h3>{{host}} <span class="state s-{{state}}">{{state}}</span></h3>
    <p class="muted">{{arch}}</p>
    {{#job}}<p>running {{#url}}<a href="{{url}}"><code>{{id}}</code></a>{{/url}}{{^url}}<code>{{id}}</code>{{/url}} {{verb}}{{#step}} — step: {{step}}{{/step}}</p>{{/job}}
    {{#blocks}}<p class="block">{{#url}}<a href="{{url}}">{{text}}</a>{{/url}}{{^url}}{{text}}{{/url}}</p>{{/blocks}}
    </article>{{/buildHosts}}</div></section>

    {{#other}}<section id="other-jobs"><h2>Other jobs (last 30 days)</h2>
    <svg class="timeline" viewBox="0 0 {{width}} 24" preserveAspectRatio="none" role="img" data-jobs="{{count}}"><title>{{count}} other job(s)</title><rect class="axis" x="0" y="0.5" width="{{width}}" height="23"/>{{#bars}}<rect class="bar o-{{outcome}}" x="{{x}}" y="4" width="{{width}}" height="16"><title>{{title}}</title></rect>{{/bars}}</svg>
    </section>{{/other}}
    </body></html>
    """
}

/// `GET /` and `GET /api/status` in `ka serve`: a request older than `maxAge` (5 s) after the last picture starts a
/// rebuild behind it (only requests do: an idle page costs nothing), so a request never waits for the tree scan but
/// the first; the page is rendered once per picture.
package final class DashboardPageCache: Sendable {
    let build: @Sendable () async throws -> DashboardModel
    let maxAge: TimeInterval
    let now: @Sendable () -> Date
    struct Cached { let model: DashboardModel; let page: String; let json: String; let at: Date }
    private let cached = NIOLockedValueBox<Cached?>(nil)
    private let refreshing = NIOLockedValueBox(false)

    package init(maxAge: TimeInterval = 5, now: @escaping @Sendable () -> Date = { Date() }, build: @escaping @Sendable () async throws -> DashboardModel) {
        self.build = build; self.maxAge = maxAge; self.now = now
    }

    /// The page and the status JSON; the first call builds them, later calls get the newest and refresh a stale one behind.
    package func current() async throws -> (page: String, json: String) {
        if let c = cached.withLockedValue({ $0 }) {
            if now().timeIntervalSince(c.at) >= maxAge { refreshBehind() }
            return (c.page, c.json)
        }
        let c = try await rebuild()
        return (c.page, c.json)
    }

    func refreshBehind() {
        let start = refreshing.withLockedValue { busy -> Bool in if busy { return false }; busy = true; return true }
        guard start else { return }
        Task { [self] in
            defer { refreshing.withLockedValue { $0 = false } }
            do { _ = try await rebuild() } catch {
                // the last picture stays; the next request tries again
            }
        }
    }

    @discardableResult
    func rebuild() async throws -> Cached {
        let model = try await build()
        let t = now()
        if let old = cached.withLockedValue({ $0 }), old.model.hosts == model.hosts, old.model.jobs == model.jobs,
           old.model.buildHosts == model.buildHosts, old.model.consents == model.consents, old.model.installables == model.installables,
           old.model.signingFail == model.signingFail, old.model.prunePause == model.prunePause, old.model.status == model.status,
           Int(t.timeIntervalSince(old.at)) < 60 {
            let kept = Cached(model: old.model, page: old.page, json: old.json, at: t)
            cached.withLockedValue { $0 = kept }
            return kept
        }
        let c = Cached(model: model, page: DashboardPage.render(model, now: t), json: try StatusVerb.json(model.status), at: t)
        cached.withLockedValue { $0 = c }
        return c
    }
}

extension DashboardPage {
    /// The page for `ka status --html FILE`: links go to Gitea when KA_GITEA_URL and KA_REPO say where; consents and
    /// issue links come from `ka serve`'s ledger when it ran with this state dir.
    package static func offline(ctx: VerbContext, env: [String: String], now: Date = Date()) async throws -> String {
        let repo = env["KA_REPO"]?.split(separator: "/").map(String.init) ?? []
        let links = DashboardLinks(giteaURL: repo.count == 2 ? env["KA_GITEA_URL"].flatMap(URL.init(string:)) : nil,
                                   owner: repo.count == 2 ? repo[0] : "-", repo: repo.count == 2 ? repo[1] : "-")
        let path = ctx.workspace.stateDir.appendingPathComponent("control.sqlite")
        let ledger = FS.exists(path) ? try Ledger(path: path) : nil
        let model = try await DashboardSource.build(ctx: ctx, ledger: ledger, links: links, now: now)
        return render(model, now: now, refresh: 0).replacingOccurrences(of: "<meta http-equiv=\"refresh\" content=\"0\">\n", with: "")
    }
}
