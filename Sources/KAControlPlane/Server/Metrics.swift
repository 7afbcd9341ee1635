import Foundation

/// Counters for GET /metrics (Prometheus text format).
public final class Metrics: @unchecked Sendable {
    private let lock = NSLock()
    private var counters: [String: Int] = [:]

    public init() {}

    public func inc(_ name: String, by n: Int = 1) { lock.lock(); counters[name, default: 0] += n; lock.unlock() }
    public func get(_ name: String) -> Int { lock.lock(); defer { lock.unlock() }; return counters[name] ?? 0 }

    public func render(gauges: [String: Int]) -> String {
        lock.lock(); let c = counters; lock.unlock()
        var out = ""
        for (k, v) in c.sorted(by: { $0.key < $1.key }) { out += "# TYPE ka_\(k) counter\nka_\(k) \(v)\n" }
        for (k, v) in gauges.sorted(by: { $0.key < $1.key }) { out += "# TYPE ka_\(k) gauge\nka_\(k) \(v)\n" }
        return out
    }
}
