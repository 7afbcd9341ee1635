import Foundation

// The subset of Gitea 1.26.3's API objects the bot reads (modules/structs). Unknown fields are ignored.

package struct GiteaUser: Codable, Sendable, Equatable {
    package let id: Int64
    package let login: String
    package init(id: Int64, login: String) { self.id = id; self.login = login }
}

package struct GiteaLabel: Codable, Sendable, Equatable {
    package let id: Int64
    package var name: String
    package var color: String
    package var description: String?
    package init(id: Int64, name: String, color: String, description: String?) {
        self.id = id; self.name = name; self.color = color; self.description = description
    }
}

package struct GiteaIssue: Codable, Sendable, Equatable {
    package let id: Int64
    package let number: Int
    package var title: String
    package var body: String?
    package var state: String
    package let user: GiteaUser
    package var labels: [GiteaLabel]?
    package let created_at: String
    package var updated_at: String
    package var pull_request: PullRequestMeta?
    package struct PullRequestMeta: Codable, Sendable, Equatable { package let merged: Bool? }
    package var isPull: Bool { pull_request != nil }
}

package struct GiteaComment: Codable, Sendable, Equatable {
    package let id: Int64
    package var body: String
    package let user: GiteaUser
    package let issue_url: String?
    package let pull_request_url: String?
    package let created_at: String
    package var updated_at: String
    /// The issue number, from `issue_url` (…/issues/<n>) — the comments list carries no number field.
    package var issueNumber: Int? {
        guard let u = issue_url, let last = u.split(separator: "/").last else { return nil }
        return Int(last)
    }
}

package struct GiteaRepository: Codable, Sendable, Equatable {
    package let id: Int64
    package let full_name: String
}

/// A repo webhook (`Hook`). Gitea never returns its secret: `config` holds `url` and `content_type`.
package struct GiteaHook: Codable, Sendable, Equatable {
    package let id: Int64
    package let type: String
    package let active: Bool
    package let events: [String]?
    package let config: [String: String]?
    package init(id: Int64, type: String, active: Bool, events: [String]?, config: [String: String]?) {
        self.id = id; self.type = type; self.active = active; self.events = events; self.config = config
    }
}

package struct GiteaPermission: Codable, Sendable, Equatable {
    package let permission: String
}

package struct GiteaReaction: Codable, Sendable, Equatable {
    package let content: String
    package let user: GiteaUser?
}

/// `issue_comment` webhook payload (IssueCommentPayload).
package struct IssueCommentPayload: Codable, Sendable {
    package let action: String
    package let issue: GiteaIssue
    package let comment: GiteaComment
    package let repository: GiteaRepository
    package let sender: GiteaUser
    package let is_pull: Bool?
}

/// `issues` webhook payload (IssuePayload).
package struct IssuePayload: Codable, Sendable {
    package let action: String
    package let number: Int
    package let issue: GiteaIssue
    package let repository: GiteaRepository
    package let sender: GiteaUser
}

/// Gitea writes RFC 3339 with second precision and a zone; since= wants the same. FoundationEssentials' ISO 8601
/// style, not ISO8601DateFormatter: a formatter per call loaded ICU and was 4% of ka serve's CPU (bench-replies).
package enum GiteaTime {
    private static let forms = [Date.ISO8601FormatStyle(), Date.ISO8601FormatStyle(includingFractionalSeconds: true)]

    package static func parse(_ s: String) -> Date? {
        for style in forms {
            // Not a date in this form: the next form is tried, and nil means "not an RFC 3339 time".
            if let d = try? style.parse(s) { return d }
        }
        return nil
    }

    package static func format(_ d: Date) -> String { Date.ISO8601FormatStyle().format(d) }
}
