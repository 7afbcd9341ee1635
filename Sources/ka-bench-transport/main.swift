import Foundation
import KernelAgent

// The transport half of scripts/bench-transport: N calls of `true` on one host through OpenSSHTransport, with
// KA_CONFIG and fleet/hosts.yaml as every `ka` command reads them.
//   ka-bench-transport ssh-argv --state <dir> <host>      the ssh argv the transport uses (one per line, then the address)
//   ka-bench-transport run --state <dir> --count N <host> N sequential calls; prints "<N> calls in <seconds> s"
// Exits 1 when a call fails or exits non-zero.

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("ka-bench-transport: \(message)\n".utf8))
    exit(1)
}

var args = Array(CommandLine.arguments.dropFirst())
guard let mode = args.first, ["ssh-argv", "run"].contains(mode) else { fail("usage: ssh-argv|run --state <dir> [--count N] <host>") }
args.removeFirst()
var state: String?, count = 100, hostName: String?
while let a = args.first {
    args.removeFirst()
    switch a {
    case "--state": state = args.first; if !args.isEmpty { args.removeFirst() }
    case "--count":
        guard let n = args.first.flatMap(Int.init), n > 0 else { fail("--count needs a positive number") }
        count = n; args.removeFirst()
    default: hostName = a
    }
}
guard let state, let hostName else { fail("--state <dir> and a host are required") }

do {
    let workspace = Workspace.fromEnvironment()
    let stateDir = URL(fileURLWithPath: state)
    let fleet = try FleetTransports(registry: try HostRegistry.load(workspace),
                                    config: try AgentConfig.fromEnvironment(stateDir: stateDir), stateDir: stateDir)
    let transport = try fleet.openSSH(for: try HostName(hostName))
    switch mode {
    case "ssh-argv":
        try FileManager.default.createDirectory(atPath: transport.settings.logDir, withIntermediateDirectories: true)
        for a in try transport.argvByHand(logFile: transport.settings.logDir + "/by-hand.log") { print(a) }
    default:
        let started = ContinuousClock.now
        for i in 0..<count {
            let r = try await transport.run(RemoteCommand(["true"], timeout: .seconds(30)))
            guard r.status == 0 else { fail("call \(i + 1): `true` exited \(r.status): \(r.stderrText)") }
        }
        let (s, atto) = (ContinuousClock.now - started).components
        print("\(count) calls in \(String(format: "%.3f", Double(s) + Double(atto) / 1e18)) s")
    }
} catch {
    fail("\(error)")
}
