import Foundation
import NIOConcurrencyHelpers
import KernelAgent

/// Fault injection for the tests that run the real `ka serve` binary: `KA_SERVE_FAULT` holds comma-separated
/// `<action>-in-<phase>=<verb>[:<seconds>]` entries, e.g. `abort-in-plan=promote` (the process dies while
/// planning a promote) or `sleep-in-run=promote:0.5`. Unset in production; `ka serve` logs it when set.
package struct ServeFaults: Sendable, Equatable {
    package enum Phase: String, Sendable { case plan, run }
    package enum Action: Sendable, Equatable { case abort, sleep(Double), hold(FaultGate) }

    var entries: [String: Action] = [:]   // "<phase>/<verb>" → action

    package init() {}

    package var isEmpty: Bool { entries.isEmpty }

    package mutating func set(_ action: Action, in phase: Phase, verb: String) { entries["\(phase.rawValue)/\(verb)"] = action }

    package static func parse(_ text: String) throws -> ServeFaults {
        var faults = ServeFaults()
        for item in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !item.isEmpty {
            let bad = KAError.refusal("KA_SERVE_FAULT", "cannot read '\(item)'",
                                      hint: "use <abort|sleep>-in-<plan|run>=<verb>[:<seconds>], e.g. abort-in-plan=promote")
            let sides = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard sides.count == 2 else { throw bad }
            let head = sides[0].components(separatedBy: "-in-")
            guard head.count == 2, let phase = Phase(rawValue: head[1]) else { throw bad }
            let target = sides[1].split(separator: ":", maxSplits: 1).map(String.init)
            guard let verb = target.first, !verb.isEmpty else { throw bad }
            switch head[0] {
            case "abort" where target.count == 1: faults.set(.abort, in: phase, verb: verb)
            case "sleep":
                guard target.count == 2, let s = Double(target[1]), s >= 0, s <= 3600 else { throw bad }
                faults.set(.sleep(s), in: phase, verb: verb)
            default: throw bad
            }
        }
        return faults
    }

    package static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws -> ServeFaults {
        guard let text = env["KA_SERVE_FAULT"] else { return ServeFaults() }
        return try parse(text)
    }

    /// Called on the verb's own thread, never on the control loop.
    func hit(_ phase: Phase, verb: String) {
        switch entries["\(phase.rawValue)/\(verb)"] {
        case .abort?: abort()
        case let .sleep(s)?: Thread.sleep(forTimeInterval: s)
        case let .hold(gate)?: gate.wait()
        case nil: break
        }
    }
}

/// Holds a verb's thread until a test opens it, so a test waits for state rather than racing a sleep.
package final class FaultGate: Sendable, Equatable {
    private let opened = DispatchSemaphore(value: 0)
    private let isOpen = NIOLockedValueBox(false)

    package init() {}

    func wait() {
        opened.wait()
        opened.signal()   // every later holder passes too
    }

    package func open() {
        isOpen.withLockedValue { isOpen in
            guard !isOpen else { return }
            isOpen = true
            opened.signal()
        }
    }

    package var isOpened: Bool { isOpen.withLockedValue { $0 } }

    package static func == (a: FaultGate, b: FaultGate) -> Bool { a === b }
}
