import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where one host's sshd is: address, port and login user.
package struct SSHEndpoint: Sendable, Equatable, CustomStringConvertible {
    package static let defaultUser = "kbuild"
    package static let defaultPort = 22

    package let address: String
    package let port: Int
    package let user: String

    package init(address: String, port: Int = defaultPort, user: String = defaultUser) throws {
        guard Self.isValidAddress(address) else {
            throw KAError.refusal("ssh address '\(address)'", "not an IP address or host name",
                                  hint: "use an IPv4/IPv6 address or a DNS name (letters, digits, '.', '-', ':'), without user@ or :port")
        }
        guard (1...65535).contains(port) else { throw KAError.refusal("ssh port \(port)", "not in 1…65535") }
        guard Self.isValidUser(user) else {
            throw KAError.refusal("ssh user '\(user)'", "not a valid login name", hint: "lowercase letters, digits, '_' and '-', e.g. kbuild")
        }
        self.address = address; self.port = port; self.user = user
    }

    /// `kbuild@10.213.77.14:22` (IPv6 in brackets).
    package var description: String { "\(user)@\(address.contains(":") ? "[\(address)]" : address):\(port)" }

    /// A host name or IPv4 address (letters, digits, `.`, `-`), or an IPv6 address as inet_pton reads it. A
    /// `host:port` is neither: ssh would take it whole as the host name.
    static func isValidAddress(_ s: String) -> Bool {
        guard let first = s.utf8.first, first != UInt8(ascii: "-"), s.utf8.count <= 253 else { return false }
        if s.utf8.contains(UInt8(ascii: ":")) {
            var addr = in6_addr()
            return inet_pton(AF_INET6, s, &addr) == 1
        }
        return s.utf8.allSatisfy { NameBytes.isLower($0) || NameBytes.isUpper($0) || NameBytes.isDigit($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }
    }

    static func isValidUser(_ s: String) -> Bool {
        guard let first = s.utf8.first, NameBytes.isLower(first) || first == UInt8(ascii: "_"), s.utf8.count <= 32 else { return false }
        return s.utf8.allSatisfy { NameBytes.isLower($0) || NameBytes.isDigit($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
    }
}

/// The agent's own OpenSSH files and timeouts. Nothing comes from `~/.ssh` or the user's agent.
package struct SSHSettings: Sendable, Equatable {
    /// `ssh -F`; nil reads no config file at all (`-F /dev/null`). The options below win over the file's, except
    /// the ones ssh accumulates: an `IdentityFile` in the file is offered after `identityFile`.
    package var configFile: String?
    package var identityFile: String
    package var knownHosts: String
    /// Where the ControlMaster sockets live; a path too long for a socket is replaced by a short private dir.
    package var controlDir: String
    /// Where each call's ssh log (`ssh -E`) is written and read back.
    package var logDir: String
    package var connectTimeout = 10
    package var serverAliveInterval = 15
    package var serverAliveCountMax = 3
    package var controlPersist = 60
    package var program = "ssh"
    /// Between SIGTERM and SIGKILL, locally and on the host.
    package var grace: Swift.Duration = .seconds(2)
    /// The hard cap on the second call that ends a timed-out or cancelled call's processes on the host.
    package var cleanupTimeout: Swift.Duration = .seconds(15)

    package init(configFile: String?, identityFile: String, knownHosts: String, controlDir: String, logDir: String) {
        self.configFile = configFile; self.identityFile = identityFile; self.knownHosts = knownHosts
        self.controlDir = controlDir; self.logDir = logDir
    }

    /// ssh expands `%` tokens and `~` in these options and splits some of them at whitespace; a path that needs
    /// either is refused rather than quoted.
    package static func checkPath(_ path: String, _ what: String) throws {
        guard path.hasPrefix("/") else {
            throw KAError.refusal("\(what) '\(path)'", "not an absolute path", hint: "ssh files are named by absolute paths, never under ~")
        }
        let bad = path.unicodeScalars.first { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7f || "%\"'\\#".unicodeScalars.contains($0) }
        if let bad {
            throw KAError.refusal("\(what) '\(path)'", "holds '\(bad.escaped(asASCII: true))', which ssh would expand or split",
                                  hint: "use a path of letters, digits and / . _ -")
        }
    }
}

/// The system `ssh`, with the agent's own files, BatchMode, strict host keys, a ControlMaster per host, and a hard
/// wall-clock cap on every call. A timed-out or cancelled call ends its processes on the host too (see
/// `RemoteShell.commandLine` and `killScript`): without a pty, the remote command outlives a killed ssh client.
///
/// Copies go through `ssh … cat`, not scp: the same hard cap, remote cleanup, quoting and errors as every call;
/// the remote side writes a temp file, checks its size and renames it, so a cut copy never sits at the final path;
/// and no second protocol (the sftp subsystem) or scp's `host:path` parsing is involved.
package struct OpenSSHTransport: HostTransport {
    package let host: HostName
    package let endpoint: SSHEndpoint
    package let settings: SSHSettings

    package init(host: HostName, endpoint: SSHEndpoint, settings: SSHSettings) throws {
        for (path, what) in [(settings.identityFile, "ssh identity_file"), (settings.knownHosts, "ssh known_hosts"),
                             (settings.controlDir, "ssh control dir"), (settings.logDir, "ssh log dir")] {
            try SSHSettings.checkPath(path, what)
        }
        if let config = settings.configFile { try SSHSettings.checkPath(config, "ssh config_file") }
        self.host = host; self.endpoint = endpoint; self.settings = settings
    }

    package var address: String { endpoint.description }

    // MARK: run

    package func run(_ command: RemoteCommand, onLine: (@Sendable (OutputLine) -> Void)?) async throws -> CommandResult {
        let what = TransportError.shown(command)
        let callID = RemoteShell.newCallID()
        let line = try RemoteShell.commandLine(command.argv, callID: callID)
        let call = try await ssh(line, callID: callID, stdin: command.stdin.map { .bytes($0) } ?? .none, sink: .lines,
                                 timeout: command.timeout, onLine: onLine, noStdin: command.stdin == nil)
        try await check(call, what: what, callID: callID, timeout: command.timeout)
        return CommandResult(status: call.outcome.status, stdout: call.outcome.stdout, stderr: call.outcome.stderr)
    }

    // MARK: copy

    static let copyInScript = #"""
    set -e
    t="$1.ka-tmp-$2"
    trap 'rm -f -- "$t"' EXIT
    trap 'exit 143' TERM
    cat >"$t"
    n=$(wc -c <"$t")
    [ "$n" -eq "$3" ] || { echo "ka-copy: received $n of $3 bytes" >&2; exit 1; }
    mv -f -- "$t" "$1"
    trap - EXIT
    """#

    package func copy(_ local: URL, toRemote path: String, timeout: Swift.Duration) async throws {
        let target = try RemotePath(path, host: host)
        let what = "copy \(local.path) → \(host):\(target)"
        let size: Int
        do {
            let attributes = try FileManager.default.attributesOfItem(atPath: local.path)
            guard attributes[.type] as? FileAttributeType == .typeRegular, let n = attributes[.size] as? NSNumber else {
                throw KAError.refusal(what, "\(local.path) is not a regular file")
            }
            size = n.intValue
        } catch let e as KAError { throw e } catch {
            throw KAError.failure(what, "cannot read \(local.path): \(error.localizedDescription)", cause: error)
        }
        let callID = RemoteShell.newCallID()
        let argv: [RemoteArgument] = ["sh", "-c", RemoteArgument(Self.copyInScript), "ka-copy", RemoteArgument(target.value),
                                      RemoteArgument(callID), RemoteArgument(String(size))]
        let call = try await ssh(try RemoteShell.commandLine(argv, callID: callID), callID: callID, stdin: .file(local),
                                 sink: .lines, timeout: timeout, onLine: nil)
        try await check(call, what: what, callID: callID, timeout: timeout)
        guard call.outcome.status == 0 else {
            throw TransportError.failed(host, address, what, "failed (exit \(call.outcome.status)): \(lastLine(call.outcome.stderr) ?? "no message")")
        }
    }

    package func copy(fromRemote path: String, to local: URL, timeout: Swift.Duration) async throws {
        let source = try RemotePath(path, host: host)
        let what = "copy \(host):\(source) → \(local.path)"
        let callID = RemoteShell.newCallID()
        let temp = local.deletingLastPathComponent().appendingPathComponent("\(FS.tempPrefix)\(local.lastPathComponent)-\(callID)")
        defer { try? FileManager.default.removeItem(at: temp) }   // gone already once renamed into place; else a best-effort cleanup
        let line = try RemoteShell.commandLine(["cat", "--", RemoteArgument(source.value)], callID: callID)
        let call = try await ssh(line, callID: callID, stdin: .none, sink: .file(temp), timeout: timeout, onLine: nil)
        try await check(call, what: what, callID: callID, timeout: timeout)
        guard call.outcome.status == 0 else {
            throw TransportError.failed(host, address, what, "failed (exit \(call.outcome.status)): \(lastLine(call.outcome.stderr) ?? "no message")")
        }
        guard rename(temp.path, local.path) == 0 else {
            throw KAError.failure(what, "cannot move the copy into place: \(String(cString: strerror(errno)))")
        }
    }

    // MARK: ControlMaster

    /// `ssh -O check`: the pid of the running master for this host, if any.
    package func masterPID() async throws -> Int32? {
        let call = try await ssh(nil, control: "check", callID: RemoteShell.newCallID(), stdin: .none, sink: .lines,
                                 timeout: .seconds(10), onLine: nil)
        let text = String(decoding: call.outcome.stderr + call.outcome.stdout, as: UTF8.self)
        guard call.outcome.status == 0, let open = text.range(of: "(pid="), let close = text[open.upperBound...].firstIndex(of: ")") else { return nil }
        return Int32(text[open.upperBound..<close])
    }

    /// `ssh -O exit`: ends this host's master connection (a later call opens a new one).
    package func closeMaster() async throws {
        _ = try await ssh(nil, control: "exit", callID: RemoteShell.newCallID(), stdin: .none, sink: .lines,
                          timeout: .seconds(10), onLine: nil)
    }

    // MARK: the ssh process

    struct Call {
        let outcome: ProcessRunner.Outcome
        /// What ssh itself logged (`-E`), apart from the remote command's stderr.
        let log: String
    }

    /// The ssh argv this transport runs, up to the destination (`… -- <address>`): for running ssh by hand with the
    /// same options and the same master (the benchmark's baseline).
    package func argvByHand(logFile: String) throws -> [String] {
        let controlDir = try ControlSocketDir.resolve(settings.controlDir)
        return arguments(controlDir: controlDir, logFile: logFile) + ["--", endpoint.address]
    }

    /// The argv of `ssh` for this host, every option explicit: no file under ~/.ssh is read or written, and the
    /// options given here win over the config file's.
    func arguments(controlDir: String, logFile: String) -> [String] {
        var argv = [settings.program, "-F", settings.configFile ?? "/dev/null"]
        let options = [
            "BatchMode=yes", "StrictHostKeyChecking=yes", "UserKnownHostsFile=\(settings.knownHosts)",
            "GlobalKnownHostsFile=/dev/null", "UpdateHostKeys=no", "CheckHostIP=no",
            "IdentityFile=\(settings.identityFile)", "IdentitiesOnly=yes", "IdentityAgent=none",
            "ConnectTimeout=\(settings.connectTimeout)", "ServerAliveInterval=\(settings.serverAliveInterval)",
            "ServerAliveCountMax=\(settings.serverAliveCountMax)",
            "ControlMaster=auto", "ControlPersist=\(settings.controlPersist)", "ControlPath=\(controlDir)/%C",
            "LogLevel=ERROR", "RequestTTY=no", "ForwardAgent=no", "ForwardX11=no", "ClearAllForwardings=yes",
        ]
        for option in options { argv += ["-o", option] }
        argv += ["-E", logFile, "-p", String(endpoint.port), "-l", endpoint.user]
        return argv
    }

    private func ssh(_ commandLine: [UInt8]?, control: String? = nil, callID: String, stdin: ProcessRunner.Input,
                     sink: ProcessRunner.Sink, timeout: Swift.Duration,
                     onLine: (@Sendable (OutputLine) -> Void)?, noStdin: Bool = false) async throws -> Call {
        let controlDir = try ControlSocketDir.resolve(settings.controlDir)
        do { try FileManager.default.createDirectory(atPath: settings.logDir, withIntermediateDirectories: true) } catch {
            throw KAError.failure(TransportError.context(host, address), "cannot create the ssh log dir \(settings.logDir): \(error.localizedDescription)", cause: error)
        }
        let logFile = settings.logDir + "/\(callID).log"
        defer { unlink(logFile) }
        var argv = arguments(controlDir: controlDir, logFile: logFile).map { Array($0.utf8) }
        if let control { argv += [Array("-O".utf8), Array(control.utf8)] }
        if noStdin { argv.append(Array("-n".utf8)) }   // nothing to send: the remote side sees EOF at once
        argv += [Array("--".utf8), Array(endpoint.address.utf8)]
        if let commandLine { argv.append(commandLine) }
        let outcome: ProcessRunner.Outcome
        do {
            outcome = try await ProcessRunner.run(argv, stdin: stdin, stdout: sink, timeout: timeout, grace: settings.grace, onLine: onLine)
        } catch let e as KAError {
            throw e.within(TransportError.context(host, address))
        }
        let log: String
        switch FS.readRegular(logFile, limit: 64 * 1024) {
        case let .success(data): log = String(decoding: data, as: UTF8.self)
        case let .failure(problem):
            // No log file: ssh never started to write one (it logs nothing on success at LogLevel=ERROR either).
            log = access(logFile, F_OK) == 0 ? "ssh's log \(logFile) is unreadable: \(problem.message)" : ""
        }
        return Call(outcome: outcome, log: log)
    }

    /// Turns a stopped call or an ssh failure into the error; returns for a command that ran (any exit status).
    private func check(_ call: Call, what: String, callID: String, timeout: Swift.Duration) async throws {
        if let stop = call.outcome.stop {
            let cleanup = await endRemote(callID: callID)
            switch stop {
            case .timedOut: throw TransportError.timedOut(host, address, what, after: timeout, cleanup: cleanup)
            case .cancelled: throw TransportError.cancelled(host, address, what, cleanup: cleanup)
            }
        }
        // ssh exits 255 on its own errors, which it wrote to the -E log; a remote command that exits 255 logs nothing.
        guard call.outcome.status == 255, let detail = lastLine(Array(call.log.utf8)) else { return }
        throw classify(log: call.log, detail: detail, what: what)
    }

    func classify(log: String, detail: String, what: String) -> KAError {
        if log.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
            return TransportError.hostKeyRefused(host, address, "its key is not the one in \(settings.knownHosts) (it changed)",
                                                 knownHosts: settings.knownHosts)
        }
        if log.contains("Host key verification failed") || log.contains("host key is known") {
            return TransportError.hostKeyRefused(host, address, "no known key for it in \(settings.knownHosts)", knownHosts: settings.knownHosts)
        }
        if log.contains("Permission denied") || log.contains("Too many authentication failures") {
            return TransportError.loginRefused(host, address, detail, identity: settings.identityFile)
        }
        let dial = ["connect to host", "Could not resolve hostname", "No route to host", "Network is unreachable",
                    "Connection refused", "Connection timed out", "banner exchange", "kex_exchange_identification",
                    "Connection closed by", "Connection reset by"]
        if log.contains("closed by remote host") || log.contains("not responding") || log.contains("Broken pipe") {
            return TransportError.failed(host, address, what, "connection lost: \(detail)",
                                         hint: "the command may have run, in part or whole; check \(host) before running it again")
        }
        if dial.contains(where: { log.contains($0) }) { return TransportError.unreachable(host, address, detail) }
        return TransportError.failed(host, address, what, "ssh failed: \(detail)")
    }

    /// Ends every process of call `callID` on the host, in a second session. Runs to its own cap even when the
    /// caller's task is cancelled. Returns a note for the error when it could not confirm the processes are gone.
    private func endRemote(callID: String) async -> String? {
        let transport = self
        return await Task {
            let graceSeconds = Int(transport.settings.grace.components.seconds)
            let killID = RemoteShell.newCallID()
            do {
                let argv = try RemoteShell.killCommand(callID: callID, grace: max(1, graceSeconds))
                let call = try await transport.ssh(try RemoteShell.commandLine(argv, callID: killID), callID: killID, stdin: .none,
                                                   sink: .lines, timeout: transport.settings.cleanupTimeout, onLine: nil)
                if call.outcome.stop != nil {
                    return "remote cleanup did not finish within \(TransportError.seconds(transport.settings.cleanupTimeout)); processes with KA_CALL=\(callID) may still run on \(transport.host)"
                }
                if call.outcome.status != 0 {
                    let why = transport.lastLine(call.outcome.stdout) ?? transport.lastLine(Array(call.log.utf8)) ?? "exit \(call.outcome.status)"
                    return "remote cleanup failed (\(why)); processes with KA_CALL=\(callID) may still run on \(transport.host)"
                }
                return nil
            } catch {
                return "remote cleanup failed (\(error)); processes with KA_CALL=\(callID) may still run on \(transport.host)"
            }
        }.value
    }

    func lastLine(_ bytes: [UInt8]) -> String? {
        String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: .whitespaces) }.last { !$0.isEmpty }
    }
}

/// A ControlPath must fit a socket address (108 bytes, and ssh adds a 17-byte suffix while it sets one up), so a
/// long state dir gets a short private stand-in: `/tmp/ka-cm-<uid>-<hash of the dir>`, checked to be ours.
enum ControlSocketDir {
    /// `%C` is 40 hex digits; ssh appends `.` and 16 random characters to the temp socket's name.
    static let maxDirBytes = 107 - 1 - 40 - 17

    static func resolve(_ preferred: String) throws -> String {
        if preferred.utf8.count <= maxDirBytes {
            // ssh makes each socket 0600 itself; the dir needs no check beyond existing.
            do { try FileManager.default.createDirectory(atPath: preferred, withIntermediateDirectories: true,
                                                         attributes: [.posixPermissions: 0o700]) } catch {
                throw KAError.failure("ssh control dir \(preferred)", "cannot create: \(error.localizedDescription)", cause: error)
            }
            return preferred
        }
        let digest = SHA256.hash(data: Data(preferred.utf8)).prefix(6).map { String(format: "%02x", $0) }.joined()
        let short = "/tmp/ka-cm-\(geteuid())-\(digest)"
        try makePrivateDir(short)
        return short
    }

    /// Creates `path` (0700) or accepts it only if it is a real directory of ours that no one else can enter.
    static func makePrivateDir(_ path: String) throws {
        let parent = (path as NSString).deletingLastPathComponent
        do { try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true) } catch {
            throw KAError.failure("ssh control dir \(path)", "cannot create \(parent): \(error.localizedDescription)", cause: error)
        }
        if mkdir(path, 0o700) != 0 && errno != EEXIST {
            throw KAError.failure("ssh control dir \(path)", "cannot create: \(String(cString: strerror(errno)))")
        }
        var st = stat()
        guard lstat(path, &st) == 0 else {
            throw KAError.failure("ssh control dir \(path)", "cannot stat: \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR, st.st_uid == geteuid(), (st.st_mode & 0o077) == 0 else {
            throw KAError.refusal("ssh control dir \(path)", "is not a private directory of this user (a symlink, another owner, or open to others)",
                                  hint: "remove it, or set KA_CONFIG ssh.dir / the state dir to a path of your own")
        }
    }
}
