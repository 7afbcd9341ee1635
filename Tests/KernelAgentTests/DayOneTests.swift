import Foundation
import Testing
import KATestSupport
@testable import KernelAgent

/// Issue 17: `ka` on a replica of the user's own kernel-agent repo, as it stands (no fleet/hosts.yaml, their keys,
/// comments, patch shape and .gitignore), built here from the facts in shared/notes/upstream-kernel-agent.md.
@Suite struct DayOneTests {
    /// A window of a file's lines, before and after, as their tools write a diff: `--- a/` and `+++ b/`, no
    /// `diff --git` or `index` line, no function context. Common leading and trailing lines are the context.
    static func udiff(_ file: String, start: Int, before: [String], after: [String]) -> String {
        var pre = 0
        while pre < before.count && pre < after.count && before[pre] == after[pre] { pre += 1 }
        var post = 0
        while post < before.count - pre && post < after.count - pre && before[before.count - 1 - post] == after[after.count - 1 - post] { post += 1 }
        var body = ""
        for l in before[..<pre] { body += " \(l)\n" }
        for l in before[pre..<(before.count - post)] { body += "-\(l)\n" }
        for l in after[pre..<(after.count - post)] { body += "+\(l)\n" }
        for l in before[(before.count - post)...] { body += " \(l)\n" }
        return "--- a/\(file)\n+++ b/\(file)\n@@ -\(start),\(before.count) +\(start),\(after.count) @@\n" + body
    }

    /// Their patch shape: `From:` first (no `From <sha>` line), Date, Subject, Generated-by/Signed-off-by trailers,
    /// `---` and a diffstat, the diff, no `-- ` signature, a trailing blank line.
    static func theirMail(_ subject: String, _ diff: String) -> String {
        "From: Markus Fritsche <fritsche.markus@gmail.com>\nDate: Sat, 9 May 2026 10:00:00 +0200\nSubject: [PATCH] \(subject)\n\n"
            + "Why this is needed, in a sentence or two.\n\nGenerated-by: Claude (noether)\nSigned-off-by: Markus Fritsche <fritsche.markus@gmail.com>\n"
            + "---\n 1 file changed\n\n\(diff)\n"
    }

    static func lines(_ tag: String) -> [String] { (1...60).map { "\(tag) line \($0);" } }

    /// `n` lines from `at` (1-based) of `base`, with `edit` applied to that window.
    static func patch(_ file: String, base: [String], at: Int, _ edit: (inout [String]) -> Void) -> String {
        let window = Array(base[(at - 1)..<(at - 1 + 7)])
        var after = window
        edit(&after)
        return udiff(file, start: at, before: window, after: after)
    }

    static let dts = "arch/arm64/boot/dts/rockchip/rk3399-pinebook-pro.dts"
    static let vb2 = "drivers/media/common/videobuf2/videobuf2-core.c"
    static let bes = "drivers/staging/bes2600/bh.c"
    static let makefile = "arch/arm64/lib/Makefile"
    static let genbook = "arch/arm64/boot/dts/rockchip/rk3588-coolpi-cm5-genbook.dts"
    static let vb2Dir = "subsystem/media/videobuf2/dma-resv-release-fence"

