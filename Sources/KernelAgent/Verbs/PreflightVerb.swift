import ArgumentParser
import Foundation

/// `ka preflight <host> [--json]`: can the pipeline use this host? A job of remote steps: it answers, it has
/// room under /srv/kernel-agent, and the tools its roles need are there. The build verbs run it first.
public struct PreflightVerb: JobVerb {
    public static let configuration = CommandConfiguration(
        commandName: "preflight",
        abstract: "Check a host over SSH: reachable, free disk under /srv/kernel-agent, the tools its roles need.",
        discussion: "Runs as a job (`ka jobs show <id>` has its log). Exits 1 when a check fails, naming the host and its address.")

    @Argument(help: "The host to check (a name from fleet/hosts.yaml).")
    public var host: String

    @Flag(help: "Print the checks as JSON.")
    public var json = false

    public init() {}

    public var lane: Lane { (try? HostName(host)).map(Lane.host) ?? .none }   // a bad name is refused by policySubject
    public var jobSubject: String { host }
    public var arguments: [String] { [host] + (json ? ["--json"] : []) }

    /// The root the pipeline works under on every host (seed: /srv/kernel-agent/…).
    public static let workRoot = "/srv/kernel-agent"

    public func policySubject(in ctx: VerbContext) throws -> PolicySubject {
        let name = try HostName(host)
        guard try ctx.registry().hosts[name] != nil else {
            throw KAError.refusal("host '\(host)'", "not in fleet/hosts.yaml", hint: "ka status lists the fleet's hosts")
        }
        // Preflight only reads, and the signing host is infra: it is checked, never made a target.
        return PolicySubject()
    }

    /// The tools a host's roles need: each entry is satisfied by any one of its alternatives.
    static func tools(for entry: HostEntry) -> [[String]] {
        var need: [[String]] = []
        if entry.roles.contains(.build) || entry.roles.contains(.compileOnly) {
            need += [entry.distro == .debian ? ["dpkg-deb"] : ["makepkg"], ["gcc", "cc", "clang"], ["ccache"]]
        }
        if entry.roles.contains(.signing) { need += [["gpg"], ["repo-add"]] }
        if entry.roles.contains(.target) { need += [entry.distro == .debian ? ["dpkg"] : ["pacman"]] }
        return need
    }

    /// Free space a host needs under the work root: a kernel build tree and its ccache on a build host.
    static func minimumFreeKiB(for entry: HostEntry) -> UInt64 {
        entry.roles.contains(.build) || entry.roles.contains(.compileOnly) ? 10 * 1024 * 1024 : 1024 * 1024
    }

