import Foundation
import FuzzSupport
import KAControlPlane

// The webhook payload decoding (KAControlPlane/Server/WebhookIntake.swift + PayloadScanner.swift): the input
// is a delivery body, read as an issue_comment and as an issues event, as `WebhookIntake.handle` does.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWebhook(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let body = FuzzInput.bytes(data, size)
    let comment = Result { () throws(WebhookIntake.PayloadError) in try WebhookIntake.readComment(body) }
    _ = try? WebhookIntake.readIssueEvent(body)   // a DecodingError is the expected refusal
    // The strict scanner never accepts what Foundation calls malformed (on valid UTF-8; the scanner replaces
    // invalid UTF-8 where Foundation refuses it), and both read the same comment.
    guard String(validating: body, as: UTF8.self) != nil else { return 0 }
    let foundation = try? JSONSerialization.jsonObject(with: Data(body), options: [.fragmentsAllowed])
    switch comment {
    case let .success(d):
        FuzzCheck.require(foundation != nil, "the scanner accepted a body Foundation calls malformed")
        if let object = foundation as? [String: Any], let c = object["comment"] as? [String: Any], let text = c["body"] as? String {
            FuzzCheck.require(text == d.comment.body, "comment.body: scanner read \(d.comment.body.debugDescription), Foundation \(text.debugDescription)")
        }
    case .failure(.missingField):
        FuzzCheck.require(foundation != nil, "the scanner accepted a body Foundation calls malformed")
    case .failure(.malformedJSON):
        break
    }
    return 0
}

FuzzDriver.run(fuzzWebhook)
