import Foundation

/// The webhook's logic, apart from the HTTP framework: verify, decode, filter, store, acknowledge.
/// Storing is one SQLite insert; the work happens in `ControlLoop`, woken by `onAccepted`.
public struct WebhookIntake: Sendable {
    public static let maxBody = 1 << 20

    let verifier: WebhookVerifier
    let engine: Engine
    let metrics: Metrics
    let onAccepted: @Sendable () -> Void

    public init(verifier: WebhookVerifier, engine: Engine, metrics: Metrics, onAccepted: @escaping @Sendable () -> Void) {
        self.verifier = verifier; self.engine = engine; self.metrics = metrics; self.onAccepted = onAccepted
    }

    public func handle(header: (String) -> String?, body: [UInt8]) -> (status: Int, text: String) {
        metrics.inc("webhook_requests_total")
        guard body.count <= Self.maxBody else { metrics.inc("webhook_rejected_total"); return (413, "body too large") }
        guard verifier.verify(signature: header("X-Gitea-Signature"), body: body) else {
            metrics.inc("webhook_rejected_total")
            return (401, "bad or missing X-Gitea-Signature")
        }
        let event = header("X-Gitea-Event") ?? ""
        let decoder = JSONDecoder()
        let full = "\(engine.config.owner)/\(engine.config.repo)".lowercased()
        do {
            if let delivery = header("X-Gitea-Delivery"), !delivery.isEmpty {
                guard try engine.ledger.recordDelivery(delivery, at: Date()) else {
                    metrics.inc("webhook_duplicate_total")
                    return (200, "duplicate delivery")
                }
            }
            switch event {
            case "issue_comment":
                let p: IssueCommentPayload
                do { p = try decoder.decode(IssueCommentPayload.self, from: Data(body)) } catch {
                    metrics.inc("webhook_rejected_total"); return (400, "malformed issue_comment payload")
                }
                guard p.repository.full_name.lowercased() == full else { return (202, "ignored: other repository") }
                switch p.action {
                case "created": if try engine.ingest(comment: p.comment, issue: p.issue.number, isPull: p.is_pull ?? p.issue.isPull) { onAccepted() }
                case "edited": try engine.noteEdit(comment: p.comment, issue: p.issue.number); onAccepted()
                default: break
                }
            case "issues":
                let p: IssuePayload
                do { p = try decoder.decode(IssuePayload.self, from: Data(body)) } catch {
                    metrics.inc("webhook_rejected_total"); return (400, "malformed issues payload")
                }
                guard p.repository.full_name.lowercased() == full else { return (202, "ignored: other repository") }
                if p.action == "opened", try engine.ingest(issue: p.issue) { onAccepted() }
                if p.action == "opened" || p.action == "closed" || p.action == "reopened" { try engine.trackReminder(p.issue) }
            default:
                guard (try? JSONSerialization.jsonObject(with: Data(body))) != nil else {
                    metrics.inc("webhook_rejected_total"); return (400, "malformed JSON")
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
