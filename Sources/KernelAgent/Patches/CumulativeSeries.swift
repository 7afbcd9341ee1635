import Foundation

/// How patches join into one cumulative series (the upstream ka-promote's rule, their issue #31): every patch
/// but the last ends with a format-patch signature `-- \n<version>\n\n`, so `patch(1)` and `git am` find the
/// next mail; the last carries none, because `git apply` reads a trailing `2.54.0` as a malformed line.
package enum CumulativeSeries {
    /// Used where a patch that is not last has no signature of its own.
    package static let defaultVersion = "2.54.0"

    /// Where the patch's own trailing signature starts (its body ends), and the signature's version line; the
    /// whole patch and nil when it has none.
    package static func split(_ bytes: Data) -> (bodyEnd: Int, version: String?) {
        bytes.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> (Int, String?) in
            let b = raw.bindMemory(to: UInt8.self)
            var end = b.count
            while end > 0 && (b[end - 1] == 0x0A || b[end - 1] == 0x0D) { end -= 1 }   // trailing blank lines
            // the version line: back to the previous newline
            var lineStart = end
            while lineStart > 0 && b[lineStart - 1] != 0x0A { lineStart -= 1 }
            guard lineStart < end, lineStart >= 4 else { return (b.count, nil) }
            // "-- \n" right before it, itself at the start of a line
            let sig = lineStart - 4
            guard b[sig] == 0x2D, b[sig + 1] == 0x2D, b[sig + 2] == 0x20, b[sig + 3] == 0x0A,
                  sig == 0 || b[sig - 1] == 0x0A else { return (b.count, nil) }
            let version = String(decoding: UnsafeBufferPointer(rebasing: b[lineStart..<end]), as: UTF8.self)
            guard version.utf8.count <= 64 else { return (b.count, nil) }
            return (sig, version)
        }
    }

    /// The bytes patch `index` of `count` contributes to the cumulative series.
    package static func piece(_ bytes: Data, index: Int, count: Int) -> Data {
        let (bodyEnd, version) = split(bytes)
        var out = bytes.prefix(bodyEnd)
        out.append(tail(bytes, bodyEnd: bodyEnd, version: version, index: index, count: count))
        return out
    }

    /// Appends patch `index` of `count`'s piece to `sink`, without copying the patch.
    package static func append(_ bytes: Data, index: Int, count: Int, to sink: inout FileSink) throws {
        let (bodyEnd, version) = split(bytes)
        try bytes.withUnsafeBytes { try sink.write(UnsafeRawBufferPointer(rebasing: $0[0..<bodyEnd])) }
        let end = tail(bytes, bodyEnd: bodyEnd, version: version, index: index, count: count)
        if !end.isEmpty { try sink.write(end) }
    }

    /// What follows the body: a newline if it lacks one, and the signature unless the patch is the last.
    private static func tail(_ bytes: Data, bodyEnd: Int, version: String?, index: Int, count: Int) -> Data {
        var out = Data()
        if bodyEnd > 0, bytes[bytes.startIndex + bodyEnd - 1] != 0x0A { out.append(0x0A) }
        if index < count - 1 { out.append(Data("-- \n\(version ?? defaultVersion)\n\n".utf8)) }
        return out
    }
}
