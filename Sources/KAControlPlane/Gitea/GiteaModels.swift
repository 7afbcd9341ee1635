import Foundation

// The subset of Gitea 1.26.3's API objects the bot reads (modules/structs). Unknown fields are ignored.

public struct GiteaUser: Codable, Sendable, Equatable {
    public let id: Int64
    public let login: String
    public init(id: Int64, login: String) { self.id = id; self.login = login }
}

public struct GiteaLabel: Codable, Sendable, Equatable {
    public let id: Int64
    public var name: String
    public var color: String
    public var description: String?
    public init(id: Int64, name: String, color: String, description: String?) {
        self.id = id; self.name = name; self.color = color; self.description = description
    }
}

public struct GiteaIssue: Codable, Sendable, Equatable {
    public let id: Int64
    public let number: Int
    public var title: String
    public var body: String?
    public var state: String
    public let user: GiteaUser
    public var labels: [GiteaLabel]?
    public let created_at: String
    public var updated_at: String
    public var pull_request: PullRequestMeta?
    public struct PullRequestMeta: Codable, Sendable, Equatable { public let merged: Bool? }
    public var isPull: Bool { pull_request != nil }
}

public struct GiteaComment: Codable, Sendable, Equatable {
    public let id: Int64
    public var body: String
    public let user: GiteaUser
    public let issue_url: String?
    public let pull_request_url: String?
    public let created_at: String
    public var updated_at: String
    /// The issue number, from `issue_url` (…/issues/<n>) — the comments list carries no number field.
    public var issueNumber: Int? {
        guard let u = issue_url, let last = u.split(separator: "/").last else { return nil }
        return Int(last)
    }
}

public struct GiteaRepository: Codable, Sendable, Equatable {
    public let id: Int64
    public let full_name: String
}

/// A repo webhook (`Hook`). Gitea never returns its secret: `config` holds `url` and `content_type`.
public struct GiteaHook: Codable, Sendable, Equatable {
    public let id: Int64
    public let type: String
    public let active: Bool
    public let events: [String]?
    public let config: [String: String]?
    public init(id: Int64, type: String, active: Bool, events: [String]?, config: [String: String]?) {
        self.id = id; self.type = type; self.active = active; self.events = events; self.config = config
    }
}

public struct GiteaPermission: Codable, Sendable, Equatable {
    public let permission: String
}

public struct GiteaReaction: Codable, Sendable, Equatable {
    public let content: String
    public let user: GiteaUser?
}

/// `issue_comment` webhook payload (IssueCommentPayload).
public struct IssueCommentPayload: Codable, Sendable {
    public let action: String
    public let issue: GiteaIssue
    public let comment: GiteaComment
    public let repository: GiteaRepository
    public let sender: GiteaUser
    public let is_pull: Bool?
}

/// `issues` webhook payload (IssuePayload).
public struct IssuePayload: Codable, Sendable {
    public let action: String
    public let number: Int
    public let issue: GiteaIssue
    public let repository: GiteaRepository
    public let sender: GiteaUser
}

/// Gitea writes RFC 3339 with second precision and a zone; since= wants the same. FoundationEssentials' ISO 8601
/// style, not ISO8601DateFormatter: a formatter per call loaded ICU and was 4% of ka serve's CPU (bench-replies).
public enum GiteaTime {
    private static let forms = [Date.ISO8601FormatStyle(), Date.ISO8601FormatStyle(includingFractionalSeconds: true)]

    public static func parse(_ s: String) -> Date? {
        for style in forms {
            // Not a date in this form: the next form is tried, and nil means "not an RFC 3339 time".
            if let d = try? style.parse(s) { return d }
        }
        return nil
    }

    public static func format(_ d: Date) -> String { Date.ISO8601FormatStyle().format(d) }
}
