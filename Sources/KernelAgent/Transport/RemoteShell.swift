import Foundation

/// The one place that turns an argv into the command line a remote shell parses. ssh joins its arguments with
/// spaces and the remote user's shell (POSIX sh family) re-parses the result, so every element is single-quoted
/// here; nothing else in the project concatenates a remote command.
package enum RemoteShell {
    /// Each element in single quotes (an embedded `'` becomes `'\''`), joined by spaces. An empty element stays an
    /// empty argument (`''`). Bytes pass unchanged, so arguments that are not UTF-8 arrive as they were.
    /// A NUL byte cannot be part of any argv and is refused.
    package static func quote(_ argv: [RemoteArgument]) throws -> [UInt8] {
        var out: [UInt8] = []
        for (index, argument) in argv.enumerated() {
            if argument.bytes.contains(0) {
                throw KAError.refusal("remote argument \(index + 1)", "holds a NUL byte, which no argv can carry")
            }
            if index > 0 { out.append(UInt8(ascii: " ")) }
            out.append(UInt8(ascii: "'"))
            for byte in argument.bytes {
                if byte == UInt8(ascii: "'") {
                    out.append(contentsOf: Array("'\\''".utf8))
                } else {
                    out.append(byte)
                }
            }
            out.append(UInt8(ascii: "'"))
        }
        return out
    }

    /// The host's directory for per-call marker files (a cancel marker, see `killScript`).
    package static let runDir = "/srv/kernel-agent/run"

    /// The command line for one call. The remote shell is a session and process-group leader (sshd calls setsid
    /// for each session, with or without a pty); it:
    /// - moves to `/`, so nothing depends on the remote user's home;
    /// - exports `KA_CALL=<id>`, which every process of the call inherits, so `killScript` can find them all;
    /// - exits at once if that call was already cancelled (a cancel that raced the start);
    /// - runs the argv with `command`, as `ssh host argv` would (a shell builtin such as `true` or `printf` runs in
    ///   the shell; shell functions from the user's rc files are bypassed). bash and dash exec a program that is
    ///   the last command of `sh -c` in the shell's place, so no extra process stays behind; if one did, it would
    ///   be in the same session and process group and carry KA_CALL, and the kill script would find it.
    package static func commandLine(_ argv: [RemoteArgument], callID: String) throws -> [UInt8] {
        guard !argv.isEmpty else { throw KAError.refusal("remote command", "empty argv") }
        try checkCallID(callID)
        let prefix = "cd / || exit 125; export KA_CALL=\(callID); [ -e \(runDir)/\(callID).cancel ] && exit 143; command "
        return Array(prefix.utf8) + (try quote(argv))
    }

    /// A sh script, run as `sh -c <script> ka-kill <call-id> <grace-seconds>` in a second session: it leaves the
    /// cancel marker (in case the call has not started yet), then sends SIGTERM to every process that carries
    /// `KA_CALL=<call-id>` and to its process group, waits up to the grace, and sends SIGKILL to what is left.
    /// It prints `ka-kill: <n> process(es) ended` and exits 0 when none is left, 1 otherwise.
    package static let killScript = #"""
    id=$1; grace=$2; run=/srv/kernel-agent/run
    mkdir -p "$run" 2>/dev/null && : >"$run/$id.cancel"
    find "$run" -maxdepth 1 -name '*.cancel' -mmin +1440 -delete 2>/dev/null
    members() {
      for f in $(grep -lsxz "KA_CALL=$id" /proc/[0-9]*/environ 2>/dev/null); do
        p=${f#/proc/}; p=${p%/environ}
        s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        set -- ${s##*) }
        echo "$p $3"
      done
    }
    signal() {
      members | while read -r p g; do kill "-$1" "$p" 2>/dev/null; kill "-$1" "-$g" 2>/dev/null; done
    }
    n=$(members | wc -l)
    [ "$n" -eq 0 ] && { echo "ka-kill: 0 processes ended"; exit 0; }
    signal TERM
    i=0
    while [ -n "$(members)" ] && [ "$i" -lt $((grace * 10)) ]; do sleep 0.1; i=$((i + 1)); done
    signal KILL
    i=0
    while [ -n "$(members)" ] && [ "$i" -lt 20 ]; do sleep 0.1; i=$((i + 1)); done
    left=$(members | wc -l)
    echo "ka-kill: $n processes ended, $left left"
    [ "$left" -eq 0 ]
    """#

    /// The argv that ends call `callID` on the host (see `killScript`).
    package static func killCommand(callID: String, grace: Int) throws -> [RemoteArgument] {
        try checkCallID(callID)
        return ["sh", "-c", RemoteArgument(killScript), "ka-kill", RemoteArgument(callID), RemoteArgument(String(max(0, grace)))]
    }

    /// A fresh call id: 16 lowercase hex digits.
    package static func newCallID() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<16).map { _ in String(Int.random(in: 0..<16, using: &generator), radix: 16) }.joined()
    }

    static func checkCallID(_ id: String) throws {
        guard !id.isEmpty, id.utf8.count <= 64, id.utf8.allSatisfy({ NameBytes.isDigit($0) || NameBytes.isLower($0) }) else {
            throw KAError.refusal("call id '\(id)'", "not lowercase letters and digits")
        }
    }
}

/// An absolute path on a remote host that the agent may write or read: under one of the roots the seed design
/// names, with no `.`, `..` or empty component, and never under a home directory.
package struct RemotePath: Sendable, Equatable, CustomStringConvertible {
    package let value: String

    /// `/srv/kernel-agent/…` (source, ccache, output, keep, run, staging), `/boot` (install), the host's own
    /// `/etc/kernel-agent` and `/var/cache/kernel-agent`, the signing host's published repo (`/srv/packages`) and its
    /// backups and archive (`/sparfuxdata/kernel-agent-*`).
    package static let allowedRoots = [
        "/srv/kernel-agent", "/boot", "/etc/kernel-agent", "/var/cache/kernel-agent", "/srv/packages",
        "/sparfuxdata/kernel-agent-backups", "/sparfuxdata/kernel-agent-archive",
    ]

    package init(_ raw: String, host: HostName? = nil) throws {
        let context = host.map { "\($0):\(raw)" } ?? raw
        let hint = "remote paths are absolute and under \(Self.allowedRoots.joined(separator: ", "))"
        guard raw.hasPrefix("/") else {
            let why = raw.hasPrefix("~") ? "names a home directory" : "is not absolute"
            throw KAError.refusal("remote path '\(context)'", why, hint: hint)
        }
        guard !raw.utf8.contains(0) else { throw KAError.refusal("remote path '\(context)'", "holds a NUL byte") }
        let parts = raw.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        for part in parts where part == ".." || part == "." || part.isEmpty {
            throw KAError.refusal("remote path '\(context)'", part == ".." ? "has a '..' component" : "has an empty or '.' component",
                                  hint: "name the file by its plain absolute path")
        }
        if parts.first == "home" || parts.first == "root" {
            throw KAError.refusal("remote path '\(context)'", "is under a home directory", hint: hint)
        }
        guard Self.allowedRoots.contains(where: { raw == $0 || raw.hasPrefix($0 + "/") }) else {
            throw KAError.refusal("remote path '\(context)'", "is outside the agent's roots", hint: hint)
        }
        value = raw
    }

    package var description: String { value }
}
