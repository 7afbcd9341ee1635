import Foundation

/// Bar 0's verdict on what the build host's `bar0` script printed (packaging/remote/bar0): the release the package
/// carries, then the guest's console, whose init writes `KA-BAR0 …` lines.
package struct Bar0Verdict: Sendable, Equatable {
    package enum Outcome: Sendable, Equatable {
        case passed
        case failed(String)
    }
    package let outcome: Outcome
    /// The release the package carries (its modules dir), as the script found it.
    package let release: String?
    /// The guest's console, as the script printed it.
    package let console: [String]
    /// The modules the guest loaded, by name.
    package let loaded: [String]

    /// How many console lines a failure's issue quotes.
    package static let quotedLines = 50

    /// `modules`: the ones the manifest named (none: whatever the script loaded must have loaded).
    package static func judge(_ output: String, modules: [String]) -> Bar0Verdict {
        let lines = output.split(separator: "\n", omittingEmptySubsequences: false).map { String($0) }
        let marker = "KA-BAR0-EXPECT release="
        // the script prints the release before the boot and again after it, so a long console cannot push it out
        let release = lines.last { $0.hasPrefix(marker) }.map { String($0.dropFirst(marker.count)) }
        let firstMark = lines.firstIndex { $0.hasPrefix(marker) }
        let console = Array(lines[(firstMark.map { $0 + 1 } ?? 0)...]).filter { !$0.hasPrefix(marker) }
        func verdict(_ o: Outcome, loaded: [String] = []) -> Bar0Verdict { Bar0Verdict(outcome: o, release: release, console: console, loaded: loaded) }
        guard let release, !release.isEmpty else { return verdict(.failed("the bar0 script did not say which release the package carries")) }
        let reported = console.compactMap { line -> String? in
            guard let r = line.range(of: "KA-BAR0 uname-r ") else { return nil }
            return String(line[r.upperBound...]).trimmingCharacters(in: .whitespaces)
        }.first
        let timedOut = console.contains { $0.hasPrefix("KA-BAR0-TIMEOUT") }
        guard let reported else {
            if let panic = console.first(where: { $0.contains("Kernel panic - not syncing") }) {
                return verdict(.failed("the kernel panicked before userspace: \(Self.text(panic))"))
            }
            return verdict(.failed(timedOut ? "the guest did not reach userspace within the timeout" : "the guest ended without reaching userspace"))
        }
        guard reported == release else { return verdict(.failed("the guest runs release \(reported), but the package carries \(release)")) }
        var loaded: [String] = [], failed: [(String, String)] = []
        for line in console {
            guard let r = line.range(of: "KA-BAR0 module ") else { continue }
            let words = line[r.upperBound...].split(separator: " ").map(String.init)
            guard let file = words.first else { continue }
            let name = Self.moduleName(file)
            if words.dropFirst().first == "loaded" { loaded.append(name) } else { failed.append((name, words.dropFirst().joined(separator: " "))) }
        }
        if let (name, why) = failed.first { return verdict(.failed("module \(name) did not load (\(why))"), loaded: loaded) }
        if let missing = modules.map(Self.moduleName).first(where: { !loaded.contains($0) }) {
            return verdict(.failed("module \(missing) was not loaded"), loaded: loaded)
        }
        guard console.contains(where: { $0.contains("KA-BAR0 done") }) else {
            return verdict(.failed(timedOut ? "the guest did not finish within the timeout" : "the guest stopped before its init finished"), loaded: loaded)
        }
        return verdict(.passed, loaded: loaded)
    }

    /// `pl330.ko`, `pl330` and `pl-330` name modules as the kernel does: no .ko, `-` as `_`.
    static func moduleName(_ s: String) -> String {
        var n = s
        for ext in [".ko.zst", ".ko.xz", ".ko.gz", ".ko"] where n.hasSuffix(ext) { n.removeLast(ext.count); break }
        return n.replacingOccurrences(of: "-", with: "_")
    }

    /// A console line without its timestamp.
    static func text(_ line: String) -> String {
        guard line.hasPrefix("["), let close = line.firstIndex(of: "]") else { return line }
        return line[line.index(after: close)...].trimmingCharacters(in: .whitespaces)
    }

    /// The console's last lines, for the failure's issue.
    package var tail: [String] { Array(console.suffix(Self.quotedLines)) }
}
