import Crypto
import Foundation

/// `X-Gitea-Signature`: lowercase hex HMAC-SHA256 of the raw body. Two secrets are accepted during rotation.
/// The key is rebuilt per request (SymmetricKey is not Sendable in swift-crypto 3.12).
package struct WebhookVerifier: Sendable {
    let secrets: [[UInt8]]
    package init(secrets: [[UInt8]]) { self.secrets = secrets }

    package func verify(signature: String?, body: some DataProtocol) -> Bool {
        guard let sig = signature, sig.utf8.count == 64, let given = Self.unhex(sig) else { return false }
        // swift-crypto compares in constant time; every secret is tried, so the time does not tell which matched
        var ok = false
        for s in secrets where !s.isEmpty {
            if HMAC<SHA256>.isValidAuthenticationCode(given, authenticating: body, using: SymmetricKey(data: s)) { ok = true }
        }
        return ok
    }

    package static func sign(_ body: some DataProtocol, secret: [UInt8]) -> String {
        HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: secret)).map { String(format: "%02x", $0) }.joined()
    }

    static func unhex(_ s: String) -> [UInt8]? {
        var out = [UInt8]()
        out.reserveCapacity(32)
        var it = s.utf8.makeIterator()
        func nib(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x61...0x66: return c - 0x61 + 10
            case 0x41...0x46: return c - 0x41 + 10
            default: return nil
            }
        }
        while let h = it.next() {
            guard let l = it.next(), let a = nib(h), let b = nib(l) else { return nil }
            out.append(a << 4 | b)
        }
        return out
    }
}
