import Foundation

/// Evaluates one probe once against a host. What the host answered decides pass, fail or skip; a host that
/// could not be asked is an infra-error (`ProbeRunner` retries those).
///
/// - A missing file or property is a fail for every check but `missing` (it is what the manifest did not expect).
/// - A device-tree probe on a host without /proc/device-tree, and a `cmd` whose program is not on the host
///   (exit 127), are skips.
/// - A `cmd` that exits non-zero fails, whatever it printed.
package enum ProbeEvaluator {
    package static func evaluate(_ probe: Probe, on host: any ProbeHost,
                                commandTimeout: Swift.Duration = .seconds(60)) async -> ProbeResult {
        do {
            switch probe.subject {
            case let .file(path):
                return judge(probe, read: try await host.readFile(path), render: { String(decoding: $0, as: UTF8.self) })
            case let .deviceTree(node, property):
                let path = property.map { node == "/" ? "/\($0)" : "\(node)/\($0)" } ?? node
                return judge(probe, read: try await host.readDeviceTree(path), render: DeviceTreeValue.render)
            case let .command(argv):
                return judge(probe, run: try await host.run(argv, timeout: commandTimeout))
            }
        } catch let e as KAError {
            return result(probe, .infraError, observed: "", "the host could not be asked: \(e.message)")
        } catch {
            return result(probe, .infraError, observed: "", "the host could not be asked: \(error)")
        }
    }

    static func judge(_ probe: Probe, read: ProbeRead, render: ([UInt8]) -> String) -> ProbeResult {
        let what = probe.subject.keyword == "dt" ? "the device-tree entry" : "the file"
        switch (read, probe.check) {
        case let (.notApplicable(why), _):
            return result(probe, .skip, observed: "", why)
        case (.missing, .missing):
            return result(probe, .pass, observed: "", "\(what) is missing, as expected")
        case (.missing, _):
            return result(probe, .fail, observed: "", "\(what) does not exist")
        case (_, .missing):
            return result(probe, .fail, observed: observed(read, render), "\(what) exists")
        case (_, .exists):
            return result(probe, .pass, observed: observed(read, render), "\(what) exists")
        case (.directory, _):
            return result(probe, .fail, observed: "", "\(what) is a directory, not a value")
        case let (.unreadable(why), _):
            return result(probe, .fail, observed: ProbeResult.shown(Array(why.utf8)), "\(what) exists but cannot be read")
        case let (.content(bytes, truncated), check):
            let text = render(bytes)
            return judgeValue(probe, check, text: text, shown: redacted(text), truncated: truncated)
        }
    }

    static func judge(_ probe: Probe, run: ProbeRun) -> ProbeResult {
        let out = String(decoding: run.stdout, as: UTF8.self)
        if run.status == 127 {
            return result(probe, .skip, observed: ProbeResult.shown(run.stderr), "the program is not on the host (exit 127)")
        }
        guard run.status == 0 else {
            let shown = ProbeResult.shown(run.stderr + (run.stderr.isEmpty ? [] : Array("\n".utf8)) + run.stdout)
            return result(probe, .fail, observed: shown, "the command exited \(run.status)")
        }
        return judgeValue(probe, probe.check, text: out, shown: ProbeResult.shown(run.stdout), truncated: run.truncated)
    }

    static func judgeValue(_ probe: Probe, _ check: Probe.Check, text: String, shown: String, truncated: Bool) -> ProbeResult {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        switch check {
        case .exists, .missing:
            return result(probe, .pass, observed: shown, "it exists")   // handled by the callers; kept total
        case let .equal(value, negated):
            let same = trimmed == value
            return result(probe, same != negated ? .pass : .fail, observed: shown,
                          same ? "the value is \(quote(value))" : "the value is not \(quote(value))")
        case let .matches(pattern, negated):
            switch pattern.firstMatch(in: text) {
            case .tooCostly:
                return result(probe, .fail, observed: shown,
                              "the regex took longer than \(TransportError.seconds(ProbeLimits.matchBudget)) on what the host showed; simplify it")
            case let .matched(line):
                return result(probe, negated ? .fail : .pass, observed: ProbeResult.shown(Array(line.utf8)),
                              "/\(pattern.source)/ matches this line")
            case .notMatched:
                if negated && truncated {
                    return result(probe, .fail, observed: shown,
                                  "the output is longer than \(ProbeLimits.outputBytes) bytes, so the absence of /\(pattern.source)/ cannot be shown")
                }
                return result(probe, negated ? .pass : .fail, observed: shown, "/\(pattern.source)/ matches nothing")
            }
        case let .compare(op, number):
            guard let observedNumber = ProbeNumber(trimmed) else {
                return result(probe, .fail, observed: shown, "the value is not a number")
            }
            let order = observedNumber.compare(to: number)
            let holds: Bool
            switch op {
            case .greaterOrEqual: holds = order >= 0
            case .lessOrEqual: holds = order <= 0
            case .greater: holds = order > 0
            case .less: holds = order < 0
            default: holds = false
            }
            return result(probe, holds ? .pass : .fail, observed: shown,
                          "\(observedNumber) \(holds ? "" : "is not ")\(op.rawValue) \(number)".replacingOccurrences(of: "  ", with: " "))
        }
    }

    static func observed(_ read: ProbeRead, _ render: ([UInt8]) -> String) -> String {
        if case let .content(bytes, _) = read { return redacted(render(bytes)) }
        return ""
    }

    /// What a result quotes of a file it read: a short one-line value (a sysfs knob, a version) as it is;
    /// anything longer only by its size and hash. A failed probe's result goes into a `[ka:regression]` issue,
    /// and a file under /etc may hold what no issue should (a `file /etc/shadow == x` that fails).
    static func redacted(_ text: String) -> String {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.utf8.count <= 80, !trimmed.contains(where: \.isNewline) { return ProbeResult.shown(Array(trimmed.utf8)) }
        let lines = trimmed.split(whereSeparator: \.isNewline).count
        return "(\(text.utf8.count) bytes in \(lines) line\(lines == 1 ? "" : "s"), b2:\(Blake2b.hex(Data(text.utf8)).prefix(16))…; not quoted)"
    }

    static func quote(_ s: String) -> String { "\"" + ProbeResult.shown(Array(s.utf8), limit: 200) + "\"" }

    static func result(_ probe: Probe, _ code: ProbeCode, observed: String, _ reason: String) -> ProbeResult {
        ProbeResult(probe: probe.text, origin: probe.origin, code: code, observed: observed, reason: reason)
    }
}

