import Foundation
import Testing
import KATestSupport
@testable import KernelAgent

/// The apply check on the real Linux v7.0 DTS fixture, cross-checked against git and GNU patch.
@Suite struct ApplyCheckTests {
    static let dts = "arch/arm64/boot/dts/rockchip/rk3399-pinebook-pro.dts"

    /// The shipped tree with a manifest for h-board that takes only the pinebook-pro board patches.
    static func sandbox() throws -> Sandbox {
        let s = try Sandbox()
        try s.write("fleet/hosts.yaml", try s.read("fleet/hosts.yaml").replacingOccurrences(of: "hosts:\n",
            with: "hosts:\n  pbp:\n    roles: [target]\n    arch: aarch64\n    distro: arch\n    wake: always\n"))
        try s.write("fleet/pbp.yaml", "host: pbp\nbaseline: {repo: torvalds/linux, ref: v7.0}\nkernel_suffix: pbp\nscopes: [board/pinebook-pro]\n")
        return s
    }

    /// A private copy of the one file the series touches (the fixture itself is read-only).
    static func treeCopy(_ s: Sandbox, edit: ((inout [String]) -> Void)? = nil) throws -> URL {
        let src = try TestEnv.fixtureTree().appendingPathComponent(dts)
        var lines = String(decoding: try Data(contentsOf: src), as: UTF8.self).components(separatedBy: "\n")
        edit?(&lines)
        try s.write("tree/" + dts, lines.joined(separator: "\n"))
        return s.url("tree")
    }

    @Test func shippedBoardPatchesApplyCleanlyToTheRealFixture() async throws {
        let s = try Self.sandbox()
        let fixture = try TestEnv.fixtureTree()
        _ = try await PromoteVerb.parse(["pbp", "--tree", fixture.path]).execute(in: s.ctx)
        let report = try s.read("build/pbp/v7.0/apply-report.txt")
        #expect(report.contains("summary: 3 ok, 0 offset, 0 fuzz, 0 missing-file, 0 failed"), "\(report)")
        #expect(report.contains("result: PASS"))
        #expect(try s.read("build/pbp/v7.0/manifest.lock").contains("apply_check: \"pass (3 ok"))
        // git agrees: the cumulative patch applies to the fixture
        let git = try await TestCommand.run(["git", "apply", "--check", "-p1", s.url("build/pbp/v7.0/0001-pbp-cumulative-series.patch").path], cwd: fixture)
        #expect(git.status == 0, "\(git.stderrText)")
    }

