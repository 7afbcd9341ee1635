import Foundation
import Testing
@testable import KernelAgent

/// scripts/bench-status exits non-zero when what it times fails: a failed run has no time worth printing.
/// It runs with stand-ins for the build tools and for `ka` (KA_BIN), and its hello-world floors in a temp dir.
@Suite struct BenchStatusScriptTests {
    @Test func benchStatusFailsWhenKaStatusFails() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ka-bench-status-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let bin = dir.appendingPathComponent("bin"), hello = dir.appendingPathComponent("hello-out")
        for d in [bin, hello] { try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true) }
        func script(_ url: URL, _ body: String) throws {
            try ("#!/bin/sh\n" + body).write(to: url, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: url.path)
        }
        try script(bin.appendingPathComponent("kswift"), "exit 0\n")
        try script(bin.appendingPathComponent("swift"), "case \"$*\" in *--show-bin-path*) echo \"$FAKE_HELLO\";; esac\nexit 0\n")
        try script(hello.appendingPathComponent("plain"), "exit 0\n")
        try script(hello.appendingPathComponent("foundation"), "exit 0\n")
        // promote "works" (a state database appears); status fails
        let ka = bin.appendingPathComponent("ka-fake")
        try script(ka, "case \"$1\" in promote) mkdir -p \"$KA_STATE_DIR\" && : > \"$KA_STATE_DIR/state.sqlite\";; status) echo boom >&2; exit 3;; esac\n")
        var env = ProcessInfo.processInfo.environment
        env["PATH"] = bin.path + ":" + (env["PATH"] ?? "/usr/bin:/bin")
        env["FAKE_HELLO"] = hello.path
        env["KA_BIN"] = ka.path
        env["KA_BENCH_HELLO_DIR"] = dir.appendingPathComponent("hello").path
        let out = dir.appendingPathComponent("stdout"), err = dir.appendingPathComponent("stderr")
        FileManager.default.createFile(atPath: out.path, contents: nil)
        FileManager.default.createFile(atPath: err.path, contents: nil)
        let p = Process()
        p.executableURL = TestEnv.projectRoot.appendingPathComponent("scripts/bench-status")
        p.arguments = ["30"]
        p.currentDirectoryURL = TestEnv.projectRoot
        p.environment = env
        p.standardOutput = try FileHandle(forWritingTo: out)
        p.standardError = try FileHandle(forWritingTo: err)
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(120)
        while p.isRunning, Date() < deadline { try await Task.sleep(nanoseconds: 50_000_000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL); Issue.record("bench-status still ran after 120 s") }
        while p.isRunning { try await Task.sleep(nanoseconds: 10_000_000) }
        let stdout = try String(contentsOf: out, encoding: .utf8), stderr = try String(contentsOf: err, encoding: .utf8)
        #expect(p.terminationStatus != 0, "exit \(p.terminationStatus); stdout: \(stdout)")
        #expect(stderr.contains("bench-status: ka status failed"), "\(stderr)")
        #expect(!stdout.contains("median"), "no figures are printed for a failed run")
    }
}
