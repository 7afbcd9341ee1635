import ArgumentParser
import Foundation

/// `ka debug <job-id> [--exec <argv…>]`: the shell a person opens on the build host, in that job's build dir,
/// with the environment the build had (its `.ka-env`); or one command run there.
package struct DebugVerb: InlineVerb {
    package static let configuration = CommandConfiguration(
        commandName: "debug", abstract: "Print the ssh command that opens a shell in a build job's dir (with its environment), or run one command there.")
    @Argument(help: "Build job id (ka jobs lists them).") package var job: String
    @Option(name: .customLong("exec"), parsing: .remaining, help: "Run this argv in the job's dir instead of printing the shell command.")
    package var exec: [String] = []
    package init() {}
    package var lane: Lane { .none }
    package var writesState: Bool { false }
    package func policySubject(in ctx: VerbContext) throws -> PolicySubject { _ = try JobID(job); return PolicySubject() }

    /// Enters the dir and loads the build's environment, then runs the rest of its arguments.
    static let enter = "cd -- \"$1\" && set -a && . ./.ka-env && set +a && shift && exec \"$@\""

    package func plan(in ctx: VerbContext) async throws -> Planned<BuildJobTree> {
        let tree = try BuildJobTree.locate(job, in: ctx)
        return Planned(Plan(verb: Self.verbName, arguments: [job] + (exec.isEmpty ? [] : ["--exec"] + exec),
                    steps: [exec.isEmpty ? "print the ssh command for \(tree.host):\(tree.dir)" : "run \(exec.joined(separator: " ")) in \(tree.host):\(tree.dir)"]), tree)
    }

    package func run(_ planned: Planned<BuildJobTree>, in ctx: VerbContext) async throws -> VerbOutcome {
        let tree = planned.prepared
        if exec.isEmpty {
            let fleet = try FleetTransports.load(ctx.workspace)
            let e = try fleet.endpoint(for: tree.host)
            let s = fleet.settings
            let remote = "cd \(Self.quoted(tree.dir)) && set -a && . ./.ka-env && set +a && exec bash -i"
            // The agent's own ssh settings, spelled out: no ~/.ssh file is read, the host key must be the known one.
            var argv = ["ssh", "-t", "-F", s.configFile ?? "/dev/null"]
            for option in ["IdentityFile=\(s.identityFile)", "IdentitiesOnly=yes", "IdentityAgent=none", "UserKnownHostsFile=\(s.knownHosts)",
                           "GlobalKnownHostsFile=/dev/null", "StrictHostKeyChecking=yes"] {
                argv += ["-o", option]
            }
            argv += ["-p", String(e.port), "-l", e.user, "--", e.address, remote]
            return VerbOutcome("# job \(tree.job): \(tree.host):\(tree.dir)\n" + argv.map(Self.quoted).joined(separator: " ") + "\n")
        }
        let argv: [RemoteArgument] = ["sh", "-c", RemoteArgument(Self.enter), "ka-debug", RemoteArgument(tree.dir)] + exec.map { RemoteArgument($0) }
        let r = try await ctx.transports.transport(for: tree.host).run(RemoteCommand(argv, timeout: .seconds(3600)))
        FileHandle.standardError.write(Data(r.stderr))
        guard r.succeeded else {
            throw KAError.failure("ka debug \(tree.job)", "`\(exec.joined(separator: " "))` exited \(r.status) on \(tree.host) in \(tree.dir)")
        }
        return VerbOutcome(r.stdoutText)
    }

    /// A word as a POSIX shell reads it back, for a line a person pastes.
    static func quoted(_ s: String) -> String {
        if !s.isEmpty, s.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_./=:@,+".contains($0)) }) { return s }
        return "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
