import Foundation
import Testing
import KATestSupport
@testable import KernelAgent

/// git and GNU patch as the differential tests run them: required (a missing tool fails the test), with
/// no user or system git config, outside any repository, in the C locale.
enum Tools {
    static func require(_ program: String) async throws {
        let r = try await TestCommand.run([program, "--version"])
        guard r.status == 0 else {
            Issue.record("MISSING TOOL: \(program) (scripts/setup installs it): \(r.stderrText)")
            throw KAError.failure("tool missing", program)
        }
        if program == "patch" && !r.stdoutText.hasPrefix("GNU patch") {
            Issue.record("patch is not GNU patch: \(r.stdoutText)")
            throw KAError.failure("tool missing", "GNU patch")
        }
    }

    static let home: URL = {
        let u = FileManager.default.temporaryDirectory.appendingPathComponent("ka-tools-home-\(getpid())")
        try? FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
        return u
    }()

    static var environment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["HOME"] = home.path
        env["XDG_CONFIG_HOME"] = home.path
        env["GIT_CONFIG_NOSYSTEM"] = "1"
        env["GIT_CONFIG_GLOBAL"] = "/dev/null"
        env["GIT_CEILING_DIRECTORIES"] = FileManager.default.temporaryDirectory.path
        env["LC_ALL"] = "C"
        env["LANG"] = "C"
        env["QUOTING_STYLE"] = "literal"
        return env
    }

    static func git(_ args: [String], cwd: URL, stdin: Data? = nil) async throws -> TestCommand.Result {
        try await TestCommand.run(["git"] + args, cwd: cwd, stdin: stdin, environment: environment)
    }

    /// GNU patch as Armbian runs it (-p1 -N --batch), writing no backup and no reject files.
    static func patch(_ args: [String], input: URL, cwd: URL) async throws -> TestCommand.Result {
        try await TestCommand.run(["patch", "-p1", "--forward", "--batch", "--no-backup-if-mismatch", "--reject-file=-"]
                           + args + ["-i", input.path], cwd: cwd, environment: environment)
    }

    static func tempDir(_ label: String) throws -> URL {
        let u = FileManager.default.temporaryDirectory.appendingPathComponent("ka-\(label)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
        return u
    }
}

/// GNU patch's per-hunk report ("Hunk #2 succeeded at 120 with fuzz 1 (offset 3 lines).", "Hunk #1 FAILED at 8.")
/// per file section, comparable with `HunkOutcome`. Hunks GNU does not mention applied exactly.
struct GNUReport {
    struct Section {
        var file: String
        var missing = false
        var skipped = false        // reversed / already exists: "Skipping patch."
        var hunks: [Int: HunkOutcome.Kind] = [:]
        var lines: [Int: Int] = [:]
    }
    var sections: [Section] = []
    var misordered = 0

    init(_ out: String) {
        var current: Section?
        func flush() { if let c = current { sections.append(c) }; current = nil }
        for raw in out.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = String(raw)
            if line.hasPrefix("patching file ") || line.hasPrefix("checking file ") {
                flush()
                current = Section(file: String(line.dropFirst("patching file ".count)))
            } else if line.hasPrefix("can't find file to patch") {
                flush()
                current = Section(file: "?", missing: true)
            } else if line.hasPrefix("The next patch would create the file ") {
                flush()
                current = Section(file: String(line.dropFirst("The next patch would create the file ".count).dropLast()))
            } else if line.contains("Skipping patch.") {
                if current == nil { current = Section(file: "?") }
                current?.skipped = true
            } else if line.hasPrefix("misordered hunks!") {
                misordered += 1
            } else if line.hasPrefix("Hunk #"), let parsed = Self.hunk(line) {
                current?.hunks[parsed.0] = parsed.1
                current?.lines[parsed.0] = parsed.2
            }
        }
        flush()
    }

    /// "Hunk #N succeeded at X[ with fuzz F][ (offset K line[s])]." or "Hunk #N FAILED at X."
    static func hunk(_ line: String) -> (Int, HunkOutcome.Kind, Int)? {
        let words = line.replacingOccurrences(of: ".", with: " ").replacingOccurrences(of: "(", with: " ")
            .split(separator: " ").map(String.init)
        guard words.count >= 5, words[0] == "Hunk", let n = Int(words[1].dropFirst()), let at = Int(words[4]) else { return nil }
        if words[2] == "FAILED" { return (n, .failed, at) }
        guard words[2] == "succeeded" else { return nil }
        var fuzz = 0, offset = 0
        if let f = words.firstIndex(of: "fuzz"), f + 1 < words.count { fuzz = Int(words[f + 1]) ?? 0 }
        if let o = words.firstIndex(of: "offset"), o + 1 < words.count { offset = Int(words[o + 1]) ?? 0 }
        if fuzz > 0 { return (n, .fuzz(fuzz, offset: offset), at) }
        return (n, offset != 0 ? .offset(offset) : .exact, at)
    }
}

/// A fixed-seed generator: the fuzz corpora are the same on every run (the seed is in the test).
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
