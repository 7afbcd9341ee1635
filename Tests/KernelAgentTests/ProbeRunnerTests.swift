import Foundation
import Testing
import KATestSupport
@testable import KernelAgent

/// Probe results on a scripted host (pass, fail, skip, infra-error), the runner's retries, and the real host
/// implementation over the local transport.
@Suite struct ProbeRunnerTests {
    static let cpufreq = "/sys/devices/system/cpu/cpufreq/policy4/cpuinfo_max_freq"

    static func probe(_ text: String) throws -> Probe { try ProbeParser.parse(text, origin: ProbeOrigin(file: "fleet/fresnel.yaml", line: 27)) }

    static func host(deviceTree: Bool = true) throws -> FakeProbeHost {
        let h = FakeProbeHost(host: try HostName("fresnel"), hasDeviceTree: deviceTree)
        h.setFile(cpufreq, text: "2184000\n")
        h.setDeviceTree("/opp-table-1/opp-2184000000", .directory)
        h.setDeviceTree("/opp-table-1/opp-2184000000/opp-microvolt",
                        .content([0x00, 0x14, 0xfb, 0x18, 0x00, 0x14, 0xfb, 0x18, 0x00, 0x15, 0x5c, 0xc0], truncated: false))
        h.setCommand(["dmesg"], ProbeRun(status: 0, stdout: Array("[    0.000000] Booting Linux\n[    1.2] BUG: scheduling while atomic\n".utf8)))
        h.setCommand(["uname", "-r"], ProbeRun(status: 0, stdout: Array("7.0.0-fresnel-fourier\n".utf8)))
        h.setCommand(["false"], ProbeRun(status: 1, stdout: [], stderr: Array("nope\n".utf8)))
        return h
    }

    static func runner(_ host: FakeProbeHost, retries: Int = 2) -> ProbeRunner {
        ProbeRunner(host: host, infraRetries: retries, retryDelay: .zero)
    }

    @Test(arguments: [
        ("file \(cpufreq) == 2184000", ProbeCode.pass),
        ("file \(cpufreq) == 1800000", .fail),
        ("file \(cpufreq) != 1800000", .pass),
        ("file \(cpufreq) >= 2000000", .pass),
        ("file \(cpufreq) < 2184000", .fail),
        ("file \(cpufreq) ~ ^2184", .pass),
        ("file \(cpufreq) exists", .pass),
        ("file \(cpufreq) missing", .fail),
        ("file /sys/devices/system/cpu/cpufreq/policy9/cpuinfo_max_freq == 2184000", .fail),   // missing for ==: fail, not infra
        ("file /sys/devices/system/cpu/cpufreq/policy9/cpuinfo_max_freq missing", .pass),
        ("dt /opp-table-1/opp-2184000000 exists", .pass),
        ("dt /opp-table-1/opp-9999 exists", .fail),
        ("dt /opp-table-1/opp-2184000000:opp-microvolt == \"1375000 1375000 1400000\"", .pass),
        ("dt /opp-table-1/opp-2184000000:opp-hz exists", .fail),
        ("cmd [dmesg] !~ \"BUG:\"", .fail),
        ("cmd [dmesg] ~ \"Booting Linux\"", .pass),
        ("cmd [uname, -r] ~ fresnel-fourier$", .pass),
        ("cmd [uname, -r] == 7.0.0-fresnel-fourier", .pass),
        ("cmd [false] !~ x", .fail),        // a command that fails fails the probe, whatever the check
        ("cmd [lspci] ~ x", .skip),         // not on the host: exit 127
    ])
    func codesOnAScriptedHost(_ text: String, _ code: ProbeCode) async throws {
        let host = try Self.host()
        let result = await Self.runner(host).run(try Self.probe(text))
        #expect(result.code == code, "\(text): \(result.reason) — observed \(result.observed)")
        #expect(result.attempts == 1 && host.calls == 1, "one question, no retry for \(code)")
        #expect(result.probe == text)
    }

