import Foundation
import Testing
import KATestSupport
@testable import KernelAgent

/// The user's existing repo (Python ka-promote): its manifest schema, apply_order, series dirs with cover letters,
/// its output layout, a tree without Scope trailers, and manifests full of decisions in comments.
@Suite struct UpstreamCompatTests {
    static let vb2 = "subsystem/media/videobuf2/dma-resv-release-fence"

    /// The shipped tree with fresnel's manifest written the upstream way, and a cover letter in the vb2 series dir.
    static func upstreamFresnel(orderForm: String = "per-entry") throws -> Sandbox {
        let s = try Sandbox()
        try FileManager.default.removeItem(at: s.url("patches/\(vb2)/series"))   // upstream: file-name order
        try s.write("patches/\(vb2)/0000-cover-letter.patch", """
        From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001
        From: m <m@r>
        Subject: [PATCH 0/2] media: videobuf2: release fences

        *** BLURB HERE ***

        --
        2.54.0

        """)
        let includes: String
        switch orderForm {
        case "per-entry":
            includes = """
            includes:
              # vb2 moved from excluded to includes on 2026-05-15: v2 landed (see its README)
              - path: \(vb2)/
                apply_order: 2
              - path: board/pinebook-pro/   # OC OPPs, HDMI sound, spi1 cap
                apply_order: 1
            """
        default:
            includes = """
            includes:
              - \(vb2)/   # vb2 v2
              - board/pinebook-pro/
            apply_order:   # NOT alphabetical: the board DTS patches go first, as the PKGBUILD applies them
              - board/pinebook-pro/
              - \(vb2)/
            """
        }
        try s.write("fleet/fresnel.yaml", """
        # fresnel — Pinebook Pro (RK3399), upstream-shaped manifest
        host: fresnel
        baseline:
          tree: https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git   # was mmind/linux-rockchip until PR #23
          ref: v7.0
          patch_authoring_context: mmind/linux-rockchip   # informational
        kernel_suffix: fresnel-fourier
        package:
          name: linux-fresnel-fourier
          template_at: marfrit-packages/arch/linux-fresnel-fourier/PKGBUILD
        build_host:
          primary: boltzmann
          fallback: fermi
        \(includes)
        excluded:
          - driver/bes2600/cumulative-c5x-danctnix/   # ohm only: no bes2600 on the Pinebook Pro

        """)
        return s
    }

    static func subjects(_ cumulative: String) -> [String] {
        cumulative.split(separator: "\n").filter { $0.hasPrefix("Subject: ") }.map { String($0.dropFirst(9)) }
    }

    @Test func upstreamFresnelFollowsApplyOrderSkipsTheCoverLetterAndJoinsAsIssue31Says() async throws {
        let s = try Self.upstreamFresnel()
        _ = try await PromoteVerb.parse(["fresnel"]).execute(in: s.ctx)
        let cumulative = try s.read("build/fresnel/v7.0/0001-fresnel-cumulative-series.patch")
        let subjects = Self.subjects(cumulative)
        #expect(subjects.count == 5, "\(subjects)")
        #expect(subjects.prefix(3).allSatisfy { $0.contains("pinebook-pro") }, "board first: \(subjects)")
        #expect(subjects.suffix(2).allSatisfy { $0.contains("media") }, "\(subjects)")
        #expect(!cumulative.contains("*** BLURB HERE ***"), "the cover letter is skipped")
        // #31: every patch but the last keeps a signature before the next mail; the last has none
        let mails = cumulative.components(separatedBy: "\nFrom ").count
        #expect(mails == 5)
        for boundary in cumulative.components(separatedBy: "\nFrom ").dropLast() {
            #expect(boundary.range(of: "\n-- \n[^\n]+\n$", options: .regularExpression) != nil, "a patch before another ends with its signature and a blank line")
        }
        #expect(cumulative.range(of: "\n-- \n[^\n]+\n*$", options: .regularExpression) == nil, "the last patch carries no signature")
        // plain concatenation with that normalisation, computed here independently
        let paths = try Resolver(workspace: s.ws, policy: try s.ctx.policy())
            .resolve(try Manifest.load(HostName("fresnel"), in: s.ws)).entries.map { s.url("patches/" + $0.path.value) }
        var expected = ""
        for (i, url) in paths.enumerated() {
            var text = try String(contentsOf: url, encoding: .utf8)
            let sig = try #require(text.range(of: "\n-- \n[^\n]+\n+$", options: .regularExpression), "\(url.lastPathComponent) has a signature")
            let version = text[sig].split(separator: "\n")[1]
            text = String(text[..<sig.lowerBound]) + "\n"
            expected += text + (i < paths.count - 1 ? "-- \n\(version)\n\n" : "")
        }
        #expect(cumulative == expected)
        let lock = try s.read("build/fresnel/v7.0/manifest.lock")
        #expect(lock.contains("apply_order: \"manifest\""))
        #expect(lock.contains("    sha256: \""))
    }

