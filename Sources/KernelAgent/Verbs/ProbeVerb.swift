import ArgumentParser
import Foundation

/// `ka probe <host> [--steps N] [--sleep S] [--hold S]`: a harmless job that exercises the job runtime on a
/// host — the transport's cost per step (the benchmark's 100 `true` steps), resume after a restart, and cancel.
/// It writes only one counter file under /srv/kernel-agent/probe/.
package struct ProbeVerb: JobVerb {
    package static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "Run a harmless job on a host: count once, optionally sleep, then N trivial remote steps (tests, benchmarks).",
        discussion: """
        Step 1 appends a line to /srv/kernel-agent/probe/<job-id>.count and then waits --hold seconds; it cannot \
        be repeated, so a job interrupted there fails on resume. Step 2 (with --sleep) sleeps on the host and is \
        safe to run again. Then --steps steps of `true`.
        """)

    @Argument(help: "The host (a host of the fleet: ka status lists them).")
    package var host: HostName

    @Option(help: "How many trivial remote steps (`true`) to run, 0…1000.")
    package var steps: Int = 3

    @Option(help: "Seconds to sleep on the host in a step that may be rerun (0…3600).")
    package var sleep: Int = 0

    @Option(help: "Seconds the counting step waits after counting (0…3600); an interruption there fails the job.")
    package var hold: Int = 0

    package init() {}

    package func validate() throws {
        guard (0...1000).contains(steps) else { throw ValidationError("--steps is 0…1000") }
        guard (0...3600).contains(sleep), (0...3600).contains(hold) else { throw ValidationError("--sleep and --hold are 0…3600 seconds") }
    }

    package var lane: Lane { .host(host) }
    package var jobSubject: String { host.value }
    package var arguments: [String] { [host.value, "--steps", "\(steps)", "--sleep", "\(sleep)", "--hold", "\(hold)"] }

    package static let probeDir = "\(HostChecks.workRoot)/probe"

    package func policySubject(in ctx: VerbContext) throws -> PolicySubject {
        let name = host
        guard try ctx.registry().hosts[name] != nil else {
            throw KAError.refusal("host '\(host)'", "not a host of \(try ctx.registry().file)", hint: "ka status lists the fleet's hosts; \(try ctx.registry().whereToAddHosts)")
        }
        return PolicySubject()
    }

    package func steps(in ctx: VerbContext) throws -> [JobStep] {
        let name = host
        let lane = JobStep.lane(name)
        let hold = self.hold, sleep = self.sleep
        var list = [
            JobStep("count once\(hold > 0 ? ", then hold \(hold) s" : "")", lanes: [lane],
                    resumption: .never(leaves: "the counter under \(Self.probeDir) may or may not have been incremented")) { ctx in
                let file = "\(Self.probeDir)/\(ctx.job).count"
                // A fixed script; the path and the hold come in as its arguments.
                let script = "mkdir -p -- \"$(dirname -- \"$1\")\" && echo counted >> \"$1\" && sleep \"$2\""
                let r = try await ctx.run(RemoteCommand(["sh", "-c", RemoteArgument(script), "probe", RemoteArgument(file), RemoteArgument("\(hold)")],
                                                        timeout: .seconds(hold + 60)), on: name)
                guard r.succeeded else { throw KAError.failure("host \(name)", "counting in \(file) exited \(r.status): \(r.stderrText.prefix(300))") }
                return "counted in \(file)"
            },
        ]
        if sleep > 0 {
            list.append(JobStep("sleep \(sleep) s", lanes: [lane], resumption: .rerun) { ctx in
                let r = try await ctx.run(RemoteCommand(["sleep", RemoteArgument("\(sleep)")], timeout: .seconds(sleep + 60)), on: name)
                guard r.succeeded else { throw KAError.failure("host \(name)", "sleep exited \(r.status)") }
                return "slept"
            })
        }
        for i in 0..<steps {
            list.append(JobStep("true \(i + 1)/\(steps)", lanes: [lane], resumption: .rerun) { ctx in
                let r = try await ctx.run(RemoteCommand(["true"], timeout: .seconds(60)), on: name)
                guard r.succeeded else { throw KAError.failure("host \(name)", "true exited \(r.status)") }
                return "ok"
            })
        }
        return list
    }

    package func summary(of job: JobRecord, in ctx: VerbContext) -> String {
        let done = job.steps.filter { $0.state == .succeeded }.count
        return "probe \(host): \(job.state.rawValue), \(done)/\(job.steps.count) steps\(job.detail.map { " (\($0))" } ?? "") — job \(job.id)"
    }
}
