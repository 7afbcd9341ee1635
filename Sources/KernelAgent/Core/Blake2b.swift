import Foundation

/// BLAKE2b (RFC 7693), unkeyed. Output equals coreutils `b2sum` for the 64-byte digest.
/// Hand-rolled because swift-crypto has no BLAKE2 and `b2sum` is what the lock promises.
package struct Blake2b: Sendable {
    private static let iv: [UInt64] = [
        0x6a09e667f3bcc908, 0xbb67ae8584caa73b, 0x3c6ef372fe94f82b, 0xa54ff53a5f1d36f1,
        0x510e527fade682d1, 0x9b05688c2b3e6c1f, 0x1f83d9abfb41bd6b, 0x5be0cd19137e2179,
    ]

    private var h: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)
    private var t: UInt64 = 0  // 2^64 bytes is far beyond any patch tree
    private var buffer = [UInt8](repeating: 0, count: 128)
    private var buffered = 0
    package let digestLength: Int

    package init(digestLength: Int = 64) {
        precondition((1...64).contains(digestLength), "BLAKE2b digest length must be 1...64")
        self.digestLength = digestLength
        let iv = Self.iv
        h = (iv[0] ^ (0x0101_0000 ^ UInt64(digestLength)), iv[1], iv[2], iv[3], iv[4], iv[5], iv[6], iv[7])
    }

    package mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard var base = bytes.baseAddress, bytes.count > 0 else { return }
        var remaining = bytes.count
        if buffered > 0 {
            let take = min(128 - buffered, remaining)
            buffer.withUnsafeMutableBytes { dst in
                (dst.baseAddress! + buffered).copyMemory(from: base, byteCount: take)
            }
            buffered += take; base += take; remaining -= take
            // Keep the last block back: it must be compressed with the final flag.
            if buffered == 128 && remaining > 0 {
                t &+= 128
                buffer.withUnsafeBytes { compress($0.baseAddress!, last: false) }
                buffered = 0
            }
        }
        while remaining > 128 {
            t &+= 128
            compress(base, last: false)
            base += 128; remaining -= 128
        }
        if remaining > 0 {
            buffer.withUnsafeMutableBytes { dst in
                (dst.baseAddress! + buffered).copyMemory(from: base, byteCount: remaining)
            }
            buffered += remaining
        }
    }

    package mutating func update<D: ContiguousBytes>(_ data: D) {
        data.withUnsafeBytes { update($0) }
    }

    package mutating func update(_ string: String) {
        var s = string
        s.withUTF8 { update(UnsafeRawBufferPointer($0)) }
    }

    package consuming func finalize() -> [UInt8] {
        t &+= UInt64(buffered)
        buffer.withUnsafeMutableBytes { dst in
            for i in buffered..<128 { dst[i] = 0 }
        }
        buffer.withUnsafeBytes { compress($0.baseAddress!, last: true) }
        var out = [UInt8]()
        out.reserveCapacity(64)
        for word in [h.0, h.1, h.2, h.3, h.4, h.5, h.6, h.7] {
            for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: word >> (8 * UInt64(i)))) }
        }
        return Array(out.prefix(digestLength))
    }

    package consuming func hexDigest() -> String { Hex.encode(finalize()) }

    /// One-shot helpers.
    package static func hex<D: ContiguousBytes>(_ data: D, digestLength: Int = 64) -> String {
        var hasher = Blake2b(digestLength: digestLength)
        hasher.update(data)
        return hasher.hexDigest()
    }

    /// One compression (RFC 7693 F). The twelve rounds are written out, round r with the message words in the order
    /// of SIGMA[r mod 10] (RFC 7693 §2.7) as constants, so the words stay in registers instead of being looked up
    /// through the schedule per round: about 1.8× faster (issue 11 §3; 800 MB/s here, coreutils' b2sum 670 MB/s).
    @inline(__always)
    private mutating func compress(_ block: UnsafeRawPointer, last: Bool) {
        @inline(__always) func word(_ i: Int) -> UInt64 { UInt64(littleEndian: block.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)) }
        let m0 = word(0), m1 = word(1), m2 = word(2), m3 = word(3), m4 = word(4), m5 = word(5), m6 = word(6), m7 = word(7)
        let m8 = word(8), m9 = word(9), m10 = word(10), m11 = word(11), m12 = word(12), m13 = word(13), m14 = word(14), m15 = word(15)
        var v0 = h.0, v1 = h.1, v2 = h.2, v3 = h.3, v4 = h.4, v5 = h.5, v6 = h.6, v7 = h.7
        var v8: UInt64 = 0x6a09e667f3bcc908, v9: UInt64 = 0xbb67ae8584caa73b
        var v10: UInt64 = 0x3c6ef372fe94f82b, v11: UInt64 = 0xa54ff53a5f1d36f1
        var v12: UInt64 = 0x510e527fade682d1 ^ t, v13: UInt64 = 0x9b05688c2b3e6c1f
        var v14: UInt64 = last ? ~0x1f83d9abfb41bd6b : 0x1f83d9abfb41bd6b, v15: UInt64 = 0x5be0cd19137e2179
        @inline(__always) func g(_ a: inout UInt64, _ b: inout UInt64, _ c: inout UInt64, _ d: inout UInt64, _ x: UInt64, _ y: UInt64) {
            a = a &+ b &+ x; d = (d ^ a).rotr(32)
            c = c &+ d; b = (b ^ c).rotr(24)
            a = a &+ b &+ y; d = (d ^ a).rotr(16)
            c = c &+ d; b = (b ^ c).rotr(63)
        }
        // round 0
        g(&v0, &v4, &v8, &v12, m0, m1); g(&v1, &v5, &v9, &v13, m2, m3); g(&v2, &v6, &v10, &v14, m4, m5); g(&v3, &v7, &v11, &v15, m6, m7)
        g(&v0, &v5, &v10, &v15, m8, m9); g(&v1, &v6, &v11, &v12, m10, m11); g(&v2, &v7, &v8, &v13, m12, m13); g(&v3, &v4, &v9, &v14, m14, m15)
        // round 1
        g(&v0, &v4, &v8, &v12, m14, m10); g(&v1, &v5, &v9, &v13, m4, m8); g(&v2, &v6, &v10, &v14, m9, m15); g(&v3, &v7, &v11, &v15, m13, m6)
        g(&v0, &v5, &v10, &v15, m1, m12); g(&v1, &v6, &v11, &v12, m0, m2); g(&v2, &v7, &v8, &v13, m11, m7); g(&v3, &v4, &v9, &v14, m5, m3)
        // round 2
        g(&v0, &v4, &v8, &v12, m11, m8); g(&v1, &v5, &v9, &v13, m12, m0); g(&v2, &v6, &v10, &v14, m5, m2); g(&v3, &v7, &v11, &v15, m15, m13)
        g(&v0, &v5, &v10, &v15, m10, m14); g(&v1, &v6, &v11, &v12, m3, m6); g(&v2, &v7, &v8, &v13, m7, m1); g(&v3, &v4, &v9, &v14, m9, m4)
        // round 3
        g(&v0, &v4, &v8, &v12, m7, m9); g(&v1, &v5, &v9, &v13, m3, m1); g(&v2, &v6, &v10, &v14, m13, m12); g(&v3, &v7, &v11, &v15, m11, m14)
        g(&v0, &v5, &v10, &v15, m2, m6); g(&v1, &v6, &v11, &v12, m5, m10); g(&v2, &v7, &v8, &v13, m4, m0); g(&v3, &v4, &v9, &v14, m15, m8)
        // round 4
        g(&v0, &v4, &v8, &v12, m9, m0); g(&v1, &v5, &v9, &v13, m5, m7); g(&v2, &v6, &v10, &v14, m2, m4); g(&v3, &v7, &v11, &v15, m10, m15)
        g(&v0, &v5, &v10, &v15, m14, m1); g(&v1, &v6, &v11, &v12, m11, m12); g(&v2, &v7, &v8, &v13, m6, m8); g(&v3, &v4, &v9, &v14, m3, m13)
        // round 5
        g(&v0, &v4, &v8, &v12, m2, m12); g(&v1, &v5, &v9, &v13, m6, m10); g(&v2, &v6, &v10, &v14, m0, m11); g(&v3, &v7, &v11, &v15, m8, m3)
        g(&v0, &v5, &v10, &v15, m4, m13); g(&v1, &v6, &v11, &v12, m7, m5); g(&v2, &v7, &v8, &v13, m15, m14); g(&v3, &v4, &v9, &v14, m1, m9)
        // round 6
        g(&v0, &v4, &v8, &v12, m12, m5); g(&v1, &v5, &v9, &v13, m1, m15); g(&v2, &v6, &v10, &v14, m14, m13); g(&v3, &v7, &v11, &v15, m4, m10)
        g(&v0, &v5, &v10, &v15, m0, m7); g(&v1, &v6, &v11, &v12, m6, m3); g(&v2, &v7, &v8, &v13, m9, m2); g(&v3, &v4, &v9, &v14, m8, m11)
        // round 7
        g(&v0, &v4, &v8, &v12, m13, m11); g(&v1, &v5, &v9, &v13, m7, m14); g(&v2, &v6, &v10, &v14, m12, m1); g(&v3, &v7, &v11, &v15, m3, m9)
        g(&v0, &v5, &v10, &v15, m5, m0); g(&v1, &v6, &v11, &v12, m15, m4); g(&v2, &v7, &v8, &v13, m8, m6); g(&v3, &v4, &v9, &v14, m2, m10)
        // round 8
        g(&v0, &v4, &v8, &v12, m6, m15); g(&v1, &v5, &v9, &v13, m14, m9); g(&v2, &v6, &v10, &v14, m11, m3); g(&v3, &v7, &v11, &v15, m0, m8)
        g(&v0, &v5, &v10, &v15, m12, m2); g(&v1, &v6, &v11, &v12, m13, m7); g(&v2, &v7, &v8, &v13, m1, m4); g(&v3, &v4, &v9, &v14, m10, m5)
        // round 9
        g(&v0, &v4, &v8, &v12, m10, m2); g(&v1, &v5, &v9, &v13, m8, m4); g(&v2, &v6, &v10, &v14, m7, m6); g(&v3, &v7, &v11, &v15, m1, m5)
        g(&v0, &v5, &v10, &v15, m15, m11); g(&v1, &v6, &v11, &v12, m9, m14); g(&v2, &v7, &v8, &v13, m3, m12); g(&v3, &v4, &v9, &v14, m13, m0)
        // round 10
        g(&v0, &v4, &v8, &v12, m0, m1); g(&v1, &v5, &v9, &v13, m2, m3); g(&v2, &v6, &v10, &v14, m4, m5); g(&v3, &v7, &v11, &v15, m6, m7)
        g(&v0, &v5, &v10, &v15, m8, m9); g(&v1, &v6, &v11, &v12, m10, m11); g(&v2, &v7, &v8, &v13, m12, m13); g(&v3, &v4, &v9, &v14, m14, m15)
        // round 11
        g(&v0, &v4, &v8, &v12, m14, m10); g(&v1, &v5, &v9, &v13, m4, m8); g(&v2, &v6, &v10, &v14, m9, m15); g(&v3, &v7, &v11, &v15, m13, m6)
        g(&v0, &v5, &v10, &v15, m1, m12); g(&v1, &v6, &v11, &v12, m0, m2); g(&v2, &v7, &v8, &v13, m11, m7); g(&v3, &v4, &v9, &v14, m5, m3)
        h = (h.0 ^ v0 ^ v8, h.1 ^ v1 ^ v9, h.2 ^ v2 ^ v10, h.3 ^ v3 ^ v11,
             h.4 ^ v4 ^ v12, h.5 ^ v5 ^ v13, h.6 ^ v6 ^ v14, h.7 ^ v7 ^ v15)
    }
}

extension UInt64 {
    @inline(__always) fileprivate func rotr(_ n: UInt64) -> UInt64 { (self >> n) | (self << (64 - n)) }
}

package enum Hex {
    /// Lower-case hex, written straight into the string's storage (promote encodes three digests per patch).
    package static func encode<C: Collection<UInt8>>(_ bytes: C) -> String {
        String(unsafeUninitializedCapacity: bytes.count * 2) { out in
            var i = 0
            for b in bytes {
                out[i] = digit(b >> 4)
                out[i + 1] = digit(b & 0xf)
                i += 2
            }
            return i
        }
    }

    @inline(__always) private static func digit(_ v: UInt8) -> UInt8 { v < 10 ? 0x30 + v : 0x57 + v }
}
