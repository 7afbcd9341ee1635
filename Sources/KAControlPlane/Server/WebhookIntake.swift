import Foundation

/// The webhook's logic, apart from the HTTP framework: verify, read, filter, store, acknowledge.
/// Storing is a group commit (`IngestBatcher`); the work happens in `ControlLoop`, woken by `onAccepted`.
package struct WebhookIntake: Sendable {
    package static let maxBody = 1 << 20

    let verifier: WebhookVerifier
    let engine: Engine
    let metrics: Metrics
    let onAccepted: @Sendable () -> Void
    let batcher: IngestBatcher

    package init(verifier: WebhookVerifier, engine: Engine, metrics: Metrics, onAccepted: @escaping @Sendable () -> Void) {
        self.verifier = verifier; self.engine = engine; self.metrics = metrics; self.onAccepted = onAccepted
        batcher = IngestBatcher(ledger: engine.ledger)
    }

    /// Stores the delivery id and the event (if any) in the next group commit.
    func store(_ delivery: String?, _ event: Ledger.Event?) async -> (status: Int, text: String)? {
        switch await batcher.submit(delivery: delivery, event: event) {
        case .duplicateDelivery:
            metrics.inc("webhook_duplicate_total")
            return (200, "duplicate delivery")
        case let .failed(e):
            metrics.inc("webhook_errors_total")
            return (500, "could not store the event: \(e)")
        case let .stored(new):
            if new { onAccepted() }
            return nil
        }
    }

    /// What the bot reads from an issue_comment delivery.
    package struct CommentDelivery: Sendable, Equatable {
        package let action: String
        package let repository: String
        package let issue: Int
        package let isPull: Bool
        package let comment: GiteaComment
    }

    /// Reads an issue_comment body with JSONDecoder (the fuzz target FuzzWebhook calls this too).
    package static func readComment(_ body: [UInt8]) throws(PayloadError) -> CommentDelivery {
        let data = Data(body)
        let p: IssueCommentBody
        do { p = try JSONDecoder().decode(IssueCommentBody.self, from: data) } catch {
            throw PayloadError(error, body: data, integerFields: PayloadError.commentIntegers)
        }
        let c = p.comment
        let comment = GiteaComment(id: c.id, body: c.body, user: GiteaUser(id: c.user.id ?? 0, login: c.user.login),
                                   issue_url: c.issue_url, pull_request_url: c.pull_request_url,
                                   created_at: c.created_at ?? "", updated_at: c.updated_at ?? "")
        return CommentDelivery(action: p.action, repository: p.repository.full_name, issue: p.issue.number,
                               isPull: p.is_pull == true || p.issue.pull_request != nil, comment: comment)
    }

    /// Reads an issues body (the fuzz target FuzzWebhook calls this too).
    package static func readIssueEvent(_ body: [UInt8]) throws(PayloadError) -> IssuePayload {
        let data = Data(body)
        do { return try JSONDecoder().decode(IssuePayload.self, from: data) } catch {
            throw PayloadError(error, body: data, integerFields: [("number", "Int"), ("issue.id", "Int64"), ("issue.number", "Int")])
        }
    }

    package func handle(header: (String) -> String?, body: [UInt8]) async -> (status: Int, text: String) {
        metrics.inc("webhook_requests_total")
        guard body.count <= Self.maxBody else { metrics.inc("webhook_rejected_total"); return (413, "body too large") }
        guard verifier.verify(signature: header("X-Gitea-Signature"), body: body) else {
            metrics.inc("webhook_rejected_total")
            return (401, "bad or missing X-Gitea-Signature")
        }
        let event = header("X-Gitea-Event") ?? ""
        let full = "\(engine.config.owner)/\(engine.config.repo)".lowercased()
        let delivery = header("X-Gitea-Delivery").flatMap { $0.isEmpty ? nil : $0 }
        do {
            switch event {
            case "issue_comment":
                let d: CommentDelivery
                do { d = try Self.readComment(body) } catch {
                    metrics.inc("webhook_rejected_total")
                    return (400, error.kind == .malformedJSON ? error.reason : "malformed issue_comment payload: \(error.reason)")
                }
                guard d.repository.lowercased() == full else { return (202, "ignored: other repository") }
                let event = d.action == "created" ? engine.event(comment: d.comment, issue: d.issue, isPull: d.isPull) : nil
                if let early = await store(delivery, event) { return early }
                if d.action == "edited" { try engine.noteEdit(comment: d.comment, issue: d.issue); onAccepted() }
            case "issues":
                let p: IssuePayload
                do { p = try Self.readIssueEvent(body) } catch {
                    metrics.inc("webhook_rejected_total")
                    return (400, error.kind == .malformedJSON ? error.reason : "malformed issues payload: \(error.reason)")
                }
                guard p.repository.full_name.lowercased() == full else { return (202, "ignored: other repository") }
                let event = p.action == "opened" ? engine.event(issue: p.issue) : nil
                if let early = await store(delivery, event) { return early }
                if p.action == "opened" || p.action == "closed" || p.action == "reopened" { try engine.trackReminder(p.issue) }
                engine.issueSeen(p.issue)   // the dashboard tells a person's edit of it apart
            default:
                do { _ = try JSONSerialization.jsonObject(with: Data(body)) } catch {
                    metrics.inc("webhook_rejected_total")
                    return (400, PayloadError.malformed(error).reason)
                }
                return (202, "ignored event \(event)")
            }
        } catch {
            metrics.inc("webhook_errors_total")
            return (500, "could not store the event: \(error)")
        }
        metrics.inc("webhook_accepted_total")
        return (200, "ok")
    }
}
