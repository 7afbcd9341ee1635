import Foundation

/// BLAKE2b (RFC 7693), unkeyed. Output equals coreutils `b2sum` for the 64-byte digest.
/// Hand-rolled because swift-crypto has no BLAKE2 and `b2sum` is what the lock promises.
public struct Blake2b: Sendable {
    private static let iv: [UInt64] = [
        0x6a09e667f3bcc908, 0xbb67ae8584caa73b, 0x3c6ef372fe94f82b, 0xa54ff53a5f1d36f1,
        0x510e527fade682d1, 0x9b05688c2b3e6c1f, 0x1f83d9abfb41bd6b, 0x5be0cd19137e2179,
    ]
    private static let sigma: [[Int]] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
        [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
        [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
        [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
        [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
        [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
        [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
        [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
        [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
    ]

    private var h: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)
    private var t: UInt64 = 0  // 2^64 bytes is far beyond any patch tree
    private var buffer = [UInt8](repeating: 0, count: 128)
    private var buffered = 0
    public let digestLength: Int

    public init(digestLength: Int = 64) {
        precondition((1...64).contains(digestLength), "BLAKE2b digest length must be 1...64")
        self.digestLength = digestLength
        let iv = Self.iv
        h = (iv[0] ^ (0x0101_0000 ^ UInt64(digestLength)), iv[1], iv[2], iv[3], iv[4], iv[5], iv[6], iv[7])
    }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
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

    public mutating func update<D: ContiguousBytes>(_ data: D) {
        data.withUnsafeBytes { update($0) }
    }

    public mutating func update(_ string: String) {
        var s = string
        s.withUTF8 { update(UnsafeRawBufferPointer($0)) }
    }

    public consuming func finalize() -> [UInt8] {
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

    public consuming func hexDigest() -> String { Hex.encode(finalize()) }

    /// One-shot helpers.
    public static func hex<D: ContiguousBytes>(_ data: D, digestLength: Int = 64) -> String {
        var hasher = Blake2b(digestLength: digestLength)
        hasher.update(data)
        return hasher.hexDigest()
    }

    /// The message schedule, flattened: 12 rounds × 16 word indexes.
    private static let schedule: [Int] = (0..<12).flatMap { sigma[$0 % 10] }

    @inline(__always)
    private mutating func compress(_ block: UnsafeRawPointer, last: Bool) {
        var w = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0),
                 UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        withUnsafeMutableBytes(of: &w) { $0.copyMemory(from: UnsafeRawBufferPointer(start: block, count: 128)) }
        var v0 = h.0, v1 = h.1, v2 = h.2, v3 = h.3, v4 = h.4, v5 = h.5, v6 = h.6, v7 = h.7
        var v8: UInt64 = 0x6a09e667f3bcc908, v9: UInt64 = 0xbb67ae8584caa73b
        var v10: UInt64 = 0x3c6ef372fe94f82b, v11: UInt64 = 0xa54ff53a5f1d36f1
        var v12: UInt64 = 0x510e527fade682d1 ^ t, v13: UInt64 = 0x9b05688c2b3e6c1f
        var v14: UInt64 = last ? ~0x1f83d9abfb41bd6b : 0x1f83d9abfb41bd6b, v15: UInt64 = 0x5be0cd19137e2179
        withUnsafeBytes(of: &w) { raw in
            let m = raw.baseAddress!.assumingMemoryBound(to: UInt64.self)
            Self.schedule.withUnsafeBufferPointer { sched in
                let s = sched.baseAddress!
                @inline(__always) func g(_ a: inout UInt64, _ b: inout UInt64, _ c: inout UInt64, _ d: inout UInt64,
                                         _ x: UInt64, _ y: UInt64) {
                    a = a &+ b &+ x; d = (d ^ a).rotr(32)
                    c = c &+ d; b = (b ^ c).rotr(24)
                    a = a &+ b &+ y; d = (d ^ a).rotr(16)
                    c = c &+ d; b = (b ^ c).rotr(63)
                }
                var r = s
                for _ in 0..<12 {
                    g(&v0, &v4, &v8, &v12, UInt64(littleEndian: m[r[0]]), UInt64(littleEndian: m[r[1]]))
                    g(&v1, &v5, &v9, &v13, UInt64(littleEndian: m[r[2]]), UInt64(littleEndian: m[r[3]]))
                    g(&v2, &v6, &v10, &v14, UInt64(littleEndian: m[r[4]]), UInt64(littleEndian: m[r[5]]))
                    g(&v3, &v7, &v11, &v15, UInt64(littleEndian: m[r[6]]), UInt64(littleEndian: m[r[7]]))
                    g(&v0, &v5, &v10, &v15, UInt64(littleEndian: m[r[8]]), UInt64(littleEndian: m[r[9]]))
                    g(&v1, &v6, &v11, &v12, UInt64(littleEndian: m[r[10]]), UInt64(littleEndian: m[r[11]]))
                    g(&v2, &v7, &v8, &v13, UInt64(littleEndian: m[r[12]]), UInt64(littleEndian: m[r[13]]))
                    g(&v3, &v4, &v9, &v14, UInt64(littleEndian: m[r[14]]), UInt64(littleEndian: m[r[15]]))
                    r += 16
                }
            }
        }
        h = (h.0 ^ v0 ^ v8, h.1 ^ v1 ^ v9, h.2 ^ v2 ^ v10, h.3 ^ v3 ^ v11,
             h.4 ^ v4 ^ v12, h.5 ^ v5 ^ v13, h.6 ^ v6 ^ v14, h.7 ^ v7 ^ v15)
    }
}

extension UInt64 {
    @inline(__always) fileprivate func rotr(_ n: UInt64) -> UInt64 { (self >> n) | (self << (64 - n)) }
}

public enum Hex {
    public static func encode(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 0xf)]) }
        return String(decoding: out, as: UTF8.self)
    }
}
