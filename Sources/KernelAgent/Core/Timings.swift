import Foundation

/// Phase timings on stderr when KA_TIMINGS is set (used by scripts/bench-promote to explain its figures).
public enum Timings {
    nonisolated(unsafe) static var last: Date = {
        // process start time, from /proc/self/stat's starttime would be exact; the uptime delta is close enough
        Date(timeIntervalSinceNow: -ProcessInfo.processInfo.systemUptime + processStartUptime())
    }()

    static func processStartUptime() -> TimeInterval {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8) else { return ProcessInfo.processInfo.systemUptime }
        let fields = stat.split(separator: ")").last?.split(separator: " ") ?? []
        guard fields.count > 20, let ticks = Double(fields[19]) else { return ProcessInfo.processInfo.systemUptime }
        return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
    static let enabled = ProcessInfo.processInfo.environment["KA_TIMINGS"] != nil

    public static func mark(_ phase: String) {
        guard enabled else { return }
        let now = Date()
        FileHandle.standardError.write(Data(String(format: "[timing] %-40@ %8.3f s\n", phase as NSString, now.timeIntervalSince(last)).utf8))
        last = now
    }
}
