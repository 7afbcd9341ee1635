import Foundation
import NIOConcurrencyHelpers

/// What a kernel build's output says of how far it is: makepkg's phase (`==> Starting build()…`), the kbuild targets
/// done (its quiet lines, `  CC      init/main.o`), and the time so far against the last build of the same target.
/// Fed every output line; returns a line worth showing on a phase change and at most every `every` seconds.
final class BuildProgress: Sendable {
    /// The last successful build of the same target: how long its build step took, and where.
    struct Previous: Sendable, Equatable {
        let seconds: Double
        let buildHost: String?
    }

    private struct State {
        var phase = "start"
        var targets = 0
        var lastShown: Double = 0
    }

    private let state = NIOLockedValueBox(State())
    private let target: String
    private let previous: Previous?
    private let every: Double

    init(target: String, previous: Previous?, every: Double = 30) {
        self.target = target; self.previous = previous; self.every = every
    }

    /// `elapsed`: seconds since the build step started.
    func take(_ line: String, elapsed: Double) -> String? {
        state.withLockedValue { s -> String? in
            var changed = false
            if let phase = Self.phase(of: line), phase != s.phase {
                s.phase = phase
                changed = true
            } else if Self.isKbuildTarget(line) {
                s.targets += 1
            }
            guard changed || elapsed - s.lastShown >= every else { return nil }
            s.lastShown = elapsed
            return describe(s, elapsed: elapsed)
        }
    }

    /// The line for now, whatever the throttle says (the step's outcome).
    func summary(elapsed: Double) -> String {
        let targets = state.withLockedValue { $0.targets }
        var text = (targets > 0 ? "\(targets) kbuild targets in " : "") + Self.duration(elapsed)
        if let previous { text += "; the last build of \(target) took \(Self.duration(previous.seconds))" }
        return text
    }

    private func describe(_ s: State, elapsed: Double) -> String {
        var text = "makepkg \(s.phase)"
        if s.targets > 0 { text += ", \(s.targets) kbuild targets done" }
        text += ", \(Self.duration(elapsed)) in"
        if let previous {
            text += " (the last build of \(target)"
            if let h = previous.buildHost { text += " on \(h)" }
            text += " took \(Self.duration(previous.seconds)))"
        } else {
            text += " (no earlier build of \(target) to compare)"
        }
        return text
    }

    /// makepkg's `==> Extracting sources...`, `==> Starting prepare()...`, `==> Starting package_linux-lab()...`.
    static func phase(of line: String) -> String? {
        guard line.hasPrefix("==> ") else { return nil }
        if line.hasPrefix("==> Extracting sources") { return "extracting the sources" }
        guard line.hasPrefix("==> Starting "), let paren = line.firstIndex(of: "(") else { return nil }
        let name = line[line.index(line.startIndex, offsetBy: 13)..<paren]
        if name.hasPrefix("package") { return "package()" }
        return name.isEmpty ? nil : name + "()"
    }

    /// kbuild's quiet output: two spaces, a tag in capitals (`CC`, `LD [M]`, `DTC`, `HOSTCC`), spaces, a path.
    static func isKbuildTarget(_ line: String) -> Bool {
        let u = Array(line.utf8.prefix(24))
        guard u.count > 5, u[0] == 0x20, u[1] == 0x20, (0x41...0x5A).contains(u[2]) else { return false }
        var i = 3
        while i < u.count, (0x41...0x5A).contains(u[i]) || (0x30...0x39).contains(u[i]) || u[i] == 0x5F { i += 1 }
        guard i - 2 <= 8, i < u.count, u[i] == 0x20 else { return false }
        // the rest up to the path: spaces, or " [M] "
        while i < u.count, u[i] == 0x20 || u[i] == 0x5B || u[i] == 0x5D || u[i] == 0x4D { i += 1 }
        return i < u.count
    }

    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s < 60 ? "\(s) s" : String(format: "%dm %02ds", s / 60, s % 60)
    }

    /// The last succeeded build of `target` in the journal: its build step's time (the step named `stepPrefix…`).
    static func previous(of target: HostName, in jobs: any JobStore, stepPrefix: String) -> Previous? {
        let done: [JobRecord]
        do { done = try jobs.jobs(states: [.succeeded], limit: 200) } catch { return nil }   // only a comparison is lost
        let builds = done.filter { $0.verb == "build" && $0.arguments.first == target.value }
            .sorted { ($0.finishedAt ?? $0.createdAt) > ($1.finishedAt ?? $1.createdAt) }
        for job in builds {
            if let step = job.steps.first(where: { $0.name.hasPrefix(stepPrefix) }), let secs = step.seconds {
                let host = step.outcome.flatMap { o in o.range(of: "built on ").map { String(o[$0.upperBound...].prefix { $0 != " " }) } }
                return Previous(seconds: secs, buildHost: host)
            }
        }
        return nil
    }
}
