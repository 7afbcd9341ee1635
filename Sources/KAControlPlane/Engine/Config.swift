import Foundation
import KernelAgent

/// `ka serve` settings: one YAML file (`--config`), every key overridable from the environment.
/// Secrets come only from the environment (or a file named by `*_FILE`), never from the YAML.
package struct ControlPlaneConfig: Sendable {
    package var giteaURL: URL
    package var owner: String
    package var repo: String
    package var botLogin: String?
    package var listenHost = "127.0.0.1"
    package var listenPort = 8087
    package var pollInterval: Double = 60
    package var stateDir: URL
    package var root: URL
    package var consentTTL: Double = 24 * 3600
    package var maxParallelRuns = 2
    package var reminderCap = 10
    /// Commands read from one comment; the rest get one reply saying what was ignored.
    package var maxCommandsPerComment = 10
    /// Replies to one user per window; nil turns the limit off.
    package var replyRateLimit: ReplyRateLimit? = ReplyRateLimit(count: 30, window: 600)
    /// How long a verb may plan before the bot gives up on it and says so (seconds).
    package var planTimeout: Double = 60
    /// Writes to Gitea sent at once, each on a different issue (on one issue they go one at a time, in order).
    package var outboxParallel = Self.defaultOutboxParallel
    package static let defaultOutboxParallel = 4
    /// Whether `ka serve` keeps the `[ka:dashboard]` issue current (the tests that count issues turn it off).
    package var dashboardIssue = true
    package static let maxOutboxParallel = 64
    /// verb → logins allowed; "*" applies to every verb. Empty: users with write permission on the repo.
    package var allow: [String: [String]] = [:]
    package var token: String
    package var webhookSecrets: [[UInt8]]
    /// The URL Gitea delivers webhooks to (this server as Gitea reaches it); `ka doctor` checks a hook has it.
    package var webhookURL: String?

    package static let keys: Set<String> = ["gitea_url", "repo", "bot_login", "listen", "poll_interval", "state_dir", "root",
                                           "consent_ttl", "max_parallel_runs", "reminder_cap", "allow",
                                           "max_commands_per_comment", "reply_rate_limit", "plan_timeout", "outbox_parallel", "webhook_url"]

    package static func load(file: String?, env: [String: String] = ProcessInfo.processInfo.environment) throws -> ControlPlaneConfig {
        var values: [String: String] = [:]
        var places: [String: String] = [:]   // key → where its value was set ("file:line:column" or the env var)
        var allow: [String: [String]] = [:]
        if let file {
            guard let data = FileManager.default.contents(atPath: file), let text = String(data: data, encoding: .utf8) else {
                throw KAError.refusal("--config \(file)", "cannot read the config file")
            }
            let doc = try YAMLValue.parse(text, file: file)
            // The same file may hold the agent's other sections (ssh, hosts, …): AgentConfig reads and checks those.
            let m = try doc.mapping(allowed: keys.union(AgentConfig.ownSections).union(AgentConfig.otherSections))
            for k in m.keys where keys.contains(k) && k != "allow" { values[k] = try m[k]?.string(); places[k] = m[k].map { "\($0.location)" } }
            if let a = m["allow"] {
                guard case .mapping = a.node else { throw a.error("expected verb → [logins]") }
                let am = try a.mapping(allowed: Set(Verbs.all.map { $0.verbName } + ["*", "yes", "no", "help", "snooze"]))
                for k in am.keys { allow[k] = try am[k]?.stringList() ?? [] }
            }
        }
        let envMap = ["KA_GITEA_URL": "gitea_url", "KA_REPO": "repo", "KA_BOT_LOGIN": "bot_login", "KA_LISTEN": "listen",
                      "KA_POLL_INTERVAL": "poll_interval", "KA_STATE_DIR": "state_dir", "KA_ROOT": "root",
                      "KA_MAX_COMMANDS_PER_COMMENT": "max_commands_per_comment", "KA_REPLY_RATE_LIMIT": "reply_rate_limit",
                      "KA_PLAN_TIMEOUT": "plan_timeout", "KA_OUTBOX_PARALLEL": "outbox_parallel", "KA_WEBHOOK_URL": "webhook_url",
                      "KA_CONSENT_TTL": "consent_ttl", "KA_MAX_PARALLEL_RUNS": "max_parallel_runs", "KA_REMINDER_CAP": "reminder_cap"]
        for (e, k) in envMap { if let v = env[e] { values[k] = v; places[k] = e } }

        func need(_ key: String, _ envName: String) throws -> String {
            guard let v = values[key], !v.isEmpty else {
                throw KAError.refusal("config", "missing \(key)", hint: "set \(key) in the config file or \(envName) in the environment")
            }
            return v
        }
        guard let url = URL(string: try need("gitea_url", "KA_GITEA_URL")), url.scheme == "http" || url.scheme == "https" else {
            throw KAError.refusal("config", "gitea_url is not an http(s) URL")
        }
        let repoParts = try need("repo", "KA_REPO").split(separator: "/")
        guard repoParts.count == 2 else { throw KAError.refusal("config", "repo must be owner/name (e.g. marfrit/kernel-agent)") }
        guard let token = Self.secret("KA_GITEA_TOKEN", env) else {
            throw KAError.refusal("config", "missing KA_GITEA_TOKEN", hint: "export KA_GITEA_TOKEN (or KA_GITEA_TOKEN_FILE) with a token that has write:issue, read:repository, read:user")
        }
        let secrets = ["KA_WEBHOOK_SECRET", "KA_WEBHOOK_SECRET_OLD"].compactMap { Self.secret($0, env) }.map { Array($0.utf8) }
        let cwd = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
        let root = values["root"].map { URL(fileURLWithPath: $0, relativeTo: cwd).standardizedFileURL } ?? cwd
        var c = ControlPlaneConfig(giteaURL: url, owner: String(repoParts[0]), repo: String(repoParts[1]), botLogin: values["bot_login"],
                                   stateDir: values["state_dir"].map { URL(fileURLWithPath: $0, relativeTo: cwd).standardizedFileURL }
                                       ?? root.appendingPathComponent(".ka"),
                                   root: root, allow: allow, token: token, webhookSecrets: secrets)
        if let w = values["webhook_url"] {
            guard let u = URL(string: w), u.scheme == "http" || u.scheme == "https", u.host != nil else {
                throw KAError.refusal("config", "webhook_url is not an http(s) URL, got '\(w)'", hint: "the URL Gitea posts to, e.g. http://noether:8087/webhook")
            }
            c.webhookURL = w
        }
        if let l = values["listen"] {
            guard let colon = l.lastIndex(of: ":"), let port = Int(l[l.index(after: colon)...]), (1...65535).contains(port) else {
                throw KAError.refusal("config", "listen must be host:port, got '\(l)'")
            }
            c.listenHost = String(l[..<colon]); c.listenPort = port
        }
        if let p = values["poll_interval"] {
            guard let s = Double(p), s >= 1 else { throw KAError.refusal("config", "poll_interval must be seconds ≥ 1, got '\(p)'") }
            c.pollInterval = s
        }
        if let t = values["consent_ttl"] {
            guard let s = KernelAgent.Duration.parseSeconds(t) else { throw KAError.refusal("config", "consent_ttl: bad duration '\(t)'") }
            c.consentTTL = Double(s)
        }
        if let m = values["max_parallel_runs"] {
            guard let n = Int(m), n >= 1 else { throw KAError.refusal("config", "max_parallel_runs must be ≥ 1") }
            c.maxParallelRuns = n
        }
        if let r = values["reminder_cap"] {
            guard let n = Int(r), n >= 1 else { throw KAError.refusal("config", "reminder_cap must be ≥ 1") }
            c.reminderCap = n
        }
        if let m = values["max_commands_per_comment"] {
            guard let n = Int(m), (1...1000).contains(n) else { throw KAError.refusal("config", "max_commands_per_comment must be 1…1000, got '\(m)'") }
            c.maxCommandsPerComment = n
        }
        if let r = values["reply_rate_limit"] {
            c.replyRateLimit = try ReplyRateLimit.parse(r)
        }
        if let t = values["plan_timeout"] {
            guard let s = Self.seconds(t), s >= 1 else {
                throw KAError.refusal("config", "plan_timeout must be a duration ≥ 1 s (e.g. 60s, 2m), got '\(t)'")
            }
            c.planTimeout = s
        }
        if let p = values["outbox_parallel"] {
            guard let n = Int(p.trimmingCharacters(in: .whitespaces)), (1...Self.maxOutboxParallel).contains(n) else {
                throw KAError.refusal(places["outbox_parallel"] ?? "config", "outbox_parallel must be a whole number from 1 to \(Self.maxOutboxParallel), got '\(p)'",
                                      hint: "set outbox_parallel (or KA_OUTBOX_PARALLEL) to how many issues may get a write at once; the default is \(Self.defaultOutboxParallel)")
            }
            c.outboxParallel = n
        }
        return c
    }

    /// "90", "90s", "2m", "1h" → seconds; nil when unreadable or above a day.
    static func seconds(_ text: String) -> Double? {
        let t = text.trimmingCharacters(in: .whitespaces)
        let unit: Double
        var digits = Substring(t)
        switch t.last {
        case "s": unit = 1; digits = digits.dropLast()
        case "m": unit = 60; digits = digits.dropLast()
        case "h": unit = 3600; digits = digits.dropLast()
        default: unit = 1
        }
        guard let n = Double(digits), n.isFinite, n >= 0, n * unit <= 86400 else { return nil }
        return n * unit
    }

    static func secret(_ name: String, _ env: [String: String]) -> String? {
        if let v = env[name], !v.isEmpty { return v }
        if let f = env[name + "_FILE"], let d = FileManager.default.contents(atPath: f) {
            let s = String(decoding: d, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            return s.isEmpty ? nil : s
        }
        return nil
    }
}

/// At most `count` replies to one user in any `window` seconds (config `reply_rate_limit: 30/10m`, or `off`).
package struct ReplyRateLimit: Sendable, Equatable {
    package var count: Int
    package var window: Double

    package init(count: Int, window: Double) { self.count = count; self.window = window }

    static func parse(_ text: String) throws -> ReplyRateLimit? {
        if ["off", "none"].contains(text.lowercased()) { return nil }
        let parts = text.split(separator: "/", maxSplits: 1)
        guard parts.count == 2, let n = Int(parts[0].trimmingCharacters(in: .whitespaces)), (1...100_000).contains(n),
              let w = ControlPlaneConfig.seconds(String(parts[1])), w >= 1 else {
            throw KAError.refusal("config", "reply_rate_limit must be <count>/<window> (e.g. 30/10m) or off, got '\(text)'")
        }
        return ReplyRateLimit(count: n, window: w)
    }
}
