import Foundation
import NIOConcurrencyHelpers

/// Phase timings on stderr when KA_TIMINGS is set (used by scripts/bench-promote to explain its figures).
package enum Timings {
    struct Clock {
        /// When the last phase ended (at first: the process start).
        var last: Date
        /// Summed time per bucket, across threads.
        var buckets: [String: Double] = [:]
    }

    static let clock = NIOLockedValueBox(Clock(last: Date(timeIntervalSinceNow: -ProcessInfo.processInfo.systemUptime + processStartUptime())))

    /// The process start, in seconds of uptime, from /proc/self/stat (field 22, in clock ticks).
    static func processStartUptime() -> TimeInterval {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8) else { return ProcessInfo.processInfo.systemUptime }
        let fields = stat.split(separator: ")").last?.split(separator: " ") ?? []
        guard fields.count > 20, let ticks = Double(fields[19]) else { return ProcessInfo.processInfo.systemUptime }
        return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
    static let enabled = ProcessInfo.processInfo.environment["KA_TIMINGS"] != nil

    /// Adds the time `body` takes to a named bucket (summed across threads; printed by `flushBuckets`).
    @inline(__always)
    package static func measure<T>(_ bucket: String, _ body: () throws -> T) rethrows -> T {
        guard enabled else { return try body() }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let r = try body()
        let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        clock.withLockedValue { $0.buckets[bucket, default: 0] += dt }
        return r
    }

    package static func flushBuckets() {
        guard enabled else { return }
        let buckets = clock.withLockedValue { c in defer { c.buckets = [:] }; return c.buckets }
        for (k, v) in buckets.sorted(by: { $0.key < $1.key }) {
            FileHandle.standardError.write(Data(String(format: "[timing]   cpu in %-33@ %8.3f s\n", k as NSString, v).utf8))
        }
    }

    package static func mark(_ phase: String) {
        guard enabled else { return }
        let now = Date()
        let last = clock.withLockedValue { c in defer { c.last = now }; return c.last }
        FileHandle.standardError.write(Data(String(format: "[timing] %-40@ %8.3f s\n", phase as NSString, now.timeIntervalSince(last)).utf8))
    }
}

extension Swift.Duration {
    /// The duration in seconds, as a Double (for rates, and for comparing with configured seconds).
    package var secondsValue: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