    @Test func patchedFixtureStillCompilesWithCppAndDtc() async throws {
        let s = try Self.sandbox()
        let fixture = try TestEnv.fixtureTree()
        _ = try await PromoteVerb.parse(["pbp", "--tree", fixture.path]).execute(in: s.ctx)
        // a writable copy of the dts dir + includes, then the real tools
        let work = s.url("build")
        try FileManager.default.createDirectory(at: work.appendingPathComponent("arch/arm64/boot/dts"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: fixture.appendingPathComponent("arch/arm64/boot/dts/rockchip"), to: work.appendingPathComponent("arch/arm64/boot/dts/rockchip"))
        try FileManager.default.copyItem(at: fixture.appendingPathComponent("include"), to: work.appendingPathComponent("include"))
        let apply = try await TestCommand.run(["patch", "-p1", "-F0", "--batch", "-i", s.url("build/pbp/v7.0/0001-pbp-cumulative-series.patch").path], cwd: work)
        #expect(apply.status == 0, "\(apply.stdoutText)\(apply.stderrText)")
        #expect(!apply.stdoutText.contains("fuzz"))
        let cpp = try await TestCommand.run(["cpp", "-nostdinc", "-I", "include", "-I", "arch/arm64/boot/dts/rockchip", "-undef", "-D__DTS__",
                                      "-x", "assembler-with-cpp", Self.dts, "-o", "pbp.dts.pp"], cwd: work)
        #expect(cpp.status == 0, "\(cpp.stderrText)")
        let dtc = try await TestCommand.run(["dtc", "-@", "-q", "-I", "dts", "-O", "dtb", "-o", "pbp.dtb", "pbp.dts.pp"], cwd: work)
        try #require(dtc.status == 0, "dtc failed (is device-tree-compiler installed? scripts/setup installs it): \(dtc.stderrText)")
        func fdtget(_ args: [String]) async throws -> String {
            try await TestCommand.run(["fdtget"] + args, cwd: work).stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(try await fdtget(["-t", "u", "pbp.dtb", "/opp-table-0/opp-1704000000", "opp-hz"]) == "0 1704000000")
        #expect(try await fdtget(["-t", "u", "pbp.dtb", "/opp-table-1/opp-2184000000", "opp-hz"]) == "0 2184000000")
        #expect(try await fdtget(["pbp.dtb", "/hdmi-sound", "status"]) == "okay")
        #expect(try await fdtget(["pbp.dtb", "/spi@ff1d0000", "spi-max-frequency"]) == "10000000")
    }

    @Test func offsetIsReportedAndAccepted() async throws {
        let s = try Self.sandbox()
        let tree = try Self.treeCopy(s) { $0.insert(contentsOf: ["// local line 1", "// local line 2"], at: 10) }
        _ = try await PromoteVerb.parse(["pbp", "--tree", tree.path]).execute(in: s.ctx)
        let report = try s.read("build/pbp/v7.0/apply-report.txt")
        #expect(report.contains("summary: 0 ok, 3 offset, 0 fuzz"), "\(report)")
        #expect(report.contains("hunk 1 (@@ -375,6): offset +2 lines"), "\(report)")
        // GNU patch says the same, to the line
        try await Tools.require("patch")
        let gnu = try await Tools.patch(["-F0", "--dry-run"], input: s.ws.url(try TreePath("board/pinebook-pro/0001-arm64-dts-rk3399-pinebook-pro-add-OC-OPP-tables-1704-2184.patch")), cwd: tree)
        #expect(gnu.status == 0)
        #expect(gnu.stdoutText.contains("Hunk #1 succeeded at 377 (offset 2 lines)."), "\(gnu.stdoutText)")
    }

    @Test func fuzzFailsTheCheckAndWritesNoLock() async throws {
        let s = try Self.sandbox()
        // the first context line of 0003's hunk ("};", line 947 of v7.0, 985 after 0001+0002) changes:
        // only fuzz 1 would apply it
        let tree = try Self.treeCopy(s) { lines in
            #expect(lines[946] == "};")
            lines[946] = "}; /* edited */"
        }
        await #expect(throws: KAError.self) { try await PromoteVerb.parse(["pbp", "--tree", tree.path]).execute(in: s.ctx) }
        let report = try s.read("build/pbp/v7.0/apply-report.txt")
        let line = report.split(separator: "\n").first { $0.contains("0003-arm64-dts-rk3399-pinebook-pro-spi1-max-freq-10MHz.patch") }
        #expect(line?.hasSuffix(" fuzz") == true, "\(report)")
        #expect(report.contains("applies only with fuzz 1"))
        #expect(report.contains("result: FAIL"))
        #expect(!s.exists("build/pbp/v7.0/manifest.lock"))
        #expect(!s.exists("build/pbp/v7.0/0001-pbp-cumulative-series.patch"))
        try await Tools.require("patch")
        let p3 = s.ws.url(try TreePath("board/pinebook-pro/0003-arm64-dts-rk3399-pinebook-pro-spi1-max-freq-10MHz.patch"))
        let f0 = try await Tools.patch(["-F0", "--dry-run"], input: p3, cwd: tree)
        #expect(f0.status == 1 && f0.stdoutText.contains("Hunk #1 FAILED at 985."), "GNU patch -F0 must refuse it too: \(f0.stdoutText)")
        let f2 = try await Tools.patch(["-F2", "--dry-run"], input: p3, cwd: tree)
        #expect(f2.status == 0 && f2.stdoutText.contains("Hunk #1 succeeded at 947 with fuzz 1 (offset -38 lines)."), "\(f2.stdoutText)")
    }

    @Test func failedAndMissingFileAreReported() async throws {
        let s = try Self.sandbox()
        let tree = try Self.treeCopy(s) { lines in
            for i in 944..<952 { lines[i] = "/* rewritten \(i) */" }
        }
        do {
            _ = try await PromoteVerb.parse(["pbp", "--tree", tree.path]).execute(in: s.ctx)
            Issue.record("expected a refusal")
        } catch let e as KAError {
            #expect(e.exitCode == 2)
            #expect(e.message.contains("apply check failed for 1 of 3 patch(es)"), "\(e.message)")
            #expect(e.message.contains("0003-arm64-dts-rk3399-pinebook-pro-spi1-max-freq-10MHz.patch: failed — "), "\(e.message)")
            #expect(e.message.contains("hunk 1 (@@ -985,6): does not apply"), "\(e.message)")
        }
        let empty = s.url("empty-tree")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        await #expect(throws: KAError.self) { try await PromoteVerb.parse(["pbp", "--tree", empty.path]).execute(in: s.ctx) }
        let report = try s.read("build/pbp/v7.0/apply-report.txt")
        #expect(report.contains("summary: 0 ok, 0 offset, 0 fuzz, 3 missing-file, 0 failed"), "\(report)")
    }

    @Test func fresnelSeriesAgainstTheDtsOnlyFixtureNamesTheMissingFiles() async throws {
        let s = try Sandbox()
        let fixture = try TestEnv.fixtureTree()
        // the vb2 and the DTS patches together: the DTS-only fixture lacks drivers/media
        do {
            _ = try await PromoteVerb.parse(["fresnel", "--tree", fixture.path]).execute(in: s.ctx)
            Issue.record("expected a refusal")
        } catch let e as KAError {
            #expect(e.message.contains("missing-file"), "\(e.message)")
        }
        #expect(try s.read("build/fresnel/v7.0/apply-report.txt").contains("3 ok"))
    }

    // MARK: every verdict class against GNU patch and git

    /// One shipped patch alone against an edited copy of the fixture file, checked by us, by GNU patch
    /// (-F0 and -F2 dry runs) and by git apply --check; each class with the tool's own words.
    @Test func everyVerdictClassMatchesGNUPatchAndGit() async throws {
        try await Tools.require("patch")
        try await Tools.require("git")
        let p1 = "board/pinebook-pro/0001-arm64-dts-rk3399-pinebook-pro-add-OC-OPP-tables-1704-2184.patch"
        let p3 = "board/pinebook-pro/0003-arm64-dts-rk3399-pinebook-pro-spi1-max-freq-10MHz.patch"
        let cases: [(ApplyStatus, String, ((inout [String]) -> Void)?, gnuF0: String, gnuF2: String, git: String)] = [
            (.ok, p1, nil, "checking file \(Self.dts)\n", "checking file \(Self.dts)\n", ""),
            (.offset, p1, { $0.insert(contentsOf: ["// a", "// b"], at: 10) }, "Hunk #1 succeeded at 377 (offset 2 lines).", "Hunk #1 succeeded at 377 (offset 2 lines).", ""),
            (.fuzz, p3, { $0[946] = "}; /* edited */" }, "Hunk #1 FAILED at 985.", "Hunk #1 succeeded at 947 with fuzz 1 (offset -38 lines).", "patch does not apply"),
            (.failed, p3, { for i in 944..<952 { $0[i] = "/* rewritten \(i) */" } }, "Hunk #1 FAILED at 985.", "Hunk #1 FAILED at 985.", "patch does not apply"),
            (.missingFile, p1, nil, "can't find file to patch at input line", "No file to patch.  Skipping patch.", "No such file or directory"),
        ]
        for (expected, rel, edit, gnuF0, gnuF2, gitWords) in cases {
            let s = try Self.sandbox()
            var tree = try Self.treeCopy(s, edit: edit)
            if expected == .missingFile {
                tree = s.url("empty-tree")
                try FileManager.default.createDirectory(at: tree, withIntermediateDirectories: true)
            }
            let url = s.ws.url(try TreePath(rel))
            let patch = try PatchFile(bytes: try Data(contentsOf: url), display: rel)
            var checker = ApplyChecker(tree: tree)
            let item = checker.apply(rel, patch)
            #expect(item.status == expected, "\(expected): \(item.details)")
            let f0 = try await Tools.patch(["-F0", "--dry-run"], input: url, cwd: tree)
            let f2 = try await Tools.patch(["-F2", "--dry-run"], input: url, cwd: tree)
            #expect(f0.stdoutText.contains(gnuF0), "\(expected) -F0: \(f0.stdoutText)")
            #expect(f2.stdoutText.contains(gnuF2), "\(expected) -F2: \(f2.stdoutText)")
            #expect((f0.status == 0) == expected.passes, "\(expected): GNU -F0 exit \(f0.status)")
            #expect((f2.status == 0) == (expected <= .fuzz), "\(expected): GNU -F2 exit \(f2.status)")
            Self.expectSameHunks(item, GNUReport(f2.stdoutText), "\(expected)")
            let git = try await Tools.git(["apply", "--check", url.path], cwd: tree)
            #expect((git.status == 0) == expected.passes, "\(expected): git exit \(git.status) \(git.stderrText)")
            if gitWords.isEmpty { #expect(git.stderrText.isEmpty, "\(expected): \(git.stderrText)") }
            else { #expect(git.stderrText.contains(gitWords), "\(expected): \(git.stderrText)") }
        }
    }

    /// Our per-hunk outcomes against GNU patch's report of the same file diffs.
    static func expectSameHunks(_ item: ApplyReport.Item, _ gnu: GNUReport, _ label: String,
                                sourceLocation: SourceLocation = #_sourceLocation) {
        let files = item.hunks.filter { $0.number == 1 }.map(\.file)
        #expect(files.count == gnu.sections.count, "\(label): \(files) vs \(gnu.sections.map(\.file))", sourceLocation: sourceLocation)
        var sectionIndex = -1
        for h in item.hunks {
            if h.number == 1 { sectionIndex += 1 }
            guard sectionIndex < gnu.sections.count else { return }
            let sec = gnu.sections[sectionIndex]
            switch h.kind {
            case .missingFile: #expect(sec.missing, "\(label): \(h)", sourceLocation: sourceLocation)
            case .reversed, .ignored: #expect(sec.skipped, "\(label): \(h)", sourceLocation: sourceLocation)
            case .misordered:
                #expect(sec.hunks[h.number] == .failed && sec.lines[h.number] == h.line, "\(label): \(h) vs \(String(describing: sec.hunks[h.number])) at \(String(describing: sec.lines[h.number]))", sourceLocation: sourceLocation)
            case .exact:
                #expect(sec.hunks[h.number] == nil || sec.hunks[h.number] == .exact, "\(label): \(h) vs \(String(describing: sec.hunks[h.number]))", sourceLocation: sourceLocation)
            default:
                #expect(sec.hunks[h.number] == h.kind && sec.lines[h.number] == h.line,
                        "\(label): \(h) vs GNU \(String(describing: sec.hunks[h.number])) at \(String(describing: sec.lines[h.number]))", sourceLocation: sourceLocation)
            }
        }
    }

    // MARK: GNU patch's placement rules

    /// A one-file tree, a patch, and the check by us and by GNU patch -F0/-F2 (dry runs) and git.
    struct Placement {
        let item: ApplyReport.Item
        let f0: TestCommand.Result, f2: TestCommand.Result, git: TestCommand.Result
    }

    static func place(file lines: [String], patch: String) async throws -> Placement {
        try await Tools.require("patch")
        try await Tools.require("git")
        let dir = try Tools.tempDir("placement")
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: dir.appendingPathComponent("f"))
        let input = dir.appendingPathComponent("p.patch")
        try Data(patch.utf8).write(to: input)
        let pf = try PatchFile(bytes: Data(patch.utf8), display: "p.patch")
        var checker = ApplyChecker(tree: dir)
        let item = checker.apply("p.patch", pf)
        return Placement(item: item, f0: try await Tools.patch(["-F0", "--dry-run"], input: input, cwd: dir),
                         f2: try await Tools.patch(["-F2", "--dry-run"], input: input, cwd: dir),
                         git: try await Tools.git(["apply", "--check", input.path], cwd: dir))
    }

    /// GNU never places a hunk before the previous hunk of the same file: its search finds the text at
    /// line 6, before hunk 1's change, and fails the hunk ("misordered hunks"); a copy at line 20 is not used.
    @Test func aHunkIsNeverPlacedBeforeThePreviousHunk() async throws {
        var lines = (1...30).map { "l\($0)" }
        let pattern = ["A", "B", "C", "D", "E", "F", "G"]
        lines.replaceSubrange(5..<12, with: pattern)
        lines.replaceSubrange(19..<26, with: pattern)
        lines[12] = "H"
        let p = try await Self.place(file: lines, patch: """
        --- a/f
        +++ b/f
        @@ -12,3 +12,3 @@
         G
        -H
        +H2
         l14
        @@ -8,7 +8,7 @@
         A
         B
         C
        -D
        +D2
         E
         F
         G

        """)
        #expect(p.item.status == .failed)
        #expect(p.item.hunks.map(\.kind) == [.exact, .misordered], "\(p.item.hunks)")
        #expect(p.item.cause?.contains("misordered") == true, "\(p.item.details)")
        #expect(p.f2.stdoutText.contains("misordered hunks! output would be garbled\nHunk #2 FAILED at 6."), "\(p.f2.stdoutText)")
        Self.expectSameHunks(p.item, GNUReport(p.f2.stdoutText), "misordered")
        #expect(p.f0.status == 1 && p.f2.status == 1)
        // git differs here: it never matches lines an earlier hunk patched, searches on, and takes line 20
        #expect(p.git.status == 0, "\(p.git.stderrText)")
    }

    /// The search for hunk 2 does not reach back into hunk 1's lines: its text at 7–13 overlaps hunk 1's
    /// change at line 8, and GNU, looking from line 20, stops at line 9 and fails the hunk.
    @Test func theSearchStopsAtThePreviousHunksChange() async throws {
        let p = try await Self.place(file: (1...30).map(String.init), patch: """
        --- a/f
        +++ b/f
        @@ -5,7 +5,7 @@
         5
         6
         7
        -8
        +8x
         9
         10
         11
        @@ -20,7 +20,7 @@
         7
         8
         9
        -10
        +10x
         11
         12
         13

        """)
        #expect(p.item.hunks.map(\.kind) == [.exact, .failed], "\(p.item.hunks)")
        #expect(p.f2.stdoutText.contains("Hunk #2 FAILED at 20."), "\(p.f2.stdoutText)")
        Self.expectSameHunks(p.item, GNUReport(p.f2.stdoutText), "stops at the previous change")
    }

    /// A hunk with leading but no trailing context was cut at the end of the file: GNU matches it only there,
    /// at any fuzz (here the lines also stand at 8–10, where the header points; GNU refuses that place).
    @Test func noTrailingContextMatchesOnlyAtTheEndOfTheFile() async throws {
        let lines = (1...20).map(String.init)
        let p = try await Self.place(file: lines, patch: "--- a/f\n+++ b/f\n@@ -8,3 +8,4 @@\n 8\n 9\n 10\n+new\n")
        #expect(p.item.status == .failed, "\(p.item.details)")
        #expect(p.f0.stdoutText.contains("Hunk #1 FAILED at 8.") && p.f2.stdoutText.contains("Hunk #1 FAILED at 8."), "\(p.f2.stdoutText)")
        Self.expectSameHunks(p.item, GNUReport(p.f2.stdoutText), "no trailing context")
        #expect(p.git.status == 1)
        // the same hunk at the true end of the file applies, with the offset GNU reports
        let atEnd = try await Self.place(file: (1...20).map(String.init) + ["8", "9", "10"], patch: "--- a/f\n+++ b/f\n@@ -8,3 +8,4 @@\n 8\n 9\n 10\n+new\n")
        #expect(atEnd.item.status == .offset)
        #expect(atEnd.f0.stdoutText.contains("Hunk #1 succeeded at 21 (offset 13 lines)."), "\(atEnd.f0.stdoutText)")
        Self.expectSameHunks(atEnd.item, GNUReport(atEnd.f0.stdoutText), "at end")
    }

    /// Fuzz does not lift the rule: with one leading line fuzzed away, the rest must still sit at the end.
    /// The header points at lines 4–6, where "19, 20" also stand; GNU takes the end of the file.
    @Test func aFuzzedHunkWithoutTrailingContextGoesToTheEnd() async throws {
        var lines = (1...20).map(String.init)
        lines[4] = "19"; lines[5] = "20"
        let p = try await Self.place(file: lines, patch: "--- a/f\n+++ b/f\n@@ -4,3 +4,4 @@\n 18x\n 19\n 20\n+new\n")
        #expect(p.item.status == .fuzz)
        #expect(p.item.hunks.first?.kind == .fuzz(1, offset: 14), "\(p.item.hunks)")
        #expect(p.f2.stdoutText.contains("Hunk #1 succeeded at 18 with fuzz 1 (offset 14 lines)."), "\(p.f2.stdoutText)")
        Self.expectSameHunks(p.item, GNUReport(p.f2.stdoutText), "fuzz at end")
        #expect(p.f0.status == 1 && p.git.status == 1)
    }

    /// The mirror rule: no leading context means the start of the file.
    @Test func noLeadingContextMatchesOnlyAtTheStartOfTheFile() async throws {
        var lines = (1...20).map { "l\($0)" }
        lines[4] = "a"; lines[5] = "b"; lines[6] = "c"
        let p = try await Self.place(file: lines, patch: "--- a/f\n+++ b/f\n@@ -1,3 +1,4 @@\n+new\n a\n b\n c\n")
        #expect(p.item.status == .failed, "\(p.item.details)")
        #expect(p.f2.stdoutText.contains("Hunk #1 FAILED at 1."), "\(p.f2.stdoutText)")
        Self.expectSameHunks(p.item, GNUReport(p.f2.stdoutText), "no leading context")
        let atStart = try await Self.place(file: ["a", "b", "c"] + lines, patch: "--- a/f\n+++ b/f\n@@ -1,3 +1,4 @@\n+new\n a\n b\n c\n")
        #expect(atStart.item.status == .ok && atStart.f0.status == 0 && atStart.git.status == 0)
    }

    /// GNU searches outward from the expected line, +n before -n: with the text 2 lines above and 2 below,
    /// it takes the one below.
    @Test func theSearchTriesBelowBeforeAbove() async throws {
        var lines = (1...30).map { "l\($0)" }
        for at in [8, 12] { lines.replaceSubrange(at..<(at + 3), with: ["x", "y", "z"]) }
        let p = try await Self.place(file: lines, patch: "--- a/f\n+++ b/f\n@@ -11,3 +11,3 @@\n x\n-y\n+Y\n z\n")
        #expect(p.item.hunks.first?.kind == .offset(2), "\(p.item.hunks)")
        #expect(p.f0.stdoutText.contains("Hunk #1 succeeded at 13 (offset 2 lines)."), "\(p.f0.stdoutText)")
        Self.expectSameHunks(p.item, GNUReport(p.f0.stdoutText), "search order")
    }

    /// A patch already in the tree: GNU patch -N calls it reversed and skips the file; so do we.
    @Test func anAppliedPatchIsReportedAsReversed() async throws {
        let p = try await Self.place(file: (1...20).map(String.init).map { $0 == "10" ? "ten" : $0 },
                               patch: "--- a/f\n+++ b/f\n@@ -8,5 +8,5 @@\n 8\n 9\n-10\n+ten\n 11\n 12\n")
        #expect(p.item.status == .failed)
        #expect(p.item.hunks.first?.kind == .reversed)
        #expect(p.f0.stdoutText.contains("Reversed (or previously applied) patch detected!  Skipping patch."), "\(p.f0.stdoutText)")
        Self.expectSameHunks(p.item, GNUReport(p.f0.stdoutText), "reversed")
    }

    // MARK: a refusal over many patches

    /// Many failing patches: a summary, the first five causes (the failing hunk, not an earlier offset note),
    /// and the path of apply-report.txt; not one line per patch joined into thousands of characters.
    @Test func aRefusalOverManyPatchesIsASummary() async throws {
        let s = try PromoteTests.tree()
        let base = PromoteTests.baseLines
        for k in 0..<12 {
            try s.write("base/src/k\(k).c", base.joined(separator: "\n") + "\n")
            // hunk 1 applies 2 lines off; hunk 2's context exists nowhere
            try s.write("patches/board/b1/01\(String(format: "%02d", k))-two-hunks.patch", Sandbox.mail(subject: "k\(k)",
                trailers: ["Campaign: camp", "Scope: board/b1"], diff: """
                diff --git a/src/k\(k).c b/src/k\(k).c
                --- a/src/k\(k).c
                +++ b/src/k\(k).c
                @@ -3,6 +3,7 @@
                 \(base[4])
                 \(base[5])
                 \(base[6])
                +added by k\(k)
                 \(base[7])
                 \(base[8])
                 \(base[9])
                @@ -40,5 +41,5 @@
                 nowhere 1
                 nowhere 2
                -nowhere 3
                +x
                 nowhere 4
                 nowhere 5

                """))
        }
        do {
            _ = try await PromoteVerb.parse(["h1", "--tree", s.url("base").path]).execute(in: s.ctx)
            Issue.record("expected a refusal")
        } catch let e as KAError {
            let text = e.description
            #expect(text.count < 1500, "\(text.count) characters:\n\(text)")
            #expect(e.message.contains("apply check failed for 13 of 18 patch(es): 2 ok, 3 offset, 0 fuzz, 1 missing-file, 12 failed"), "\(text)")
            let causes = text.split(separator: "\n").filter { $0.hasPrefix("    board/") || $0.hasPrefix("    arch/") }
            #expect(causes.count == 5, "\(text)")
            for c in causes where c.contains("two-hunks") {
                #expect(c.contains(": failed — src/k") && c.contains("hunk 2 (@@ -40,5): does not apply"), "\(c)")
                #expect(!c.contains("offset"), "the cause is the failing hunk, not the offset note: \(c)")
            }
            #expect(text.contains("… 8 more in build/h1/v7.0/apply-report.txt"), "\(text)")
            #expect(e.hint?.contains("build/h1/v7.0/apply-report.txt") == true)
            let report = try s.read("build/h1/v7.0/apply-report.txt")
            #expect(report.contains("src/k11.c hunk 1 (@@ -3,6): offset +2 lines"), "\(report)")
        }
    }
}