    /// The replica: their manifests (with comments), their fleet/README.md and .gitignore, their patch tree (fresnel's
    /// 6, ohm's 4 stacked series, ampere's board patch), a baseline tree the patches apply to, and a packages checkout
    /// with fresnel's recipe. A git repo with everything committed.
    static func replica() async throws -> Sandbox {
        let s = try Sandbox(copyShipped: false)
        try FileManager.default.removeItem(at: s.url("fleet/hosts.yaml"))
        try s.write(".gitignore", "build/\n__pycache__/\n*.pyc\n/.ka/\n/base/\n/packages/\n")
        try s.write("README.md", "# kernel-agent\n\nThe kernel side of the fleet. See fleet/README.md.\n")
        try s.write("fleet/README.md", """
        # Per-host manifests

        One YAML per fleet member opting in to kernel-agent. Each manifest pins: baseline kernel tree + ref ·
        scope-tagged patch includes (resolved against `../patches/`) · config strategy · package naming + install mode ·
        verification bars · build host routing · backup target. Manifest is the single source of truth.

        """)
        try s.write("fleet/fresnel.yaml", """
        # fresnel — Pinebook Pro (RK3399). Bootstrap reference build 2026-05-09.
        baseline:
          tree: https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git   # PR #23: mmind → torvalds
          ref: v7.0
        patch_authoring_context: mmind/linux-rockchip   # informational: mmind ships no plain v7.0 tag
        package:
          name: linux-fresnel-fourier
          template_at: marfrit-packages/arch/linux-fresnel-fourier/
        build_host:
          primary: boltzmann
          fallback: fermi
        includes:
          - path: board/pinebook-pro/        # OC OPP tables 1704/2184, HDMI sound, spi1 10 MHz
            apply_order: 1
          # 2026-05-15: moved from excluded to includes (v2 landed)
          - path: \(vb2Dir)/
            apply_order: 2
        excluded:
          - driver/bes2600/cumulative-c5x-danctnix/   # ohm only: no bes2600 on the Pinebook Pro

        """)
        try s.write("fleet/ohm.yaml", """
        # ohm — PineTab2 (RK3566), DanctNIX baseline. Series-letter legend: boltzmann:~/src/besser/marfrit-besser/
        # danctnix-besser-pkgbuild/kernel/ changelog.
        baseline:
          tree: https://github.com/dreemurrs-embedded/linux-pinetab2.git
          ref: v7.0-danctnix1
        package:
          name: linux-pinetab2-danctnix-besser
          template_at: marfrit-packages/arch/linux-pinetab2-danctnix-besser/
        build_host:
          primary: boltzmann
        includes:
          - driver/bes2600/cumulative-c5x-danctnix/
          - driver/bes2600/scan-filter-5ghz-danctnix/
          - arch/arm64/scs-arm-neon-build-fix/
          - driver/bes2600/queue-pending-record-lock-bh-danctnix/
        apply_order:   # each bes2600 series is written on top of the one before
          - driver/bes2600/cumulative-c5x-danctnix/
          - driver/bes2600/scan-filter-5ghz-danctnix/
          - arch/arm64/scs-arm-neon-build-fix/
          - driver/bes2600/queue-pending-record-lock-bh-danctnix/

        """)
        try s.write("fleet/ampere.yaml", """
        # ampere — CoolPi CM5 GenBook (RK3588)
        baseline:
          tree: https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git
          ref: v7.0-rc3
        package:
          name: linux-ampere-fourier
        build_host:
          primary: boltzmann
        includes:
          - path: board/coolpi-cm5-genbook/
            apply_order: 1

        """)
        let dtsLines = lines("pbp"), vb2Lines = lines("vb2"), besLines = lines("bes"), mkLines = lines("mk"), gbLines = lines("gb")
        let board = [("0001-arm64-dts-rk3399-pinebook-pro-add-OC-OPP-tables-1704-2184.patch", 10),
                     ("0002-arm64-dts-rk3399-pinebook-pro-enable-HDMI-sound.patch", 25),
                     ("0003-arm64-dts-rk3399-pinebook-pro-cap-spi1-at-10-MHz.patch", 40)]
        for (name, at) in board {
            try s.write("patches/board/pinebook-pro/\(name)", theirMail(name, patch(dts, base: dtsLines, at: at) { $0.insert("\t/* \(name) */", at: 3) }))
        }
        try s.write("patches/\(vb2Dir)/0000-cover-letter.patch", "From: Markus Fritsche <fritsche.markus@gmail.com>\nSubject: [PATCH 0/3] vb2: release fences\n\n*** BLURB ***\n")
        for (name, at) in [("0004-media-vb2-a.patch", 10), ("0005-media-vb2-b.patch", 25), ("0006-media-vb2-c.patch", 40)] {
            try s.write("patches/\(vb2Dir)/\(name)", theirMail(name, patch(vb2, base: vb2Lines, at: at) { $0.insert("\t/* \(name) */", at: 3) }))
        }
        // ohm's stack: each series edits what the one before added, in one driver file
        let c5x = "\tbes2600_queue_scan_results(hw_priv);"
        let filter = "\tif (!bes2600_scan_filter_5ghz(hw_priv)) bes2600_queue_scan_results(hw_priv);"
        let locked = "\tspin_lock_bh(&hw_priv->pending_lock); if (!bes2600_scan_filter_5ghz(hw_priv)) bes2600_queue_scan_results(hw_priv); spin_unlock_bh(&hw_priv->pending_lock);"
        var afterC5x = besLines
        afterC5x.insert(c5x, at: 40)
        var afterFilter = afterC5x
        afterFilter[40] = filter
        try s.write("patches/driver/bes2600/cumulative-c5x-danctnix/0001-bes2600-cumulative-c5x.patch",
                    theirMail("bes2600: cumulative c5x", patch(bes, base: besLines, at: 38) { $0.insert(c5x, at: 3) }))
        try s.write("patches/driver/bes2600/scan-filter-5ghz-danctnix/0001-bes2600-scan-filter-5ghz.patch",
                    theirMail("bes2600: filter 5 GHz scan results", patch(bes, base: afterC5x, at: 38) { $0[3] = filter }))
        try s.write("patches/driver/bes2600/queue-pending-record-lock-bh-danctnix/0001-bes2600-queue-pending-record-lock-bh.patch",
                    theirMail("bes2600: take the pending lock with bh off", patch(bes, base: afterFilter, at: 38) { $0[3] = locked }))
        try s.write("patches/arch/arm64/scs-arm-neon-build-fix/0001-arm64-xor-neon-ffixed-x18.patch",
                    theirMail("arm64: build xor-neon with -ffixed-x18 under SCS", patch(makefile, base: mkLines, at: 5) { $0.insert("CFLAGS_xor-neon.o += -ffixed-x18", at: 3) }))
        try s.write("patches/board/coolpi-cm5-genbook/0001-arm64-dts-rk3588-genbook-board.patch",
                    theirMail("arm64: dts: rk3588: coolpi cm5 genbook", patch(genbook, base: gbLines, at: 10) { $0.insert("\t/* genbook */", at: 3) }))
        for (file, l) in [(dts, dtsLines), (vb2, vb2Lines), (bes, besLines), (makefile, mkLines), (genbook, gbLines)] {
            try s.write("base/\(file)", l.joined(separator: "\n") + "\n")
        }
        // their packages checkout, with fresnel's recipe (a PKGBUILD that applies the cumulative, and a copy of one patch)
        let recipe = "packages/marfrit-packages/arch/linux-fresnel-fourier"
        try s.write("\(recipe)/PKGBUILD", """
        pkgbase=linux-fresnel-fourier
        pkgname=(linux-fresnel-fourier)
        _srctag=v0.0
        pkgver=7.0
        pkgrel=0
        _cumulative_b2sum=SKIP
        arch=(aarch64)
        source=("0001-fresnel-cumulative-series.patch" config)
        b2sums=("$_cumulative_b2sum" SKIP)

        """)
        try s.write("\(recipe)/config", "CONFIG_ARCH_ROCKCHIP=y\n")
        try s.write("\(recipe)/\(board[0].0)", try s.read("patches/board/pinebook-pro/\(board[0].0)"))
        try await git(s, ["init", "-q"])
        try await git(s, ["add", "-A"])
        try await git(s, ["commit", "-q", "-m", "their repo as it stands"])
        return s
    }

