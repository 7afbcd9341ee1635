import Foundation
import Testing
@testable import KAControlPlane
@testable import KernelAgent

/// The benchmark scripts exit non-zero when what they time fails: a failed run has no time worth printing.
/// Each script runs with stand-ins on PATH for `swift` (no release build), and for the tool that fails.
@Suite(.serialized) struct BenchScriptTests {
    /// A bin dir holding executable shell scripts, and a PATH that puts it first.
    static func fakes(_ scripts: [String: String]) throws -> (dir: URL, path: String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ka-bench-fakes-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for (name, text) in scripts {
            let url = dir.appendingPathComponent(name)
            try ("#!/bin/sh\n" + text).write(to: url, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: url.path)
        }
        return (dir, dir.path + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"))
    }

    struct Outcome { let status: Int32; let stdoutText: String; let stderrText: String }

    /// Runs a script with its output in files (a background child it leaves behind cannot hold a pipe open),
    /// and waits for its exit without blocking a thread of the cooperative pool the other tests share.
    static func runScript(_ argv: [String], environment: [String: String], timeout: Double = 240) async throws -> Outcome {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ka-bench-run-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("stdout"), err = dir.appendingPathComponent("stderr")
        FileManager.default.createFile(atPath: out.path, contents: nil)
        FileManager.default.createFile(atPath: err.path, contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: argv[0])
        p.arguments = Array(argv.dropFirst())
        p.currentDirectoryURL = Harness.projectRoot
        p.environment = environment
        p.standardOutput = try FileHandle(forWritingTo: out)
        p.standardError = try FileHandle(forWritingTo: err)
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning, Date() < deadline { try await Task.sleep(nanoseconds: 50_000_000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL); Issue.record("\(argv[0]) still ran after \(timeout) s") }
        while p.isRunning { try await Task.sleep(nanoseconds: 10_000_000) }
        return Outcome(status: p.terminationStatus, stdoutText: try String(contentsOf: out, encoding: .utf8),
                       stderrText: try String(contentsOf: err, encoding: .utf8))
    }

    @Test func benchPromoteFailsWhenWhatItTimesFails() async throws {
        // a `ka promote` that "succeeds" but writes a cumulative git cannot apply: the git baseline run fails
        let (dir, path) = try Self.fakes([
            "swift": "case \"$*\" in *--show-bin-path*) echo \"$FAKE_BIN\";; esac\nexit 0\n",
            "ka": "out=''\nwhile [ $# -gt 0 ]; do [ \"$1\" = --out ] && out=\"$2\"; shift; done\nmkdir -p \"$out\" && printf 'not a patch\\n' > \"$out/cumulative.patch\"\n",
        ])
        defer { try? FileManager.default.removeItem(at: dir) }
        var env = ProcessInfo.processInfo.environment
        env["PATH"] = path
        env["FAKE_BIN"] = dir.path
        let r = try await Self.runScript([Harness.projectRoot.appendingPathComponent("scripts/bench-promote").path, "12"], environment: env)
        #expect(r.status != 0, "exit \(r.status); stdout: \(r.stdoutText)")
        #expect(r.stderrText.contains("git apply --check of the cumulative failed"), "\(r.stderrText)")
        #expect(!r.stdoutText.contains("ratio"), "no figures are printed for a failed run")
    }

    /// Issue 20: `h=$(by_hand) || die` turns errexit off inside by_hand, so a failed raw step used to be timed
    /// anyway. With ssh failing makepkg (bench-build) or pacman -U (bench-install), the run must fail there.
    @Test(arguments: ["bench-build", "bench-install"])
    func benchBuildAndInstallFailWhenARawStepFails(script: String) async throws {
        let (dir, path) = try Self.fakes([
            "swift": "case \"$*\" in *--show-bin-path*) echo \"$FAKE_BIN\";; esac\nexit 0\n",
            "ka": "case \"$1\" in jobs) echo '[{\"id\": \"x\", \"steps\": []}]';; esac\nexit 0\n",
            // the box's hosts: every step succeeds but makepkg and pacman -U; hertz lists one package
            "ssh": """
                case "$*" in
                  *makepkg*|*"pacman -U"*) echo "fake ssh: $* failed" >&2; exit 1;;
                  *"ls -1t"*) echo linux-fresnel-fourier-7.0-1-aarch64.pkg.tar.zst;;
                  *boot_id*) echo same-boot;;
                esac
                exit 0

                """,
            "scp": "exit 0\n",
        ])
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = dir.appendingPathComponent("ka.yaml")
        try Data("baseline:\n  mirror: \(dir.path)\nsigning:\n  key: ABCDEF\n  repo:\n    dir: /srv/packages/arch/aarch64\ninstall:\n  heartbeat_interval: 1\n".utf8).write(to: config)
        var env = ProcessInfo.processInfo.environment
        env["PATH"] = path
        env["FAKE_BIN"] = dir.path
        env["KA_CONFIG"] = config.path
        env["KA_BOX_SSH_CONFIG"] = "/dev/null"
        env["KA_BENCH_ROUNDS"] = "1"
        env["KA_BENCH_REBOOT_TIMEOUT"] = "5"
        let r = try await Self.runScript([Harness.projectRoot.appendingPathComponent("scripts/\(script)").path], environment: env, timeout: 120)
        #expect(r.status != 0, "\(script): exit \(r.status); stdout: \(r.stdoutText)")
        #expect(r.stderrText.contains("the raw steps failed"), "\(script): \(r.stderrText)")
        // bench-build renders with the real scripts/render-pkgbuild, which fails first here (no baseline tarball)
        let step = script == "bench-build" ? ["render-pkgbuild failed", "makepkg on boltzmann failed"] : ["pacman -U on fresnel failed"]
        #expect(step.contains { r.stderrText.contains($0) }, "\(script): \(r.stderrText)")
        #expect(!r.stdoutText.contains("overhead") && !r.stdoutText.contains("raw steps by hand"), "no figures for a failed run: \(r.stdoutText)")
    }

    @Test func benchServeFailsWhenTheServerAnswersErrors() async throws {
        // wrk reports non-2xx answers (as when every delivery were refused): that is no throughput figure
        let wrk = """
        echo 'Running 1s test @ http://127.0.0.1'
        echo '  Latency Distribution'
        echo '     50%    1.00ms'
        echo '     99%    2.00ms'
        echo '  9000 requests in 1.00s, 1.00MB read'
        echo '  Non-2xx or 3xx responses: 9000'
        echo 'Requests/sec:   9000.00'

        """
        let (dir, path) = try Self.fakes([
            "swift": "case \"$*\" in *--show-bin-path*) echo \"$FAKE_BIN\";; esac\nexit 0\n",
            "wrk": wrk,
        ])
        defer { try? FileManager.default.removeItem(at: dir) }
        var env = ProcessInfo.processInfo.environment
        env["PATH"] = path
        env["FAKE_BIN"] = URL(fileURLWithPath: ChaosTests.kaBinary).deletingLastPathComponent().path   // the real ka serve
        env["BENCH_SECONDS"] = "1"
        let r = try await Self.runScript([Harness.projectRoot.appendingPathComponent("scripts/bench-serve").path], environment: env)
        #expect(r.status != 0, "exit \(r.status); stdout: \(r.stdoutText)")
        #expect(r.stderrText.contains("answered 9000 non-2xx responses"), "\(r.stderrText)")
        #expect(!r.stdoutText.contains("ingest") && !r.stdoutText.contains("target"), "no figures are printed for a failed run")
    }

    @Test func benchRepliesFailsWhenTheDeliveriesNeverGoOut() async throws {
        // a wrk that ends without posting anything: no command is answered, so there is no rate to print
        let (dir, path) = try Self.fakes(["wrk": "sleep 0.3\nexit 0\n"])
        defer { try? FileManager.default.removeItem(at: dir) }
        var env = ProcessInfo.processInfo.environment
        env["PATH"] = path
        env["KA_BENCH_KA"] = ChaosTests.kaBinary   // the real ka serve, no release build
        env["BENCH_BASELINE"] = "0"
        let r = try await Self.runScript([Harness.projectRoot.appendingPathComponent("scripts/bench-replies").path, "50"], environment: env)
        #expect(r.status != 0, "exit \(r.status); stdout: \(r.stdoutText)")
        #expect(r.stderrText.contains("wrk ended early"), "\(r.stderrText)")
        #expect(!r.stdoutText.contains("answered/s"), "no figures are printed for a failed run")
    }

    @Test func benchDashboardFailsWhenTheHarnessFails() async throws {
        // the page timings came, then the burst broke the 30 s rule: the harness exits 1, and no figure is printed
        let (dir, _) = try Self.fakes([
            "harness": "echo 'GET /         (50 hosts, 5000 jobs, 1 KiB): p50 1.00 ms  p99 2.00 ms'\n"
                + "echo 'GET /healthz  (same server, same run): p50 1.00 ms  p99 2.00 ms'\n"
                + "echo 'bench-dashboard: more than one dashboard edit in 30 s' >&2\nexit 1\n",
            "silent": "exit 0\n",
        ])
        defer { try? FileManager.default.removeItem(at: dir) }
        let script = Harness.projectRoot.appendingPathComponent("scripts/bench-dashboard").path
        var env = ProcessInfo.processInfo.environment
        env["KA_BENCH_DASHBOARD_BIN"] = dir.appendingPathComponent("harness").path
        let failed = try await Self.runScript([script, "50", "5000", "100"], environment: env)
        #expect(failed.status != 0, "exit \(failed.status); stdout: \(failed.stdoutText)")
        #expect(failed.stderrText.contains("more than one dashboard edit in 30 s"), "\(failed.stderrText)")
        #expect(!failed.stdoutText.contains("p99"), "no figures are printed for a failed run")
        // a harness that prints nothing is no benchmark either
        env["KA_BENCH_DASHBOARD_BIN"] = dir.appendingPathComponent("silent").path
        let silent = try await Self.runScript([script], environment: env)
        #expect(silent.status != 0)
        #expect(silent.stderrText.contains("printed no figures"), "\(silent.stderrText)")
    }
}
