import Foundation

/// What `ka preflight` checks on a host, as job steps: it answers over SSH, has room under the work root, and has
/// the tools its roles need (`--thorough` adds the nightly checks). `ka build`'s routing runs the same quick checks
/// on each candidate, and `ka doctor` runs them for every host the pipeline reaches.
package struct HostChecks: Sendable {
    /// The root the pipeline works under on every host (seed: /srv/kernel-agent/…).
    package static let workRoot = "/srv/kernel-agent"

    package init() {}

    /// What one build asks of its build host besides its roles' tools.
    package struct BuildNeeds: Sendable, Equatable {
        /// The toolchain prefix of a cross-build (`aarch64-linux-gnu-`), nil for a native one.
        package var crossPrefix: String? = nil
        /// The target arch a cross compiler must build for.
        package var targetArch: CPUArch? = nil
        /// Bar 0 runs on the build host: qemu and what the bar0 script uses.
        package var bar0 = false
        package static let none = BuildNeeds()
        package init(crossPrefix: String? = nil, targetArch: CPUArch? = nil, bar0: Bool = false) {
            self.crossPrefix = crossPrefix; self.targetArch = targetArch; self.bar0 = bar0
        }
    }

    /// The tools a host's roles need: each entry is satisfied by any one of its alternatives.
    /// `packaging`: the package a build will make there (a Debian target's .debs on an Arch build host need
    /// dpkg-deb); nil: the host's own distro. `needs`: what the build routed there asks besides.
    static func tools(for entry: HostEntry, packaging: PackageRenderer.Flavour? = nil, needs: BuildNeeds = .none) -> [[String]] {
        var need: [[String]] = []
        if entry.roles.contains(.build) || entry.roles.contains(.compileOnly) {
            let debs = packaging.map { $0 == .debian } ?? (entry.distro == .debian)
            need += [debs ? ["dpkg-deb"] : ["makepkg"], ["gcc", "cc", "clang"], ["ccache"]]
            if let prefix = needs.crossPrefix { need.append(["\(prefix)gcc"]) }
            if needs.bar0 { need += [["qemu-system-aarch64"], ["timeout"], ["bsdtar"], ["depmod"]] }
        }
        if entry.roles.contains(.signing) { need += [["gpg"], ["repo-add"]] }
        if entry.roles.contains(.target) { need += [entry.distro == .debian ? ["dpkg"] : ["pacman"]] }
        return need
    }

    /// Free space a host needs under the work root: a kernel build tree and its ccache on a build host.
    static func minimumFreeKiB(for entry: HostEntry) -> UInt64 {
        entry.roles.contains(.build) || entry.roles.contains(.compileOnly) ? 10 * 1024 * 1024 : 1024 * 1024
    }

    /// The checks as steps; `ka build` runs the same ones inside its routing step.
    /// The name of the tools check starts with this (a build files [ka:bootstrap-missing] when it fails).
    static let toolsCheckPrefix = "tools for "

    package func checks(for entry: HostEntry, host name: HostName, packaging: PackageRenderer.Flavour? = nil,
                        needs: BuildNeeds = .none) throws -> [JobStep] {
        let lane = JobStep.lane(name)
        let root = Self.workRoot
        let minimum = Self.minimumFreeKiB(for: entry)
        let tools = Self.tools(for: entry, packaging: packaging, needs: needs)
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
            steps.append(JobStep("\(Self.toolsCheckPrefix)\(entry.rolesText)", lanes: [lane], resumption: .rerun) { ctx in
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
                                          hint: "install them on \(name), or fix its roles (ka help fleet)")
                }
                return tools.map { alts in alts.first(where: found.contains) ?? alts[0] }.joined(separator: ", ")
            })
        }
        if let prefix = needs.crossPrefix, let arch = needs.targetArch {
            // the compiler is there (the tools check); it must also build for the target's arch
            steps.append(crossCompilerCheck(prefix: prefix, arch: arch, host: name))
        }
        return steps
    }

    /// `<prefix>gcc -dumpmachine` on the host names the arch: a build routed there, and `ka preflight` for each
    /// prefix the host's `cross_compile` names.
    package func crossCompilerCheck(prefix: String, arch: CPUArch, host name: HostName) -> JobStep {
        JobStep("cross compiler \(prefix)gcc builds for \(arch.rawValue)", lanes: [JobStep.lane(name)], resumption: .rerun) { ctx in
            let r = try await ctx.run(RemoteCommand([RemoteArgument("\(prefix)gcc"), "-dumpmachine"], timeout: .seconds(30)), on: name)
            guard r.succeeded else { throw Self.failed("\(prefix)gcc -dumpmachine", r, ctx, name) }
            let machine = r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
            guard machine.hasPrefix(arch.rawValue + "-") else {
                throw KAError.failure("host \(name)", "\(prefix)gcc builds for \(machine), not \(arch.rawValue)",
                                      hint: "set hosts.\(name).cross_compile.\(arch.rawValue) in KA_CONFIG to the prefix of a \(arch.rawValue) compiler")
            }
            return machine
        }
    }

    /// How far the host's clock may be from ours before the nightly check fails (make compares mtimes; gpg dates
    /// signatures).
    static let maximumSkewSeconds = 5.0
    static let minimumFreeInodes: UInt64 = 100_000

    /// `--thorough`: what the nightly timer (webhook/ka-preflight-thorough@.timer) checks besides the quick checks.
    package func thoroughChecks(for entry: HostEntry, host name: HostName) throws -> [JobStep] {
        let lane = JobStep.lane(name)
        let root = Self.workRoot
        let builds = entry.roles.contains(.build) || entry.roles.contains(.compileOnly)
        var steps: [JobStep] = [
            JobStep("free inodes under \(root)", lanes: [lane], resumption: .rerun) { ctx in
                let r = try await ctx.run(RemoteCommand(["df", "-Pi", RemoteArgument(root)], timeout: .seconds(30)), on: name)
                guard r.succeeded else { throw Self.failed("df -Pi \(root)", r, ctx, name) }
                let lines = r.stdoutText.split(separator: "\n")
                let cols = lines.last.map { $0.split(separator: " ", omittingEmptySubsequences: true) } ?? []
                guard lines.count >= 2, cols.count >= 6 else { throw KAError.failure("host \(name)", "cannot read df -Pi: \(r.stdoutText.prefix(200))") }
                guard let total = UInt64(cols[1]), total > 0, let free = UInt64(cols[3]) else {
                    return "not counted by this file system (\(cols[0]))"
                }
                guard free >= Self.minimumFreeInodes else {
                    throw KAError.failure("host \(name)", "\(root): only \(free) free inodes (needs \(Self.minimumFreeInodes))", hint: "prune old build trees and ccache under \(root)")
                }
                return "\(free) free of \(total)"
            },
            JobStep("clock skew", lanes: [lane], resumption: .rerun) { ctx in
                let before = Date()
                let r = try await ctx.run(RemoteCommand(["date", "+%s.%N"], timeout: .seconds(30)), on: name)
                let after = Date()
                guard r.succeeded, let remote = Double(r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                    throw Self.failed("date +%s.%N", r, ctx, name)
                }
                // the remote clock was read somewhere between our two readings: compare with the midpoint
                let local = (before.timeIntervalSince1970 + after.timeIntervalSince1970) / 2
                let skew = remote - local
                let text = String(format: "%+.2f s (round trip %.2f s)", skew, after.timeIntervalSince(before))
                guard abs(skew) <= Self.maximumSkewSeconds + after.timeIntervalSince(before) / 2 else {
                    throw KAError.failure("host \(name)", "its clock is off by \(text)", hint: "check NTP (timedatectl, chrony) on \(name)")
                }
                return text
            },
        ]
        if builds {
            steps.insert(JobStep("compiler version", lanes: [lane], resumption: .rerun) { ctx in
                let r = try await ctx.run(RemoteCommand(["sh", "-c", "for c in gcc cc clang; do if command -v \"$c\" >/dev/null; then \"$c\" --version | head -n 1; exit 0; fi; done; exit 1"],
                                                        timeout: .seconds(30)), on: name)
                guard r.succeeded, let line = r.stdoutText.split(separator: "\n").first else { throw Self.failed("cc --version", r, ctx, name) }
                return String(line)
            }, at: 0)
            steps.insert(JobStep("ccache health", lanes: [lane], resumption: .rerun) { ctx in
                let script = "export CCACHE_DIR=\"$1\"; mkdir -p -- \"$1\" && test -w \"$1\" && ccache --print-stats >/dev/null && ccache --print-stats | awk -F'\\t' '$1 == \"cache_size_kibibyte\" { print $2 }'"
                let r = try await ctx.run(RemoteCommand(["sh", "-c", RemoteArgument(script), "ccache-health", RemoteArgument("\(root)/ccache")], timeout: .seconds(60)), on: name)
                guard r.succeeded else { throw Self.failed("ccache --print-stats (CCACHE_DIR=\(root)/ccache)", r, ctx, name) }
                let kib = UInt64(r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
                return "\(root)/ccache writable, \(kib / 1024) MiB cached"
            }, at: 1)
            steps.append(JobStep("distcc pool (warning only: kernel builds never use distcc)", lanes: [lane], resumption: .rerun) { ctx in
                let script = "command -v distcc >/dev/null || { echo 'no distcc here'; exit 0; }; n=0; up=0; "
                    + "for h in $(distcc --show-hosts 2>/dev/null | sed 's/[/,].*//'); do n=$((n+1)); "
                    + "host=${h%%:*}; if timeout 2 bash -c '</dev/tcp/$1/3632' probe \"$host\" 2>/dev/null; then up=$((up+1)); fi; done; "
                    + "echo \"$up of $n distcc hosts answer\""
                let r = try await ctx.run(RemoteCommand(["bash", "-c", RemoteArgument(script)], timeout: .seconds(60)), on: name)
                let text = r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
                if !r.succeeded { return "warning: cannot check the distcc pool (exit \(r.status))" }
                let parts = text.split(separator: " ")
                if parts.count > 2, parts[0] != parts[2] { return "warning: \(text) (userspace builds are slower; kernel builds are unaffected)" }
                return text
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

}
