import Foundation
import NIOConcurrencyHelpers

/// A value computed once and shared by copies of the struct that holds it.
final class Memo<T: Sendable>: Sendable {
    private let stored = NIOLockedValueBox<T?>(nil)
    func value(_ make: () throws -> T) throws -> T {
        try stored.withLockedValue { stored in
            if let stored { return stored }
            let v = try make()
            stored = v
            return v
        }
    }
}

/// The value parsed from the last bytes seen for a file, reused while those bytes stay the same.
final class LastParsed<T: Sendable>: Sendable {
    // The bytes as an array, not Data: Data keeps its storage behind an enum whose tag bits hide the pointer from
    // LeakSanitizer, which then reports this long-lived cache as a leak.
    private let last = NIOLockedValueBox<(file: String, bytes: [UInt8], value: T)?>(nil)
    func value(for bytes: Data, file: String, _ parse: () throws -> T) throws -> T {
        if let hit = last.withLockedValue({ $0.flatMap { $0.file == file && $0.bytes.elementsEqual(bytes) ? $0.value : nil } }) { return hit }
        let v = try parse()   // outside the lock: a slow parse does not hold up readers of the last value
        last.withLockedValue { $0 = (file, Array(bytes), v) }
        return v
    }
}

/// A value kept once it is known (a listing read asynchronously, outside any lock).
final class Stored<T: Sendable>: Sendable {
    private let value = NIOLockedValueBox<T?>(nil)
    var stored: T? { value.withLockedValue { $0 } }
    func store(_ v: T) { value.withLockedValue { $0 = v } }
}
