import Foundation
import NIOConcurrencyHelpers

/// Counters for GET /metrics (Prometheus text format).
package final class Metrics: Sendable {
    private let counters = NIOLockedValueBox<[String: Int]>([:])

    package init() {}

    package func inc(_ name: String, by n: Int = 1) { counters.withLockedValue { $0[name, default: 0] += n } }
    package func get(_ name: String) -> Int { counters.withLockedValue { $0[name] ?? 0 } }

    package func render(gauges: [String: Int]) -> String {
        let c = counters.withLockedValue { $0 }
        var out = ""
        for (k, v) in c.sorted(by: { $0.key < $1.key }) { out += "# TYPE ka_\(k) counter\nka_\(k) \(v)\n" }
        for (k, v) in gauges.sorted(by: { $0.key < $1.key }) { out += "# TYPE ka_\(k) gauge\nka_\(k) \(v)\n" }
        return out
    }
}
