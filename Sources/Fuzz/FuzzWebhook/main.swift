import Foundation
import FuzzSupport
import KAControlPlane

// The webhook payload decoding (KAControlPlane/Server/WebhookIntake.swift + WebhookPayloads.swift): the input is
// a delivery body, read as an issue_comment and as an issues event with JSONDecoder, as `WebhookIntake.handle`
// does, refusals included (their reasons are built by our code). Invariants:
// - every refusal has a reason, and one that says "malformed JSON" is for a body JSONSerialization refuses too;
// - when both JSONDecoder and JSONSerialization read the body, they read the same comment.
// Not checked: that JSONDecoder refuses all that JSONSerialization refuses. On Linux it skips the fields it
// does not read without checking their numbers (`01` passes), and both accept trailing commas; neither matters
// for a body whose signature already proved it came from Gitea.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWebhook(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let body = FuzzInput.bytes(data, size)
    let comment = Result { () throws(PayloadError) in try WebhookIntake.readComment(body) }
    let issue = Result { () throws(PayloadError) in try WebhookIntake.readIssueEvent(body) }
    let foundation = Result { try JSONSerialization.jsonObject(with: Data(body), options: [.fragmentsAllowed]) }
    let wellFormed: Bool
    switch foundation { case .success: wellFormed = true; case .failure: wellFormed = false }
    for case let .failure(e) in [comment.map { _ in () }, issue.map { _ in () }] {
        FuzzCheck.require(!e.reason.isEmpty, "a refusal without a reason")
        FuzzCheck.require(e.kind != .malformedJSON || !wellFormed, "refused as malformed JSON (\(e.reason)), but JSONSerialization reads it")
    }
    // A key given twice is read first-wins by JSONDecoder and last-wins by JSONSerialization (JSON leaves it to the
    // reader), so the two are compared only where the keys compared appear once each and no \u escape can spell one.
    guard case let .success(d) = comment, case let .success(any) = foundation, let object = any as? [String: Any] else { return 0 }
    let text = String(decoding: body, as: UTF8.self)
    let keys = ["\"action\"", "\"comment\"", "\"body\""]
    guard !text.contains("\\u"), keys.allSatisfy({ text.components(separatedBy: $0).count == 2 }) else { return 0 }
    let c = object["comment"] as? [String: Any]
    FuzzCheck.require(object["action"] as? String == d.action, "action: JSONSerialization reads \(String(describing: object["action"]))")
    FuzzCheck.require(c?["body"] as? String == d.comment.body,
                      "comment.body: the decoder read \(d.comment.body.debugDescription), JSONSerialization \(String(describing: c?["body"]))")
    return 0
}

FuzzDriver.run(fuzzWebhook)
