import Foundation

/// The webhook's logic, apart from the HTTP framework: verify, decode, filter, store, acknowledge.
/// Storing is one SQLite insert; the work happens in `ControlLoop`, woken by `onAccepted`.
public struct WebhookIntake: Sendable {
    public static let maxBody = 1 << 20

    let verifier: WebhookVerifier
    let engine: Engine
    let metrics: Metrics
    let onAccepted: @Sendable () -> Void
    let batcher: IngestBatcher

    public init(verifier: WebhookVerifier, engine: Engine, metrics: Metrics, onAccepted: @escaping @Sendable () -> Void) {
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

    public func handle(header: (String) -> String?, body: [UInt8]) async -> (status: Int, text: String) {
        metrics.inc("webhook_requests_total")
        guard body.count <= Self.maxBody else { metrics.inc("webhook_rejected_total"); return (413, "body too large") }
        guard verifier.verify(signature: header("X-Gitea-Signature"), body: body) else {
            metrics.inc("webhook_rejected_total")
            return (401, "bad or missing X-Gitea-Signature")
        }
        let event = header("X-Gitea-Event") ?? ""
        let decoder = JSONDecoder()
        let full = "\(engine.config.owner)/\(engine.config.repo)".lowercased()
        let delivery = header("X-Gitea-Delivery").flatMap { $0.isEmpty ? nil : $0 }
        do {
            switch event {
            case "issue_comment":
                let p: IssueCommentPayload
                do { p = try decoder.decode(IssueCommentPayload.self, from: Data(body)) } catch {
                    metrics.inc("webhook_rejected_total"); return (400, "malformed issue_comment payload")
                }
                guard p.repository.full_name.lowercased() == full else { return (202, "ignored: other repository") }
                let event = p.action == "created" ? engine.event(comment: p.comment, issue: p.issue.number, isPull: p.is_pull ?? p.issue.isPull) : nil
                if let early = await store(delivery, event) { return early }
                if p.action == "edited" { try engine.noteEdit(comment: p.comment, issue: p.issue.number); onAccepted() }
            case "issues":
                let p: IssuePayload
                do { p = try decoder.decode(IssuePayload.self, from: Data(body)) } catch {
                    metrics.inc("webhook_rejected_total"); return (400, "malformed issues payload")
                }
                guard p.repository.full_name.lowercased() == full else { return (202, "ignored: other repository") }
                let event = p.action == "opened" ? engine.event(issue: p.issue) : nil
                if let early = await store(delivery, event) { return early }
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