    @Test func bothApplyOrderFormsGiveTheSameBytes() async throws {
        let a = try Self.upstreamFresnel(orderForm: "per-entry")
        let b = try Self.upstreamFresnel(orderForm: "top-level")
        _ = try await PromoteVerb.parse(["fresnel"]).execute(in: a.ctx)
        _ = try await PromoteVerb.parse(["fresnel"]).execute(in: b.ctx)
        #expect(try a.read("build/fresnel/v7.0/0001-fresnel-cumulative-series.patch") == b.read("build/fresnel/v7.0/0001-fresnel-cumulative-series.patch"))
    }

    @Test func theirLayoutIsTheDefaultWithTheirPathsAndLockFields() async throws {
        let s = try Self.upstreamFresnel()
        let r = try await KaRun.run(["promote", "fresnel"], root: s.root)
        #expect(r.status == 0, "\(r.stderr)")
        let dir = "build/fresnel/v7.0"
        let cumulative = try Data(contentsOf: s.url("\(dir)/0001-fresnel-cumulative-series.patch"))
        let lock = try s.read("\(dir)/manifest.lock")
        #expect(lock.contains("b2sum: \"\(Blake2b.hex(cumulative))\""))
        #expect(lock.contains("path: \"0001-fresnel-cumulative-series.patch\""))
        #expect(lock.contains("patches:\n  - path: \"board/pinebook-pro/0001-"), "apply order, board first: \(lock)")
        // sha256 per file, as coreutils computes it
        let first = s.url("patches/board/pinebook-pro/0001-arm64-dts-rk3399-pinebook-pro-add-OC-OPP-tables-1704-2184.patch")
        let sha = try await TestCommand.run(["sha256sum", first.path]).stdoutText.split(separator: " ").first.map(String.init) ?? "?"
        #expect(lock.contains("sha256: \"\(sha)\""), "\(lock)")
        #expect(r.stdout.contains("0001-fresnel-cumulative-series.patch b2sum"), "\(r.stdout)")
        #expect(!s.exists("out"), "nothing under out/ any more")
        // the layout switch is gone: there is one layout
        let gone = try await KaRun.run(["promote", "fresnel", "--layout", "upstream"], root: s.root)
        #expect(gone.status != 0 && gone.stderr.contains("--layout"), "\(gone.stderr)")
    }

    @Test func upstreamRefusalsExit2AndNameTheLine() async throws {
        let cases: [(String, String, String)] = [
            ("dup-include", "  - path: board/pinebook-pro/\n    apply_order: 3\n", "fleet/fresnel.yaml:20:11: 'board/pinebook-pro' is listed twice (first at line 18)"),
            ("bad-include", "  - path: board/pinebook-pro-renamed/\n    apply_order: 3\n", "fleet/fresnel.yaml:20:11 → include board/pinebook-pro-renamed → no such patch dir"),
            ("missing-patch", "  - path: board/pinebook-pro/0009-gone.patch\n    apply_order: 3\n", "fleet/fresnel.yaml:20:11 → include board/pinebook-pro/0009-gone.patch → no such patch file"),
            ("include-and-excluded", "  - path: driver/bes2600/cumulative-c5x-danctnix/\n    apply_order: 3\n",
             "fleet/fresnel.yaml:20:11: include 'driver/bes2600/cumulative-c5x-danctnix' is also excluded at line 23"),
        ]
        for (name, extra, expected) in cases {
            let s = try Self.upstreamFresnel()
            let text = try s.read("fleet/fresnel.yaml").replacingOccurrences(of: "excluded:\n", with: extra + "excluded:\n")
            try s.write("fleet/fresnel.yaml", text)
            let r = try await KaRun.run(["promote", "fresnel"], root: s.root)
            #expect(r.status == 2, "\(name): \(r.stderr)")
            #expect(r.stderr.contains(expected), "\(name): \(r.stderr)")
            #expect(!s.exists("out"), "\(name) wrote output")
        }
    }

