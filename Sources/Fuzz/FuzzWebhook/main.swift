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
    // The strict scanner never accepts what Foundation calls malformed, and both read the same comment. Two
    // known differences are left out: the scanner reads invalid UTF-8 with replacement characters where
    // Foundation refuses it, and Foundation refuses numbers beyond Double's range (a limit JSON leaves to the
    // reader; the scanner never turns them into an id).
    guard String(validating: body, as: UTF8.self) != nil else { return 0 }
    let foundation = Result { try JSONSerialization.jsonObject(with: Data(body), options: [.fragmentsAllowed]) }
    if case let .failure(error) = foundation, (error as NSError).userInfo[NSDebugDescriptionErrorKey].map({ "\($0)" })?
        .contains("is not representable in Swift") == true {
        return 0
    }
    switch comment {
    case let .success(d):
        FuzzCheck.require((try? foundation.get()) != nil, "the scanner accepted a body Foundation calls malformed: \(foundation)")
        if let object = try? foundation.get() as? [String: Any], let c = object["comment"] as? [String: Any],
           let text = c["body"] as? String {
            FuzzCheck.require(text == d.comment.body,
                              "comment.body: the scanner read \(d.comment.body.debugDescription), Foundation \(text.debugDescription)")
        }
    case .failure(.missingField):
        FuzzCheck.require((try? foundation.get()) != nil, "the scanner accepted a body Foundation calls malformed: \(foundation)")
    case .failure(.malformedJSON):
        break
    }
    return 0
}

FuzzDriver.run(fuzzWebhook)
