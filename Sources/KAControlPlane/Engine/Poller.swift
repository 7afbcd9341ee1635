import Foundation
import KernelAgent

/// The backstop: Gitea sends each webhook once and never retries. One request per idle cycle: the issue list
/// `since` the cursor (a new comment bumps its issue's updated_at); only when something moved does it read
/// the repo comments since the cursor. Timestamps have second precision and `since` is inclusive, so the
/// cursor remembers which (issue, updated_at) pairs it has already seen at its second.
package final class Poller: Sendable {
    let engine: Engine
    let api: GiteaAPI
    package init(engine: Engine, api: GiteaAPI) { self.engine = engine; self.api = api }

    struct Cursor: Codable { var since: String; var seen: [String] }

    /// Returns how many new events it stored.
    @discardableResult
    package func pollOnce() async throws -> Int {
        let ledger = engine.ledger
        guard let raw = try ledger.cursor("poll"), let cur = try? JSONDecoder().decode(Cursor.self, from: Data(raw.utf8)),
              let since = GiteaTime.parse(cur.since) else {
            // First start: begin now. Commands posted before the first start are not picked up.
            let c = Cursor(since: GiteaTime.format(engine.now()), seen: [])
            try ledger.setCursor("poll", String(decoding: try JSONEncoder().encode(c), as: UTF8.self))
            return 0
        }
        let issues = try await api.listIssues(state: "all", since: since)
        let seen = Set(cur.seen)
        let moved = issues.filter { !seen.contains("\($0.id)@\($0.updated_at)") }
        guard !moved.isEmpty else { return 0 }
        var stored = 0
        for i in moved {
            if let created = GiteaTime.parse(i.created_at), created >= since, try engine.ingest(issue: i) { stored += 1 }
            try engine.trackReminder(i)
            engine.issueSeen(i)
        }
        let comments = try await api.listRepoComments(since: since)
        for c in comments where c.pull_request_url?.isEmpty ?? true {
            guard let n = c.issueNumber else { continue }
            let known = try ledger.isKnown("comment:\(c.id)")
            if c.created_at == c.updated_at || !known {
                if let created = GiteaTime.parse(c.created_at), created >= since, try engine.ingest(comment: c, issue: n) { stored += 1 }
            } else {
                try engine.noteEdit(comment: c, issue: n)
            }
        }
        // advance: the newest updated_at, and every pair seen at that second
        let newest = issues.compactMap { GiteaTime.parse($0.updated_at) }.max() ?? since
        let atNewest = issues.filter { GiteaTime.parse($0.updated_at) == newest }.map { "\($0.id)@\($0.updated_at)" }
        let next = Cursor(since: GiteaTime.format(newest), seen: newest == since ? Array(seen.union(atNewest)) : atNewest)
        try ledger.setCursor("poll", String(decoding: try JSONEncoder().encode(next), as: UTF8.self))
        return stored
    }
}