    @Test func aFailureShowsWhatTheHostShowed() async throws {
        let host = try Self.host()
        let bug = await Self.runner(host).run(try Self.probe("cmd [dmesg] !~ \"BUG:\""))
        #expect(bug.observed == "[    1.2] BUG: scheduling while atomic", "the matching line, not the whole log")
        #expect(bug.reason.contains("/BUG:/"))
        let wrong = await Self.runner(host).run(try Self.probe("file \(Self.cpufreq) == 1800000"))
        #expect(wrong.observed == "2184000" && wrong.reason == "the value is not \"1800000\"")
        let failed = await Self.runner(host).run(try Self.probe("cmd [false] ~ x"))
        #expect(failed.reason == "the command exited 1" && failed.observed.hasPrefix("nope"))
        // what a host prints is bounded and escaped
        host.setFile("/proc/x", .content(Array(repeating: 0x07, count: 10_000), truncated: true))
        let noisy = await Self.runner(host).run(try Self.probe("file /proc/x == y"))
        #expect(noisy.code == .fail && noisy.observed.hasPrefix("(10000 bytes in 1 line, b2:") && noisy.observed.hasSuffix("; not quoted)"), "\(noisy.observed)")
        // issue 20: a file a failed probe read is not quoted into the regression beyond a short one-line value
        host.setFile("/etc/shadow", text: "root:$y$j9T$secret-hash:19000:0:99999:7:::\nkbuild:$y$j9T$other-secret:19000::::::\n")
        for text in ["file /etc/shadow == x", "file /etc/shadow ~ ^nobody", "file /etc/shadow >= 1", "file /etc/shadow missing"] {
            let leak = await Self.runner(host).run(try Self.probe(text))
            #expect(leak.code == .fail && !leak.observed.contains("secret") && !leak.reason.contains("secret"), "\(text): \(leak.observed) \(leak.reason)")
        }
    }

    @Test func aHostWithoutADeviceTreeSkips() async throws {
        let host = try Self.host(deviceTree: false)
        let result = await Self.runner(host).run(try Self.probe("dt /opp-table-1/opp-2184000000 exists"))
        #expect(result.code == .skip && result.reason == "the host has no /proc/device-tree")
    }

    @Test func aCutOffOutputCannotProveAnAbsence() async throws {
        let host = try Self.host()
        host.setCommand(["journalctl", "-k"], ProbeRun(status: 0, stdout: Array("clean\n".utf8), truncated: true))
        #expect(await Self.runner(host).run(try Self.probe("cmd [journalctl, -k] !~ BUG:")).code == .fail)
        #expect(await Self.runner(host).run(try Self.probe("cmd [journalctl, -k] ~ clean")).code == .pass)
    }

    @Test func infraErrorsAreRetriedAndThenPass() async throws {
        let host = try Self.host()
        host.failNext(2)
        let result = await Self.runner(host, retries: 2).run(try Self.probe("file \(Self.cpufreq) == 2184000"))
        #expect(result.code == .pass && result.attempts == 3 && host.calls == 3, "\(result)")
    }

    @Test func anInfraErrorThatPersistsStaysAnInfraError() async throws {
        let host = try Self.host()
        host.failNext(10, with: TransportError.timedOut(try HostName("fresnel"), "fake", "`cat`", after: .seconds(30)))
        let result = await Self.runner(host, retries: 2).run(try Self.probe("file \(Self.cpufreq) == 1800000"))
        #expect(result.code == .infraError, "a probe that would fail is not reported as one while the host cannot be asked")
        #expect(result.attempts == 3 && host.calls == 3)
        #expect(result.reason.contains("did not finish within 30 s"), "\(result.reason)")
        // retries are configurable, zero included
        let once = await Self.runner(host, retries: 0).run(try Self.probe("cmd [dmesg] !~ x"))
        #expect(once.code == .infraError && once.attempts == 1 && host.calls == 4)
    }

