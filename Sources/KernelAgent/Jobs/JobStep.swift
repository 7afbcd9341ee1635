import Foundation
import NIOConcurrencyHelpers

/// What a step lets the runtime do after it was interrupted mid-way (a restart, a kill -9, a SIGTERM).
package enum Resumption: Sendable {
    /// Running it again is harmless: it only reads, or its writes land the same way twice.
    case rerun
    /// It can tell whether it already happened (e.g. the package is on the host with the right hash). If so
    /// the job goes on after it; if not, it runs.
    case check(@Sendable (StepContext) async throws -> Bool)
    /// It can neither be repeated nor checked (e.g. "reboot"): the job fails, naming the step and `leaves`,
    /// what state the host may be in. It is never run twice.
    case never(leaves: String)
}

/// One named step of a job: shown in the consent reply and in progress, run with a context, resumable or not.
package struct JobStep: Sendable {
    package let name: String
    /// The lanes it needs, e.g. `host:fresnel`; the job holds the union of its steps' lanes.
    package let lanes: Set<String>
    package let resumption: Resumption
    /// Runs the step; returns one line for the journal (what it found), or throws why it failed.
    package let body: @Sendable (StepContext) async throws -> String

    package init(_ name: String, lanes: Set<String>, resumption: Resumption,
                body: @escaping @Sendable (StepContext) async throws -> String) {
        self.name = name; self.lanes = lanes; self.resumption = resumption; self.body = body
    }

    package static func lane(_ host: HostName) -> String { "host:\(host)" }
}

/// What a step may use: its job's log, the hosts' transports, and a way to run a command on a host that
/// sends every output line to the log as it comes.
package struct StepContext: Sendable {
    package let job: JobID
    package let step: String
    package let workspace: Workspace
    package let log: JobLog
    package let transports: any TransportProvider
    /// Told after each logged output line, so a watcher (the bot's status comment) can show a long step's log
    /// as it grows; the watcher throttles itself.
    package var heartbeat: (@Sendable () -> Void)?
    /// A warning about the running step that people should see now (the job's detail; the status comment).
    package var warn: (@Sendable (String) -> Void)?
    /// How far the running step is (its record's progress: the CLI's step lines, the status comment).
    package var progress: (@Sendable (String) -> Void)?
    /// The job's clock (the runner's): what a step records as "when".
    package let now: @Sendable () -> Date

    package init(job: JobID, step: String, workspace: Workspace, log: JobLog, transports: any TransportProvider,
                now: @escaping @Sendable () -> Date = { Date() }) {
        self.job = job; self.step = step; self.workspace = workspace; self.log = log; self.transports = transports; self.now = now
    }

    /// Runs `command` on `host`, logging each line as `<host> <stream>| <line>` and the exit status.
    /// `observe` is told of each line as it arrives (a stall watcher's heartbeat, a build's progress).
    package func run(_ command: RemoteCommand, on host: HostName, observe: (@Sendable (OutputLine) -> Void)? = nil) async throws -> CommandResult {
        let transport = try transports.transport(for: host)
        let log = self.log
        let source = host.value
        let failures = LogFailures()
        try log.append(source, "$ \(command.shown)")
        let heartbeat = self.heartbeat
        let result = try await transport.run(command) { line in
            observe?(line)
            do { try log.append("\(source) \(line.stream.rawValue)", line.text) } catch { failures.note(error) }
            heartbeat?()
        }
        if let e = failures.first { throw e }
        try log.append(source, "exit \(result.status)")
        return result
    }
}

/// The first failed log write from a line handler, which cannot throw itself.
final class LogFailures: Sendable {
    private let stored = NIOLockedValueBox<Error?>(nil)
    func note(_ e: Error) { stored.withLockedValue { if $0 == nil { $0 = e } } }
    var first: Error? { stored.withLockedValue { $0 } }
}

/// Gives a step the transport for a host (OpenSSH for the fleet, a fake in unit tests).
package protocol TransportProvider: Sendable {
    func transport(for host: HostName) throws -> any HostTransport
}

/// A fixed set of transports by host, for tests and for the local machine.
package struct StaticTransports: TransportProvider {
    package let byHost: [HostName: any HostTransport]
    package init(_ byHost: [HostName: any HostTransport]) { self.byHost = byHost }
    package func transport(for host: HostName) throws -> any HostTransport {
        guard let t = byHost[host] else {
            throw KAError.refusal("host \(host)", "no transport configured", hint: "give it ssh: {address, port, user} in fleet/hosts.yaml or KA_CONFIG")
        }
        return t
    }
}
