import Foundation
import KernelAgent

/// The `[ka:dashboard]` issue's body, in Gitea's Markdown. Every value from the tree or the tracker is escaped
/// (a host note cannot add a link, a heading or HTML); commands are code spans, text to copy, never triggers.
/// Nothing in it depends on the clock but coarse ages, so an unchanged fleet renders an unchanged body.
package enum DashboardRenderer {
    /// The hidden marker the bot finds its dashboard by (with its own login as the author), never by title.
    package static let marker = "<!-- ka:dashboard -->"
    package static let title = "[ka:dashboard] kernel-agent fleet"
    /// Gitea keeps longer bodies, but GitHub's 65,536 broke Renovate's dashboard (renovatebot/renovate#15850):
    /// the body stays under it, folding the per-host details into a table past it.
    package static let maxBody = 65_536

    package static func body(_ m: DashboardModel, now: Date) -> String {
        let full = render(m, now: now, detailed: true)
        if full.count < maxBody { return full }
        let compact = render(m, now: now, detailed: false)
        if compact.count < maxBody { return compact }
        // still too long (hundreds of hosts): cut at a line, and say so
        let note = "\n\n…cut at \(maxBody) characters; the web page (`ka serve`, `GET /`) shows everything.\n"
        var cut = String(compact.prefix(maxBody - note.count - 1))
        if let nl = cut.lastIndex(of: "\n") { cut = String(cut[..<nl]) }
        return cut + note
    }

    static func render(_ m: DashboardModel, now: Date, detailed: Bool) -> String {
        var out = [marker, "## kernel-agent fleet dashboard", "",
                   "Kept current by kernel-agent (at most one edit per 30 s). Edits to this issue run nothing and are overwritten "
                   + "at the next update. The commands below are text to copy, never triggers.", ""]
        out += ["### Global"]
        if m.signingFail.isEmpty {
            out.append("- signing: ✅ no open `[ka:signing-fail]`")
        } else {
            out.append("- signing: ⛔ " + m.signingFail.map(link).joined(separator: ", ") + " — nothing is signed until it is closed")
        }
        if let p = m.prunePause {
            out.append("- pruning: ⏸ paused by \(md(p.by)) since \(time(p.at)) — resume with `ka resume-prune`")
        } else {
            out.append("- pruning: running")
        }
        out.append("")

        out.append("### Waiting on a person")
        if m.consents.isEmpty && m.installables.isEmpty { out.append("- nothing") }
        for c in m.consents {
            out.append("- consent for \(code(c.command)) on \(link(c.issue)): reply \(code("/ka-yes \(c.nonce)")) before \(time(c.expires))")
        }
        for i in m.installables {
            let issue = i.issue.map(link) ?? "(issue not filed yet)"
            out.append("- `[ka:installable]` \(issue): \(md(i.host)) \(code(i.version)), open \(age(since: i.filedAt, now: now))")
        }
        out.append("")

        out.append("### Target hosts (\(m.hosts.count))")
        if detailed {
            for h in m.hosts {
                out.append("#### \(md(h.host)) · \(md(h.state))")
                var lock = "- lock " + (h.lockB2sum.map { code(String($0.prefix(12))) } ?? "none")
                lock += " · suffix " + (h.lockedSuffix.map { code("-" + $0) } ?? "none")
                lock += " · running " + (h.runningVersion.map(code) ?? "unknown") + " vs locked " + (h.lockedVersion.map(code) ?? (h.lockedSuffix.map { code("-" + $0) } ?? "none"))
                out.append(lock)
                if let d = h.detail { out.append("- \(md(d))") }
                out.append("- last job: " + (h.lastJob.map(jobText) ?? "none"))
                if !h.blocks.isEmpty { out.append("- blocks: " + h.blocks.map(link).joined(separator: ", ")) }
                if let r = h.nextReminder { out.append("- next reminder: \(time(r))") }
                if let n = h.note { out.append("- note: \(md(n))") }
                out.append("- next: " + (h.nextCommand.map(code) ?? "nothing to do"))
                out.append("")
            }
        } else {
            out.append("Details folded: the full list did not fit in one issue. The web page (`ka serve`, `GET /`) shows them.")
            out.append("")
            out.append("| host | state | lock | last job | blocks | next |")
            out.append("|---|---|---|---|---|---|")
            for h in m.hosts {
                let job = h.lastJob.map { "\(mark($0.state)) \($0.verb)" } ?? "–"
                let blocks = h.blocks.isEmpty ? "–" : h.blocks.map(link).joined(separator: " ")
                out.append("| \(cell(h.host)) | \(cell(h.state)) | \(h.lockB2sum.map { String($0.prefix(8)) } ?? "–") | \(job) | \(blocks) | \(h.nextCommand.map { cellCode($0) } ?? "–") |")
            }
            out.append("")
        }

        out.append("### Build hosts")
        if m.buildHosts.isEmpty { out.append("- none") }
        for b in m.buildHosts {
            var line = "- \(md(b.host)) (\(md(b.arch))): \(b.state)"
            if let j = b.job { line += " — running \(jobText(j))" + (j.currentStep.map { ", step: \(md($0))" } ?? "") }
            if !b.blocks.isEmpty { line += " — " + b.blocks.map(link).joined(separator: ", ") }
            out.append(line)
        }
        out.append("")
        return out.joined(separator: "\n")
    }

    static func jobText(_ j: DashboardModel.Job) -> String {
        let id = j.statusComment.map { "[\(md(j.id))](\($0))" } ?? code(j.id)
        return "\(id) \(md(j.verb)) \(mark(j.state)) \(j.state)"
    }

    static func mark(_ state: String) -> String {
        switch state {
        case "succeeded": return "✅"
        case "failed": return "❌"
        case "cancelled": return "🛑"
        case "interrupted": return "⏸"
        case "running", "waiting", "queued": return "⏳"
        default: return "·"
        }
    }

    static func link(_ l: DashboardModel.Link) -> String {
        guard let url = l.url, let safe = safeURL(url) else { return md(l.text) }
        return "[\(md(l.text))](\(safe))"
    }

    /// Only http(s) URLs without spaces or parentheses go into a link; anything else is shown as text.
    static func safeURL(_ url: String) -> String? {
        guard url.hasPrefix("http://") || url.hasPrefix("https://"),
              !url.contains(where: { $0.isWhitespace || "()<>\"'`".contains($0) }) else { return nil }
        return url
    }

    /// Markdown-inert text on one line (`MarkdownText.inline`: `@` included, so a host note mentions no one).
    package static func md(_ s: String) -> String { MarkdownText.inline(s) }

    /// A code span that holds any text (`MarkdownText.code`).
    package static func code(_ s: String) -> String { MarkdownText.code(s) }

    static func cell(_ s: String) -> String { md(s) }
    /// In a table a `|` ends the cell even inside a code span: GFM reads `\|` as a literal one there.
    static func cellCode(_ s: String) -> String { code(s).replacingOccurrences(of: "|", with: "\\|") }

    static func time(_ d: Date) -> String {
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = TimeZone(identifier: "UTC") ?? cal.timeZone
        let c = cal.dateComponents([.year, .month, .day, .hour, .minute], from: d)
        func two(_ n: Int?) -> String { let v = n ?? 0; return v < 10 ? "0\(v)" : "\(v)" }
        return "\(c.year ?? 1970)-\(two(c.month))-\(two(c.day)) \(two(c.hour)):\(two(c.minute)) UTC"
    }

    /// Hours under two days, else days: an age changes the body at most once an hour.
    static func age(since: Date, now: Date) -> String {
        let hours = max(0, Int(now.timeIntervalSince(since) / 3600))
        return hours < 48 ? "\(hours) h" : "\(hours / 24) d"
    }
}
