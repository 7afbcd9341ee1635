import Foundation

/// Runs commands on this machine, with the same contract as the ssh transport: argv only, a hard timeout, the
/// whole process group ended on timeout or cancel, the same errors. Copies obey the remote path rules; with a
/// `root`, remote paths land under it (`/srv/kernel-agent/x` → `<root>/srv/kernel-agent/x`), which lets tests
/// exercise copies without touching the machine's own /srv or /boot.
package struct LocalTransport: HostTransport {
    package let host: HostName
    package let root: URL?
    package let environment: [String: String]?
    /// How long a program gets between SIGTERM and SIGKILL.
    package let grace: Swift.Duration

    package init(host: HostName, root: URL? = nil, environment: [String: String]? = nil, grace: Swift.Duration = .seconds(2)) {
        self.host = host; self.root = root; self.environment = environment; self.grace = grace
    }

    package var address: String { root.map { "local, root \($0.path)" } ?? "local" }

    package func run(_ command: RemoteCommand, onLine: (@Sendable (OutputLine) -> Void)?) async throws -> CommandResult {
        guard !command.argv.isEmpty else { throw KAError.refusal(TransportError.context(host, address), "empty argv") }
        let what = TransportError.shown(command)
        let outcome: ProcessRunner.Outcome
        do {
            outcome = try await ProcessRunner.run(command.argv.map(\.bytes), stdin: command.stdin.map { .bytes($0) } ?? .none,
                                                  environment: environment, workingDirectory: root?.path ?? "/",
                                                  timeout: command.timeout, grace: grace, onLine: onLine)
        } catch let e as KAError {
            throw e.within(TransportError.context(host, address))
        }
        switch outcome.stop {
        case .timedOut?: throw TransportError.timedOut(host, address, what, after: command.timeout)
        case .cancelled?: throw TransportError.cancelled(host, address, what)
        case nil: return CommandResult(status: outcome.status, stdout: outcome.stdout, stderr: outcome.stderr)
        }
    }

    package func copy(_ local: URL, toRemote path: String, timeout: Swift.Duration) async throws {
        let target = try RemotePath(path, host: host)
        try Task.checkCancellation()
        try LocalCopy.place(from: local, to: mapped(target), what: "copy \(local.path) → \(host):\(target)")
    }

    package func copy(fromRemote path: String, to local: URL, timeout: Swift.Duration) async throws {
        let source = try RemotePath(path, host: host)
        try Task.checkCancellation()
        try LocalCopy.place(from: mapped(source), to: local, what: "copy \(host):\(source) → \(local.path)")
    }

    private func mapped(_ path: RemotePath) -> URL {
        guard let root else { return URL(fileURLWithPath: path.value) }
        return root.appendingPathComponent(String(path.value.dropFirst()))
    }
}

/// A copy that never leaves a half-written file at the destination: a temp file beside it, then a rename.
enum LocalCopy {
    static func place(from source: URL, to destination: URL, what: String) throws {
        let data: Data
        do { data = try Data(contentsOf: source) } catch {
            throw KAError.failure(what, "cannot read \(source.path): \(error.localizedDescription)", cause: error)
        }
        do {
            try FS.writeAtomically(data, to: destination)
        } catch let e as KAError {
            throw e.within(what)
        } catch {
            throw KAError.failure(what, "cannot write \(destination.path): \(error.localizedDescription)", cause: error)
        }
    }
}
