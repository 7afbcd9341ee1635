import Foundation
import KernelAgent

/// `ka doctor`'s Gitea checks: the URL answers, the token works, the bot is a repo admin, the webhook is registered
/// for the configured URL (Gitea never returns a hook's secret, so the secret is checked as configured), and the
/// `ka:*` labels match labels/labels.yaml (a dry run of `ka labels sync`).
package enum GiteaDoctor {
    /// The config as `ka serve` would load it, or why it cannot be.
    package static func checks(config: Result<ControlPlaneConfig, Error>, labels: URL, env: [String: String],
                              client: ((ControlPlaneConfig) -> any GiteaAPI & GiteaHooksAPI)? = nil) async -> [DoctorCheck] {
        let c: ControlPlaneConfig
        switch config {
        case let .success(v): c = v
        case let .failure(error):
            let e = error as? KAError
            return [.fail("gitea", "config", e?.message ?? "\(error)",
                          fix: e?.hint ?? "set gitea_url and repo in the config (or KA_GITEA_URL, KA_REPO) and export KA_GITEA_TOKEN")]
        }
        let api = client?(c) ?? DefaultGiteaClient(baseURL: c.giteaURL, owner: c.owner, repo: c.repo, token: c.token, maxAttempts: 2, timeout: 5)
        var out: [DoctorCheck] = []
        let user: GiteaUser
        do {
            user = try await api.currentUser()
            out.append(.pass("gitea", "URL", "\(c.giteaURL.absoluteString) answers"))
            out.append(.pass("gitea", "token", "authenticates as \(user.login)"))
        } catch let e as GiteaError where e.status == 401 || e.status == 403 {
            out.append(.pass("gitea", "URL", "\(c.giteaURL.absoluteString) answers"))
            out.append(.fail("gitea", "token", "Gitea refuses it (\(e.status): \(e.message))",
                             fix: "export KA_GITEA_TOKEN (or KA_GITEA_TOKEN_FILE) with the bot's token: scopes write:issue, read:repository, read:user"))
            return out
        } catch {
            out.append(.fail("gitea", "URL", "\(c.giteaURL.absoluteString) does not answer: \(error)",
                             fix: "check gitea_url (KA_GITEA_URL) and that Gitea runs and is reachable from here"))
            return out
        }
        if let bot = c.botLogin, bot != user.login {
            out.append(.fail("gitea", "bot login", "bot_login is \(bot), but the token is \(user.login)'s",
                             fix: "set bot_login to \(user.login), or use \(bot)'s token"))
        }
        do {
            let p = try await api.permission(of: user.login)
            if ["admin", "owner"].contains(p) {
                out.append(.pass("gitea", "repo admin", "\(user.login) is \(p) of \(c.owner)/\(c.repo)"))
            } else {
                out.append(.fail("gitea", "repo admin", "\(user.login) has \(p) on \(c.owner)/\(c.repo); the bot needs admin (permission checks, webhooks)",
                                 fix: "make \(user.login) an admin collaborator of \(c.owner)/\(c.repo)"))
            }
        } catch {
            out.append(.fail("gitea", "repo admin", "cannot read \(user.login)'s permission: \(error)",
                             fix: "make \(user.login) an admin collaborator of \(c.owner)/\(c.repo)"))
        }
        out.append(await webhook(api, c))
        out.append(await labelsInSync(api, file: labels))
        return out
    }

    static func webhook(_ api: any GiteaHooksAPI, _ c: ControlPlaneConfig) async -> DoctorCheck {
        let setUp = "in the repo's settings → Webhooks add a Gitea hook: URL \(c.webhookURL ?? "<webhook_url>"), content type json, "
            + "secret = KA_WEBHOOK_SECRET, events issues_only, issue_comment, issue_label"
        guard !c.webhookSecrets.isEmpty else {
            return .fail("gitea", "webhook", "KA_WEBHOOK_SECRET is not set: ka serve would refuse every delivery", fix: "export KA_WEBHOOK_SECRET, the secret the hook is registered with")
        }
        guard let url = c.webhookURL else {
            return .fail("gitea", "webhook", "webhook_url is not configured, so the hook cannot be checked",
                         fix: "set webhook_url (KA_WEBHOOK_URL) to the URL Gitea posts to, e.g. http://noether:\(c.listenPort)/webhook")
        }
        let hooks: [GiteaHook]
        do { hooks = try await api.listHooks() } catch {
            return .fail("gitea", "webhook", "cannot list the repo's hooks: \(error)", fix: "the bot needs repo admin to read them; then: " + setUp)
        }
        guard let hook = hooks.first(where: { $0.config?["url"] == url }) else {
            let others = hooks.compactMap { $0.config?["url"] }
            return .fail("gitea", "webhook", "no hook delivers to \(url)" + (others.isEmpty ? "" : " (hooks go to \(others.joined(separator: ", ")))"), fix: setUp)
        }
        guard hook.active else { return .fail("gitea", "webhook", "the hook to \(url) (id \(hook.id)) is inactive", fix: "activate it in the repo's webhook settings") }
        let events = Set(hook.events ?? [])
        let comments = events.contains("issue_comment") || events.contains("issues")
        guard comments else {
            return .fail("gitea", "webhook", "the hook to \(url) (id \(hook.id)) does not send issue comments (events: \(events.sorted().joined(separator: ", ")))",
                         fix: "enable issue_comment (and issues_only, issue_label) on hook \(hook.id)")
        }
        return .pass("gitea", "webhook", "hook \(hook.id) delivers issue comments to \(url); secret configured (Gitea never returns it, ka serve checks every delivery's signature)")
    }

    static func labelsInSync(_ api: any GiteaAPI, file: URL) async -> DoctorCheck {
        do {
            let specs = try LabelSpec.load(file, display: "labels/labels.yaml")
            let actions = LabelSync.plan(desired: specs, current: try await api.listLabels())
            guard actions.isEmpty else {
                return .fail("gitea", "labels", "\(actions.count) change(s) pending: \(actions.prefix(3).map(\.description).joined(separator: "; "))\(actions.count > 3 ? "; …" : "")",
                             fix: "ka labels sync --confirm")
            }
            return .pass("gitea", "labels", "all \(specs.count) ka:* labels exist as labels/labels.yaml says")
        } catch {
            return .fail("gitea", "labels", "\(error)", fix: "ka labels sync shows what differs")
        }
    }
}