    @discardableResult
    static func git(_ s: Sandbox, _ args: [String]) async throws -> String {
        let r = try await TestCommand.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"] + args, cwd: s.root)
        try #require(r.status == 0, "git \(args.joined(separator: " ")): \(r.stderrText)")
        return r.stdoutText
    }

    /// A KA_CONFIG for the replica: addresses on loopback (nothing listens on port 9), their packages checkout.
    static func config(_ s: Sandbox) throws -> String {
        // outside the replica: the agent's config is not part of their repo
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ka-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.appendingPathComponent("ka.yaml").path
        try Data("""
        hosts:
          boltzmann: {ssh: {address: 127.0.0.1, port: 9}}
          fermi: {ssh: {address: 127.0.0.1, port: 9}}
        build:
          packages_checkout: \(s.url("packages/marfrit-packages").path)

        """.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func theirRepoAsItStandsAdoptThenPromoteWithNoFlagsInTheirLayout() async throws {
        let s = try await Self.replica()
        let env = ["KA_CONFIG": try Self.config(s)]
        // before adopt: the hard rule still holds, and says what to run
        let early = try await KaRun.run(["promote", "fresnel"], root: s.root, env: env)
        #expect(early.status == 2 && early.stderr.contains("unscoped patch") && early.stderr.contains("ka adopt"), "\(early.stderr)")
        #expect(!early.stderr.contains("hosts.yaml"), "no registry file is asked for: \(early.stderr)")
        let adopt = try await KaRun.run(["adopt"], root: s.root, env: env)
        #expect(adopt.status == 0, "\(adopt.stderr)")
        try await Self.git(s, ["commit", "-q", "-am", "ka adopt: Scope: trailers"])
        let promote = try await KaRun.run(["promote", "fresnel"], root: s.root, env: env)
        #expect(promote.status == 0, "\(promote.stderr)")
        let dir = "build/fresnel/v7.0"
        #expect(s.exists("\(dir)/0001-fresnel-cumulative-series.patch") && s.exists("\(dir)/manifest.lock") && s.exists("\(dir)/apply-report.txt"))
        #expect(!s.exists("out"))
        let lock = try s.read("\(dir)/manifest.lock")
        #expect(lock.contains("path: \"0001-fresnel-cumulative-series.patch\""), "\(lock)")
        #expect(lock.contains("apply_order: \"manifest\""))
        let cumulative = try s.read("\(dir)/0001-fresnel-cumulative-series.patch")
        #expect(!cumulative.contains("*** BLURB ***"), "the cover letter is skipped")
        #expect(cumulative.components(separatedBy: "Subject: [PATCH]").count == 7, "board 0001–0003 then vb2 0004–0006")
        #expect(try await Self.git(s, ["status", "--porcelain"]).isEmpty, "promote leaves git status clean")
        // the suffix came from package.name, and the run says so
        #expect(lock.contains("kernel_suffix: \"fresnel-fourier\""))
        // the stacked bes2600 series promote in apply_order, and apply one on the other to the baseline
        let ohm = try await KaRun.run(["promote", "ohm", "--validate-against", s.url("base").path], root: s.root, env: env)
        #expect(ohm.status == 0, "\(ohm.stderr)")
        #expect(try s.read("build/ohm/v7.0-danctnix1/manifest.lock").contains("apply_check: \"pass"), "\(ohm.stdout)")
        #expect(try await Self.git(s, ["status", "--porcelain"]).isEmpty)
        // status lists every manifest host
        let status = try await KaRun.run(["status"], root: s.root, env: env)
        #expect(status.status == 0, "\(status.stderr)")
        for host in ["fresnel", "ohm", "ampere"] { #expect(status.stdout.contains(host), "\(host) missing: \(status.stdout)") }
        // build finds the lock (and the recipe): the job starts, then fails at routing (nothing listens on port 9)
        let build = try await KaRun.run(["build", "fresnel"], root: s.root, env: env, deadline: 120)
        #expect(!build.stderr.contains("no lock") && !build.stderr.contains("ka build: refused"), "\(build.stderr)")
        #expect(build.stderr.contains("ka build: job fresnel-"), "the plan passed the lock check and a job started: \(build.stderr)")
        let job = build.stderr.split(separator: "\n").first { $0.hasPrefix("ka build: job ") }.map { String($0.dropFirst("ka build: job ".count)) } ?? "?"
        let shown = try await KaRun.run(["jobs", "show", job], root: s.root, env: env)
        #expect(shown.stdout.contains("check the recipe marfrit-packages/arch/linux-fresnel-fourier/ against the lock"), "\(shown.stdout)\(shown.stderr)")
        #expect(try await Self.git(s, ["status", "--porcelain"]).isEmpty)
    }

    @Test func theRegistryIsDerivedFromTheManifestsAndKAConfig() async throws {
        let s = try await Self.replica()
        let agent = try AgentConfig.parse("hosts:\n  boltzmann: {arch: aarch64}\n  lagrange: {distro: debian, arch: x86_64}\n", file: "ka.yaml", stateDir: s.url(".ka"))
        let pipeline = try PipelineConfig.parse("signing: {host: hertz, key: \(String(repeating: "A", count: 40)), repo: {name: marfrit, dir: /srv/repo}}\n", file: "ka.yaml")
        let r = try HostRegistry.derive(s.ws, agent: agent, pipeline: pipeline)
        #expect(r.derived)
        func roles(_ h: String) -> Set<HostRole> { r.hosts[try! HostName(h)]?.roles ?? [] }
        #expect(roles("fresnel") == [.target] && roles("ohm") == [.target] && roles("ampere") == [.target])
        let boltzmann = try HostName("boltzmann"), fermi = try HostName("fermi"), lagrange = try HostName("lagrange")
        #expect(roles("boltzmann") == [.build] && r.hosts[boltzmann]?.buildTier == .primary)
        #expect(roles("fermi") == [.build] && r.hosts[fermi]?.buildTier == .fallback)
        #expect(roles("hertz") == [.signing, .infra], "the design's infra host stays infra")
        #expect(r.hosts[lagrange]?.distro == .debian && roles("lagrange").isEmpty)
        #expect(r.routing[.aarch64] == [boltzmann, fermi], "primaries before fallbacks")
        // an infra host's manifest is no target without opt-in, derived registry or not
        try s.write("fleet/hertz.yaml", "baseline: {tree: t, ref: v7.0}\nkernel_suffix: hz\nincludes: [board/pinebook-pro/]\n")
        let refused = try await KaRun.run(["promote", "hertz"], root: s.root, env: ["KA_CONFIG": ""])
        #expect(refused.status == 2 && refused.stderr.contains("infra host") && refused.stderr.contains("infra_opt_in"), "\(refused.stderr)")
        // fleet/hosts.yaml, when present, wins
        try s.write("fleet/hosts.yaml", Sandbox.miniRegistry)
        let listed = try HostRegistry.load(s.ws, env: [:])
        let fresnel = try HostName("fresnel"), bob = try HostName("bob")
        #expect(!listed.derived && listed.hosts[fresnel] == nil && listed.hosts[bob] != nil)
        // an unknown host's refusal says how to add one in a derived fleet, not "see fleet/README.md"
        try FileManager.default.removeItem(at: s.url("fleet/hosts.yaml"))
        let unknown = try await KaRun.run(["build", "nosuch"], root: s.root, env: ["KA_CONFIG": ""])
        #expect(unknown.status == 2 && !unknown.stderr.contains("README"), "\(unknown.stderr)")
    }

    @Test func theirSpellingsAreReadAndATypoStillNamesTheFix() throws {
        let base = "baseline: {tree: t, ref: v7.0}\nincludes: [board/b/]\n"
        let fresnel = try HostName("fresnel")
        // host: optional; the suffix from package.name; patch_authoring_context at the top level
        var m = try Manifest.parse(Data((base + "package: {name: linux-fresnel-fourier}\npatch_authoring_context: mmind\n").utf8), host: fresnel, file: "fleet/fresnel.yaml")
        #expect(m.kernelSuffix == "fresnel-fourier" && m.kernelSuffixSource.contains("package.name linux-fresnel-fourier"))
        #expect(m.baseline.authoringContext == "mmind")
        m = try Manifest.parse(Data((base + "kernel_suffix: own\npackage: {name: linux-x}\n").utf8), host: fresnel, file: "fleet/fresnel.yaml")
        #expect(m.kernelSuffix == "own" && m.kernelSuffixSource == "kernel_suffix")
        let cases: [(String, String)] = [
            (base + "host: ohm\nkernel_suffix: x\n", "names host 'ohm' but the file is for 'fresnel'"),
            (base, "missing required key 'kernel_suffix'"),
            (base + "kernel_suffix: x\npatch_authoring_contxt: m\n", "did you mean 'patch_authoring_context'?"),
            (base + "kernel_sufix: x\n", "did you mean 'kernel_suffix'?"),
            (base + "kernel_suffix: x\npatch_authoring_context: a\nbaseline2: 1\n", "unknown key 'baseline2'"),
        ]
        for (text, expected) in cases {
            do {
                _ = try Manifest.parse(Data(text.utf8), host: fresnel, file: "fleet/fresnel.yaml")
                Issue.record("accepted: \(text)")
            } catch let e as KAError {
                #expect(e.description.contains(expected) && e.description.contains("fleet/fresnel.yaml:"), "\(e.description)")
            }
        }
        let twice = "baseline: {tree: t, ref: v7.0, patch_authoring_context: a}\nkernel_suffix: x\npatch_authoring_context: b\n"
        #expect(throws: KAError.self) { try Manifest.parse(Data(twice.utf8), host: fresnel, file: "fleet/fresnel.yaml") }
    }

    @Test func anEarlierOutDirIsNotedNotRefused() async throws {
        let s = try PromoteTests.tree()
        try s.write("out/h1/manifest.lock", "lock_version: 3\n")
        let r = try await KaRun.run(["promote", "h1"], root: s.root)
        #expect(r.status == 0 && r.stdout.contains("note: out/h1/ is from an earlier promote"), "\(r.stdout)\(r.stderr)")
        #expect(s.exists("build/h1/v7.0/manifest.lock"))
        // a build without a lock in the new place says where the old one is
        try FileManager.default.removeItem(at: s.url("build"))
        let b = try await KaRun.run(["build", "h1"], root: s.root)
        #expect(b.status == 2 && b.stderr.contains("build/h1/v7.0/manifest.lock → no lock") && b.stderr.contains("out/h1/ is from an earlier promote"), "\(b.stderr)")
    }
}

/// Issue 17, item 4: a later series written on top of an earlier one is a stack, not a conflict; two campaigns
/// editing the same lines from the same preimage still are, and with a tree the apply check decides.
@Suite struct StackOrConflictTests {
    static let file = "drivers/x/core.c"

    /// h1 includes `first` then `second` (apply_order), each its own scope and campaign.
    static func sandbox(secondAt: Int = 38, second: (inout [String]) -> Void, secondBase: (inout [String]) -> Void = { _ in }) throws -> Sandbox {
        let s = try Sandbox(copyShipped: false)
        let base = DayOneTests.lines("core")
        let added = "\tcore_register_fence_release(dev);"
        func mail(_ subject: String, _ scope: String, _ campaign: String, _ diff: String) -> String {
            Sandbox.mail(subject: subject, trailers: ["Campaign: \(campaign)", "Scope: \(scope)"], diff: diff)
        }
        try s.write("patches/driver/x/first/0001-first.patch",
                    mail("first", "driver/x/first", "one", DayOneTests.patch(file, base: base, at: 38) { $0.insert(added, at: 3) }))
        var onTop = base
        secondBase(&onTop)
        try s.write("patches/driver/x/second/0001-second.patch",
                    mail("second", "driver/x/second", "two", DayOneTests.patch(file, base: onTop, at: secondAt, second)))
        try s.write("fleet/h1.yaml", "baseline: {repo: r, ref: v7.0}\nkernel_suffix: h1\nincludes:\n  - driver/x/first/\n  - driver/x/second/\napply_order: [driver/x/first/, driver/x/second/]\n")
        try s.write("base/\(file)", base.joined(separator: "\n") + "\n")
        return s
    }

    static let added = "\tcore_register_fence_release(dev);"

    @Test func aSeriesWrittenOnTopOfTheOneBeforeIsAStack() async throws {
        // second was written on the result of first: its context holds first's added line
        let s = try Self.sandbox(second: { $0[3] = "\tcore_register_fence_release(dev, CORE_FENCE_WAIT);" },
                                 secondBase: { $0.insert(Self.added, at: 40) })
        let (plan, _) = try await PromoteVerb.parse(["h1"]).execute(in: s.ctx)
        #expect(!plan.steps.contains { $0.contains("overlapping") })
        let withTree = try await PromoteVerb.parse(["h1", "--tree", s.url("base").path]).execute(in: s.ctx)
        #expect(withTree.1.text.contains("apply check: pass"), "\(withTree.1.text)")
        let cumulative = try s.read("build/h1/v7.0/0001-h1-cumulative-series.patch")
        #expect(cumulative.contains("CORE_FENCE_WAIT"))
    }

    @Test func twoCampaignsEditingTheSameLinesFromOnePreimageConflict() async throws {
        // second inserts at the same place in the base, not knowing first
        let s = try Self.sandbox(second: { $0.insert("\tcore_other_change(dev);", at: 3) })
        do {
            _ = try await PromoteVerb.parse(["h1"]).execute(in: s.ctx)
            Issue.record("promote did not refuse the conflict")
        } catch let e as KAError {
            #expect(e.kind == .refusal && e.message.contains("campaign conflict: 1 overlapping hunk pair"), "\(e.message)")
            #expect(e.blocks.map(\.kind) == [.campaignConflict])
        }
        #expect(!s.exists("build/h1/v7.0/manifest.lock"))
        // with a tree, the apply check decides: the second no longer applies, so it is a campaign conflict still
        do {
            _ = try await PromoteVerb.parse(["h1", "--tree", s.url("base").path]).execute(in: s.ctx)
            Issue.record("promote --tree did not refuse the conflict")
        } catch let e as KAError {
            #expect(e.message.contains("campaign conflict") && e.message.contains("fails at an overlapping patch"), "\(e.message)")
            #expect(e.blocks.map(\.kind) == [.campaignConflict])
        }
        #expect(!s.exists("build/h1/v7.0/manifest.lock"))
        #expect(s.exists("build/h1/v7.0/apply-report.txt"), "the report says which patch failed")
    }

    @Test func overlappingHunksThatApplyToTheTreePassWithIt() async throws {
        // second changes a base line whose window overlaps first's, but whose context stays contiguous after first
        let s = try Self.sandbox(secondAt: 42, second: { $0[3] = "core line 45; /* tuned */" })
        await #expect(throws: KAError.self) { try await PromoteVerb.parse(["h1"]).execute(in: s.ctx) }
        let (plan, outcome) = try await PromoteVerb.parse(["h1", "--validate-against", s.url("base").path]).execute(in: s.ctx)
        #expect(plan.steps.contains { $0.contains("1 overlapping hunk pair(s) of different origins: the apply check decides") }, "\(plan.steps)")
        #expect(outcome.text.contains("apply check: pass"), "\(outcome.text)")
    }
}
