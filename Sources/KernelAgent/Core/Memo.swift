import Foundation

/// A value computed once and shared by copies of the struct that holds it.
final class Memo<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T?
    func value(_ make: () throws -> T) throws -> T {
        lock.lock(); defer { lock.unlock() }
        if let stored { return stored }
        let v = try make()
        stored = v
        return v
    }
}

/// The value parsed from the last bytes seen for a file, reused while those bytes stay the same.
final class LastParsed<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()   // a pthread mutex, which ThreadSanitizer sees (it does not model Mutex's futex)
    // The bytes as an array, not Data: Data keeps its storage behind an enum whose tag bits hide the pointer from
    // LeakSanitizer, which then reports this long-lived cache as a leak.
    private var last: (file: String, bytes: [UInt8], value: T)?
    func value(for bytes: Data, file: String, _ parse: () throws -> T) throws -> T {
        if let hit = lock.withLock({ last.flatMap { $0.file == file && $0.bytes.elementsEqual(bytes) ? $0.value : nil } }) { return hit }
        let v = try parse()   // outside the lock: a slow parse does not hold up readers of the last value
        lock.withLock { last = (file, Array(bytes), v) }
        return v
    }
}

/// A value kept once it is known (a listing read asynchronously, outside any lock).
final class Stored<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()   // a pthread mutex, which ThreadSanitizer sees
    private var value: T?
    var stored: T? { lock.withLock { value } }
    func store(_ v: T) { lock.withLock { value = v } }
}
