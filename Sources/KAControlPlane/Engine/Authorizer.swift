import Foundation
import KernelAgent

/// Who may do what. A verb's allowlist in the config (or the `*` one) decides alone when it exists; without
/// one, write permission on the repo does (Gitea's collaborator-permission endpoint, cached for a few minutes).
/// The same rule admits a command, a `/ka-yes`, and the author of a block issue.
package actor Authorizer {
    let allow: [String: [String]]
    let api: GiteaAPI
    package nonisolated let botLogin: String
    let now: @Sendable () -> Date
    /// A permission change on the repo is seen after at most this many seconds.
    let cacheLifetime: Double = 300
    private var cache: [String: (permission: String, at: Date)] = [:]

    package init(allow: [String: [String]], api: GiteaAPI, botLogin: String, now: @escaping @Sendable () -> Date = { Date() }) {
        self.allow = allow; self.api = api; self.botLogin = botLogin; self.now = now
    }

    static let writers: Set<String> = ["write", "admin", "owner"]

    /// Throws when Gitea cannot say (the caller answers "could not check", never "not allowed").
    package func mayRun(_ login: String, verb: String) async throws -> Bool {
        if let list = allow[verb] ?? allow["*"] { return list.contains(login) }
        return Self.writers.contains(try await permission(of: login))
    }

    /// Whether `login` may run any verb at all: who may not gets the same answer to a guessed nonce as to a
    /// real one, so `/ka-yes <guess>` tells nothing about which plans exist.
    package func mayRunAny(_ login: String, verbs: [String]) async throws -> Bool {
        if allow.values.contains(where: { $0.contains(login) }) { return true }
        // a verb with no allowlist of its own (and no "*") falls back to the repo permission
        let unlisted = allow["*"] == nil && verbs.contains { allow[$0] == nil }
        return unlisted ? Self.writers.contains(try await permission(of: login)) : false
    }

    func permission(of login: String) async throws -> String {
        if let hit = cache[login], now().timeIntervalSince(hit.at) < cacheLifetime { return hit.permission }
        let permission: String
        do {
            permission = try await api.permission(of: login)
        } catch let e as GiteaError where e.status == 404 {
            permission = "none"   // Gitea: no such user
        }
        cache[login] = (permission, now())
        return permission
    }

    /// A block counts when the bot filed it, or when its author may run the verb the block halts.
    package func trustsBlock(author: String, kind: BlockKind) async throws -> Bool {
        if author == botLogin { return true }
        return try await mayRun(author, verb: Self.verbHalted(by: kind))
    }

    /// The verb whose allowlist decides who may file a block of this kind by hand.
    static func verbHalted(by kind: BlockKind) -> String {
        switch kind {
        case .patchFail, .campaignConflict: return "promote"
        case .buildFail, .bootstrapMissing, .signingFail: return "build"
        case .hostDrifted, .hostChanged, .regression: return "install"
        }
    }
}
