import ArgumentParser
import Foundation

/// `ka preflight <host> [--json]`: can the pipeline use this host? A job of remote steps: it answers, it has
/// room under /srv/kernel-agent, and the tools its roles need are there. The build verbs run it first.
package struct PreflightVerb: JobVerb {
    package static let configuration = CommandConfiguration(
        commandName: "preflight",
        abstract: "Check a host over SSH: reachable, free disk under /srv/kernel-agent, the tools its roles need.",
        discussion: "Runs as a job (`ka jobs show <id>` has its log). Exits 1 when a check fails, naming the host and its address.")

    @Argument(help: "The host to check (a host of the fleet: ka status lists them).")
    package var host: HostName

    @Flag(help: "Print the checks as JSON.")
    package var json = false

    @Flag(help: "The nightly checks too: compiler version, ccache health, free inodes, clock skew, and (warning only) the distcc pool.")
    package var thorough = false

    package init() {}

    package var lane: Lane { .host(host) }
    package var jobSubject: String { host.value }
    package var arguments: [String] { [host.value] + (thorough ? ["--thorough"] : []) + (json ? ["--json"] : []) }


    package func policySubject(in ctx: VerbContext) throws -> PolicySubject {
        let name = host
        guard try ctx.registry().hosts[name] != nil else {
            throw KAError.refusal("host '\(host)'", "not a host of \(try ctx.registry().file)", hint: "ka status lists the fleet's hosts; \(try ctx.registry().whereToAddHosts)")
        }
        // Preflight only reads, and the signing host is infra: it is checked, never made a target.
        return PolicySubject()
    }

    package func steps(in ctx: VerbContext) throws -> [JobStep] {
        let name = host
        guard let entry = try ctx.registry().hosts[name] else {
            throw KAError.refusal("host '\(host)'", "not a host of \(try ctx.registry().file)", hint: "ka status lists the fleet's hosts; \(try ctx.registry().whereToAddHosts)")
        }
        // the cross compilers KA_CONFIG names for this host (hosts.<h>.cross_compile), each asked for its arch
        let cross = (try ctx.settings().agent.hosts[name]?.crossCompile ?? [:]).sorted { $0.key.rawValue < $1.key.rawValue }
            .map { HostChecks().crossCompilerCheck(prefix: $0.value, arch: $0.key, host: name) }
        return try HostChecks().checks(for: entry, host: name) + cross + (thorough ? HostChecks().thoroughChecks(for: entry, host: name) : [])
    }

    package struct Check: Codable, Sendable {
        package let name: String
        package let state: String
        package let detail: String?
    }

    package func summary(of job: JobRecord, in ctx: VerbContext) -> String {
        if json {
            struct Out: Codable { let host: String; let job: String; let ok: Bool; let state: String; let checks: [Check] }
            let out = Out(host: host.value, job: job.id.value, ok: job.state == .succeeded, state: job.state.rawValue,
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