    public func steps(in ctx: VerbContext) throws -> [JobStep] {
        let name = try HostName(host)
        guard let entry = try ctx.registry().hosts[name] else {
            throw KAError.refusal("host '\(host)'", "not in fleet/hosts.yaml", hint: "ka status lists the fleet's hosts")
        }
        let lane = JobStep.lane(name)
        let root = Self.workRoot
        let minimum = Self.minimumFreeKiB(for: entry)
        let tools = Self.tools(for: entry)
        var steps = [
            JobStep("reachable", lanes: [lane], resumption: .rerun) { ctx in
                let r = try await ctx.run(RemoteCommand(["uname", "-n"], timeout: .seconds(30)), on: name)
                guard r.succeeded else { throw Self.failed("uname -n", r, ctx, name) }
                let address = try ctx.transports.transport(for: name).address
                return "answers at \(address) as \(r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines))"
            },
            JobStep("free disk under \(root)", lanes: [lane], resumption: .rerun) { ctx in
                let r = try await ctx.run(RemoteCommand(["df", "-Pk", RemoteArgument(root)], timeout: .seconds(30)), on: name)
                guard r.succeeded else { throw Self.failed("df -Pk \(root)", r, ctx, name) }
                let free = try Self.availableKiB(dfOutput: r.stdoutText, host: name)
                let text = "\(Self.gib(free)) free (needs \(Self.gib(minimum)))"
                guard free >= minimum else { throw KAError.failure("host \(name)", "\(root): only \(text)", hint: "free space under \(root) on \(name)") }
                return text
            },
        ]
        if !tools.isEmpty {
            steps.append(JobStep("tools for \(entry.rolesText)", lanes: [lane], resumption: .rerun) { ctx in
                // A fixed script; the tool names arrive as its positional arguments, never inside it.
                let script = "for t in \"$@\"; do if command -v -- \"$t\" >/dev/null 2>&1; then echo \"ok $t\"; else echo \"missing $t\"; fi; done"
                let names = Array(Set(tools.flatMap { $0 })).sorted()
                let argv: [RemoteArgument] = ["sh", "-c", RemoteArgument(script), "preflight"] + names.map { RemoteArgument($0) }
                let r = try await ctx.run(RemoteCommand(argv, timeout: .seconds(30)), on: name)
                guard r.succeeded else { throw Self.failed("command -v", r, ctx, name) }
                let found = Set(r.stdoutText.split(separator: "\n").compactMap { $0.hasPrefix("ok ") ? String($0.dropFirst(3)) : nil })
                let missing = tools.filter { alternatives in !alternatives.contains(where: found.contains) }
                guard missing.isEmpty else {
                    throw KAError.failure("host \(name)", "missing: \(missing.map { $0.joined(separator: " or ") }.joined(separator: ", "))",
                                          hint: "install them on \(name), or fix its roles in fleet/hosts.yaml")
                }
                return tools.map { alts in alts.first(where: found.contains) ?? alts[0] }.joined(separator: ", ")
            })
        }
        return steps
    }

    static func failed(_ what: String, _ r: CommandResult, _ ctx: StepContext, _ host: HostName) -> KAError {
        let address = (try? ctx.transports.transport(for: host).address) ?? "?"
        let err = r.stderrText.split(separator: "\n").last.map(String.init) ?? ""
        return KAError.failure("host \(host) (\(address))", "`\(what)` exited \(r.status)\(err.isEmpty ? "" : ": \(err)")")
    }

    /// The "Available" column of POSIX `df -Pk` for the one file system listed.
    static func availableKiB(dfOutput: String, host: HostName) throws -> UInt64 {
        let lines = dfOutput.split(separator: "\n")
        guard lines.count >= 2 else { throw KAError.failure("host \(host)", "df printed no file system: \(dfOutput.prefix(200))") }
        let cols = lines[lines.count - 1].split(separator: " ", omittingEmptySubsequences: true)
        guard cols.count >= 6, let free = UInt64(cols[3]) else {
            throw KAError.failure("host \(host)", "cannot read df's output: \(lines[lines.count - 1].prefix(200))")
        }
        return free
    }

    static func gib(_ kib: UInt64) -> String { String(format: "%.1f GiB", Double(kib) / 1024 / 1024) }

    public struct Check: Codable, Sendable {
        public let name: String
        public let state: String
        public let detail: String?
    }

    public func summary(of job: JobRecord, in ctx: VerbContext) -> String {
        if json {
            struct Out: Codable { let host: String; let job: String; let ok: Bool; let state: String; let checks: [Check] }
            let out = Out(host: host, job: job.id.value, ok: job.state == .succeeded, state: job.state.rawValue,
                          checks: job.steps.map { Check(name: $0.name, state: $0.state.rawValue, detail: $0.outcome) })
            let e = JSONEncoder(); e.outputFormatting = [.prettyPrinted, .sortedKeys]
            return (try? e.encode(out)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"   // plain structs always encode
        }
        var lines = job.steps.map { "\($0.state.mark) \($0.name)\($0.outcome.map { ": \($0)" } ?? "")" }
        let verdict: String
        switch job.state {
        case .succeeded: verdict = "preflight \(host): ok"
        case .cancelled: verdict = "preflight \(host): cancelled"
        case .interrupted: verdict = "preflight \(host): interrupted"
        default: verdict = "preflight \(host): FAILED\(job.detail.map { " (\($0))" } ?? "")"
        }
        lines.append(verdict + " — job \(job.id)")
        return lines.joined(separator: "\n")
    }
}