    @Test func adoptScopesAnUntaggedTreeOnceAndPromoteThenPasses() async throws {
        let s = try Self.upstreamFresnel()
        // strip every Scope: trailer, as in the upstream tree
        for p in try PatchTree(s.ws).allPatches() {
            let url = s.url("patches/" + p.value)
            let text = try String(contentsOf: url, encoding: .utf8)
            try text.split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.hasPrefix("Scope: ") }
                .joined(separator: "\n").write(to: url, atomically: true, encoding: .utf8)
        }
        let hashesBefore = try PatchTree(s.ws).allPatches().map { PatchFile(bytes: try Data(contentsOf: s.url("patches/" + $0.value))).contentHash }
        let refused = try await KaRun.run(["promote", "fresnel"], root: s.root)
        #expect(refused.status == 2 && refused.stderr.contains("unscoped patch") && refused.stderr.contains("run 'ka adopt'"), "\(refused.stderr)")
        let dry = try await KaRun.run(["adopt", "--dry-run"], root: s.root)
        #expect(dry.status == 0 && dry.stdout.contains("would adopt 6 patch(es)"), "\(dry.stdout) \(dry.stderr)")
        let snap = s.snapshot()
        let adopted = try await KaRun.run(["adopt"], root: s.root)
        #expect(adopted.status == 0 && adopted.stdout.contains("adopted 6 patch(es)"), "\(adopted.stdout) \(adopted.stderr)")
        #expect(s.snapshot() != snap)
        let hashesAfter = try PatchTree(s.ws).allPatches().map { PatchFile(bytes: try Data(contentsOf: s.url("patches/" + $0.value))).contentHash }
        #expect(hashesAfter == hashesBefore, "content hashes unchanged")
        // git reads the new trailer too
        let one = s.url("patches/board/pinebook-pro/0002-arm64-dts-rk3399-pinebook-pro-enable-hdmi-sound.patch")
        let git = try await TestCommand.run(["git", "interpret-trailers", "--parse"], stdin: try Data(contentsOf: one))
        #expect(git.stdoutText.contains("Scope: board/pinebook-pro\n"), "\(git.stdoutText)")
        let promoted = try await KaRun.run(["promote", "fresnel"], root: s.root)
        #expect(promoted.status == 0, "\(promoted.stderr)")
        let again = s.snapshot()
        let second = try await KaRun.run(["adopt"], root: s.root)
        #expect(second.status == 0 && second.stdout.contains("adopted 0 patch(es); 6 already scoped"), "\(second.stdout)")
        #expect(s.snapshot() == again)
        // a trailer that disagrees with its dir: refused, nothing written
        try s.write("patches/board/pinebook-pro/0009-x.patch", Sandbox.mail(subject: "x", trailers: ["Scope: board/other"],
            diff: Sandbox.diff(file: "x.c", lines: PromoteTests.baseLines, at: 5, added: "x")))
        let strip = s.url("patches/arch/arm64/scs-arm-neon-build-fix").appendingPathComponent(try FileManager.default.contentsOfDirectory(atPath: s.url("patches/arch/arm64/scs-arm-neon-build-fix").path).sorted()[0])
        let stripped = try String(contentsOf: strip, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.hasPrefix("Scope: ") }.joined(separator: "\n")
        try stripped.write(to: strip, atomically: true, encoding: .utf8)
        let before = s.snapshot()
        let bad = try await KaRun.run(["adopt"], root: s.root)
        #expect(bad.status == 2 && bad.stderr.contains("0009-x.patch: its Scope: board/other disagrees with its directory board/pinebook-pro"), "\(bad.stderr)")
        #expect(s.snapshot() == before, "all or nothing")
    }

    @Test func manifestRewritesKeepEveryComment() async throws {
        let s = try Self.upstreamFresnel(orderForm: "top-level")
        let before = try s.read("fleet/fresnel.yaml")
        _ = try await MigrateTreeVerb.parse(["--from", "board/pinebook-pro", "--to", "board/pbp"]).execute(in: s.ctx)
        let after = try s.read("fleet/fresnel.yaml")
        // every line is the same, except that the moved path reads the new name — comments, order, spacing kept
        let bl = before.split(separator: "\n", omittingEmptySubsequences: false), al = after.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(bl.count == al.count)
        for (b, a) in zip(bl, al) { #expect(b.replacingOccurrences(of: "board/pinebook-pro", with: "board/pbp") == a) }
        #expect(after.contains("  - board/pbp/\n  - subsystem") || after.contains("  - board/pbp/\n"))
        _ = try await PromoteVerb.parse(["fresnel"]).execute(in: s.ctx)

        // a purge drops the entry and its apply_order item, and nothing else
        let t = try Self.upstreamFresnel(orderForm: "per-entry")
        let beforePurge = try t.read("fleet/fresnel.yaml")
        _ = try await AbandonVerb.parse(["vb2-dma-resv", "--purge-from-fleet"]).execute(in: t.ctx)
        let afterPurge = try t.read("fleet/fresnel.yaml")
        let removed = Set(beforePurge.split(separator: "\n")).subtracting(afterPurge.split(separator: "\n"))
        #expect(removed == ["  - path: \(Self.vb2)/", "    apply_order: 2"], "\(removed)")
        #expect(afterPurge.contains("# vb2 moved from excluded to includes on 2026-05-15"), "a comment line is never dropped")
    }

    @Test func parityCumulativeAppliedAtOnceEqualsThePatchesOneByOne() async throws {
        let s = try PromoteTests.tree()
        try s.write("base/src/c.c", PromoteTests.baseLines.joined(separator: "\n") + "\n")
        _ = try await PromoteVerb.parse(["h1"]).execute(in: s.ctx)
        let res = try Resolver(workspace: s.ws, policy: try s.ctx.policy()).resolve(try Manifest.load(HostName("h1"), in: s.ws))
        func gitRepo(_ name: String) async throws -> URL {
            let dir = s.url(name)
            try FileManager.default.copyItem(at: s.url("base"), to: dir)
            for args in [["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"]] {
                let r = try await TestCommand.run(["git"] + args, cwd: dir)
                #expect(r.status == 0, "\(r.stderrText)")
            }
            return dir
        }
        let whole = try await gitRepo("whole")
        let applied = try await TestCommand.run(["git", "apply", s.url("build/h1/v7.0/0001-h1-cumulative-series.patch").path], cwd: whole)
        #expect(applied.status == 0, "git apply of the cumulative: \(applied.stderrText)")
        let oneByOne = try await gitRepo("one-by-one")
        for e in res.entries {
            let r = try await TestCommand.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "am", "-q", s.url("patches/" + e.path.value).path], cwd: oneByOne)
            #expect(r.status == 0, "git am \(e.path.value): \(r.stderrText)")
        }
        let gnu = try await gitRepo("gnu-patch")
        let p = try await TestCommand.run(["patch", "-p1", "-s", "-i", s.url("build/h1/v7.0/0001-h1-cumulative-series.patch").path], cwd: gnu)
        #expect(p.status == 0, "GNU patch of the cumulative: \(p.stdoutText) \(p.stderrText)")
        func files(_ dir: URL) -> [String: Data] {
            Dictionary(uniqueKeysWithValues: FS.regularFiles(under: dir).map { ($0, FileManager.default.contents(atPath: dir.appendingPathComponent($0).path) ?? Data()) })
        }
        #expect(files(whole) == files(oneByOne))
        #expect(files(gnu) == files(oneByOne))
        #expect(files(whole) != files(s.url("base")), "the patches changed something")
    }
}
