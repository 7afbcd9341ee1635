import Foundation

/// Runs probes against one host, retrying infra-errors: a host that could not be asked is asked again
/// (`infraRetries` more times, `retryDelay` apart), and if it still cannot be, the result stays an infra-error.
/// Pass, fail and skip are never retried, and an infra-error is never turned into a fail.
///
/// ```swift
/// let runner = ProbeRunner(host: TransportProbeHost(transport: transport))
/// let results = await runner.run(manifest.verify?.probes.map(\.probe) ?? [])
/// ```
package struct ProbeRunner: Sendable {
    package let host: any ProbeHost
    /// How many more times an infra-error is tried (default 2: three attempts in all).
    package var infraRetries: Int
    /// The pause before each retry (a host that dropped the connection gets a moment).
    package var retryDelay: Swift.Duration
    /// The hard cap on one `cmd` probe's program.
    package var commandTimeout: Swift.Duration

    package init(host: any ProbeHost, infraRetries: Int = 2, retryDelay: Swift.Duration = .seconds(5),
                commandTimeout: Swift.Duration = .seconds(60)) {
        self.host = host; self.infraRetries = max(0, infraRetries); self.retryDelay = retryDelay; self.commandTimeout = commandTimeout
    }

    /// Runs one probe; `attempts` in the result counts the evaluations.
    package func run(_ probe: Probe) async -> ProbeResult {
        var attempt = 1
        while true {
            let result = await ProbeEvaluator.evaluate(probe, on: host, commandTimeout: commandTimeout)
            guard result.code == .infraError, attempt <= infraRetries, !Task.isCancelled else { return result.attempted(attempt) }
            if retryDelay > .zero {
                do { try await Task.sleep(for: retryDelay) } catch { return result.attempted(attempt) }
            }
            attempt += 1
        }
    }

    /// Runs the probes one after another, in order (a host is asked one thing at a time).
    package func run(_ probes: [Probe]) async -> [ProbeResult] {
        var results: [ProbeResult] = []
        for probe in probes { results.append(await run(probe)) }
        return results
    }
}