    @Test func theRunnerGivesCommandsItsTimeoutAndKeepsOrder() async throws {
        let host = try Self.host()
        let runner = ProbeRunner(host: host, retryDelay: .zero, commandTimeout: .seconds(7))
        #expect(runner.infraRetries == 2, "the default")
        let results = await runner.run([try Self.probe("cmd [uname, -r] ~ x"), try Self.probe("file \(Self.cpufreq) exists")])
        #expect(results.map(\.code) == [.fail, .pass])
        #expect(host.commandTimeouts == [.seconds(7)])
    }

    // MARK: the real host, over the local transport (the same script ssh runs)

    @Test func theTransportHostReadsFilesDirectoriesAndCommands() async throws {
        // under /var: a probe reads only under its roots, on the host too (the path resolved there)
        let dir = URL(fileURLWithPath: "/var/tmp").appendingPathComponent("ka-probe-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data("2184000\n".utf8).write(to: dir.appendingPathComponent("max freq"))
        try Data(repeating: 0x41, count: ProbeLimits.fileBytes + 10).write(to: dir.appendingPathComponent("big"))
        let host = TransportProbeHost(transport: LocalTransport(host: try HostName("fresnel")))

        let freq = try await host.readFile(dir.appendingPathComponent("max freq").path)
        #expect(freq == .content(Array("2184000\n".utf8), truncated: false), "\(freq)")
        #expect(try await host.readFile(dir.path) == .directory)
        #expect(try await host.readFile(dir.appendingPathComponent("gone").path) == .missing)
        guard case let .content(bytes, truncated) = try await host.readFile(dir.appendingPathComponent("big").path) else {
            Issue.record("big file not read"); return
        }
        #expect(bytes.count == ProbeLimits.fileBytes && truncated)
        let dt = try await host.readDeviceTree("/")
        if FileManager.default.fileExists(atPath: "/sys/firmware/devicetree/base") { #expect(dt == .directory) } else {
            #expect(dt == .notApplicable("the host has no device tree (/sys/firmware/devicetree/base, /proc/device-tree)"))
        }
        await #expect(throws: KAError.self) { _ = try await host.readFile("/sys/../etc/shadow") }
        // a secret outside the roots, reached through a symlink inside them or through /proc/<pid>/{root,cwd}
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("ka-probe-home-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: home) }
        try Data("canary-secret\n".utf8).write(to: home.appendingPathComponent("secret"))
        try FileManager.default.createSymbolicLink(at: dir.appendingPathComponent("link"), withDestinationURL: home.appendingPathComponent("secret"))
        for path in [dir.appendingPathComponent("link").path, "/proc/self/root" + home.appendingPathComponent("secret").path,
                     "/proc/1/root" + home.appendingPathComponent("secret").path] {
            let read = try await host.readFile(path)
            switch read {
            case let .unreadable(why): #expect(why.contains("outside what a probe may read") && !why.contains("canary-secret"), "\(why)")
            case .missing: #expect(path.hasPrefix("/proc/1/"), "\(path): missing")   // pid 1 may live in another mount namespace
            default: Issue.record("\(path) was read: \(read)")
            }
        }

        let run = try await host.run(["printf", "a\\nb\\n"], timeout: .seconds(30))
        #expect(run.status == 0 && run.stdout == Array("a\nb\n".utf8) && !run.truncated)
        // a path with shell syntax is an argument, never part of the script
        let odd = dir.appendingPathComponent("$(touch pwned); x").path
        #expect(try await host.readFile(odd) == .missing)
        #expect(!FileManager.default.fileExists(atPath: "/pwned") && !FileManager.default.fileExists(atPath: dir.appendingPathComponent("pwned").path))
    }

    @Test func aProbeOverTheTransportHostPassesEndToEnd() async throws {
        let host = TransportProbeHost(transport: LocalTransport(host: try HostName("fresnel")))
        let runner = ProbeRunner(host: host, retryDelay: .zero)
        #expect(await runner.run(try Self.probe("file /proc/sys/kernel/ostype == Linux")).code == .pass)
        #expect(await runner.run(try Self.probe("cmd [uname, -s] ~ ^Linux$")).code == .pass)
        #expect(await runner.run(try Self.probe("file /proc/sys/kernel/no-such-knob == 1")).code == .fail)
    }
}