/// How a device-tree property reads as text: strings (printable, NUL-terminated) one per line; otherwise 32-bit
/// big-endian cells in decimal, separated by a space (`opp-microvolt = <1375000 1375000 1400000>` reads
/// `1375000 1375000 1400000`, a 64-bit `opp-hz` reads as its two cells, `0 2184000000`); otherwise bytes in hex.
/// An empty (boolean) property reads as the empty string.
package enum DeviceTreeValue {
    package static func render(_ bytes: [UInt8]) -> String {
        if bytes.isEmpty { return "" }
        if bytes.last == 0 {
            let parts = bytes.dropLast().split(separator: 0, omittingEmptySubsequences: false)
            if parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0 >= 0x20 && $0 < 0x7f } }) {
                return parts.map { String(decoding: $0, as: UTF8.self) }.joined(separator: "\n")
            }
        }
        if bytes.count % 4 == 0 {
            var cells: [String] = []
            for i in stride(from: 0, to: bytes.count, by: 4) {
                var cell: UInt32 = 0
                for byte in bytes[i..<(i + 4)] { cell = cell << 8 | UInt32(byte) }
                cells.append(String(cell))
            }
            return cells.joined(separator: " ")
        }
        return bytes.map { ($0 < 0x10 ? "0" : "") + String($0, radix: 16) }.joined(separator: " ")
    }
}
