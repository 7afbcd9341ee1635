import Foundation
import Testing
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

    @Test func shippedBoardPatchesApplyCleanlyToTheRealFixture() throws {
        let s = try Self.sandbox()
        let fixture = try TestEnv.fixtureTree()
        _ = try PromoteVerb.parse(["pbp", "--tree", fixture.path]).execute(in: s.ctx)
        let report = try s.read("out/pbp/apply-report.txt")
        #expect(report.contains("summary: 3 ok, 0 offset, 0 fuzz, 0 missing-file, 0 failed"), "\(report)")
        #expect(report.contains("result: PASS"))
        #expect(try s.read("out/pbp/manifest.lock").contains("apply_check: \"pass (3 ok"))
        // git agrees: the cumulative patch applies to the fixture
        let git = try Subprocess.run(["git", "apply", "--check", "-p1", s.url("out/pbp/cumulative.patch").path], cwd: fixture)
        #expect(git.status == 0, "\(git.stderrText)")
    }

    @Test func patchedFixtureStillCompilesWithCppAndDtc() throws {
        let s = try Self.sandbox()
        let fixture = try TestEnv.fixtureTree()
        _ = try PromoteVerb.parse(["pbp", "--tree", fixture.path]).execute(in: s.ctx)
        // a writable copy of the dts dir + includes, then the real tools
        let work = s.url("build")
        try FileManager.default.createDirectory(at: work.appendingPathComponent("arch/arm64/boot/dts"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: fixture.appendingPathComponent("arch/arm64/boot/dts/rockchip"), to: work.appendingPathComponent("arch/arm64/boot/dts/rockchip"))
        try FileManager.default.copyItem(at: fixture.appendingPathComponent("include"), to: work.appendingPathComponent("include"))
        let apply = try Subprocess.run(["patch", "-p1", "-F0", "--batch", "-i", s.url("out/pbp/cumulative.patch").path], cwd: work)
        #expect(apply.status == 0, "\(apply.stdoutText)\(apply.stderrText)")
        #expect(!apply.stdoutText.contains("fuzz"))
        let cpp = try Subprocess.run(["cpp", "-nostdinc", "-I", "include", "-I", "arch/arm64/boot/dts/rockchip", "-undef", "-D__DTS__",
                                      "-x", "assembler-with-cpp", Self.dts, "-o", "pbp.dts.pp"], cwd: work)
        #expect(cpp.status == 0, "\(cpp.stderrText)")
        let dtc = try Subprocess.run(["dtc", "-@", "-q", "-I", "dts", "-O", "dtb", "-o", "pbp.dtb", "pbp.dts.pp"], cwd: work)
        try #require(dtc.status == 0, "dtc failed (is device-tree-compiler installed? scripts/setup installs it): \(dtc.stderrText)")
        func fdtget(_ args: [String]) throws -> String {
            try Subprocess.run(["fdtget"] + args, cwd: work).stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(try fdtget(["-t", "u", "pbp.dtb", "/opp-table-0/opp-1704000000", "opp-hz"]) == "0 1704000000")
        #expect(try fdtget(["-t", "u", "pbp.dtb", "/opp-table-1/opp-2184000000", "opp-hz"]) == "0 2184000000")
        #expect(try fdtget(["pbp.dtb", "/hdmi-sound", "status"]) == "okay")
        #expect(try fdtget(["pbp.dtb", "/spi@ff1d0000", "spi-max-frequency"]) == "10000000")
    }

    @Test func offsetIsReportedAndAccepted() throws {
        let s = try Self.sandbox()
        let tree = try Self.treeCopy(s) { $0.insert(contentsOf: ["// local line 1", "// local line 2"], at: 10) }
        _ = try PromoteVerb.parse(["pbp", "--tree", tree.path]).execute(in: s.ctx)
        let report = try s.read("out/pbp/apply-report.txt")
        #expect(report.contains("summary: 0 ok, 3 offset, 0 fuzz"), "\(report)")
        #expect(report.contains("hunk 1 (@@ -375,6): offset +2 lines"), "\(report)")
        // GNU patch says the same
        let gnu = try Subprocess.run(["patch", "-p1", "-F0", "--dry-run", "--batch", "-i",
                                      s.ws.url(try TreePath("board/pinebook-pro/0001-arm64-dts-rk3399-pinebook-pro-add-OC-OPP-tables-1704-2184.patch")).path], cwd: tree)
        #expect(gnu.stdoutText.contains("offset 2 lines"), "\(gnu.stdoutText)")
    }

    @Test func fuzzFailsTheCheckAndWritesNoLock() throws {
        let s = try Self.sandbox()
        // the first context line of 0003's hunk ("};", line 947 of v7.0, 985 after 0001+0002) changes:
        // only fuzz 1 would apply it
        let tree = try Self.treeCopy(s) { lines in
            #expect(lines[946] == "};")
            lines[946] = "}; /* edited */"
        }
        #expect(throws: KAError.self) { try PromoteVerb.parse(["pbp", "--tree", tree.path]).execute(in: s.ctx) }
        let report = try s.read("out/pbp/apply-report.txt")
        let line = report.split(separator: "\n").first { $0.contains("0003-arm64-dts-rk3399-pinebook-pro-spi1-max-freq-10MHz.patch") }
        #expect(line?.hasSuffix(" fuzz") == true, "\(report)")
        #expect(report.contains("applies only with fuzz 1"))
        #expect(report.contains("result: FAIL"))
        #expect(!s.exists("out/pbp/manifest.lock"))
        #expect(!s.exists("out/pbp/cumulative.patch"))
        let gnu = try Subprocess.run(["patch", "-p1", "-F0", "--dry-run", "--batch", "-i",
                                      s.ws.url(try TreePath("board/pinebook-pro/0003-arm64-dts-rk3399-pinebook-pro-spi1-max-freq-10MHz.patch")).path], cwd: tree)
        #expect(gnu.status != 0, "GNU patch -F0 must refuse it too")
    }

    @Test func failedAndMissingFileAreReported() throws {
        let s = try Self.sandbox()
        let tree = try Self.treeCopy(s) { lines in
            for i in 944..<952 { lines[i] = "/* rewritten \(i) */" }
        }
        do {
            _ = try PromoteVerb.parse(["pbp", "--tree", tree.path]).execute(in: s.ctx)
            Issue.record("expected a refusal")
        } catch let e as KAError {
            #expect(e.exitCode == 2)
            #expect(e.message.contains("apply check failed for 1 patch(es)"), "\(e.message)")
            #expect(e.message.contains("0003-arm64-dts-rk3399-pinebook-pro-spi1-max-freq-10MHz.patch: failed"))
        }
        let empty = s.url("empty-tree")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        #expect(throws: KAError.self) { try PromoteVerb.parse(["pbp", "--tree", empty.path]).execute(in: s.ctx) }
        let report = try s.read("out/pbp/apply-report.txt")
        #expect(report.contains("summary: 0 ok, 0 offset, 0 fuzz, 3 missing-file, 0 failed"), "\(report)")
    }

    @Test func fresnelSeriesAgainstTheDtsOnlyFixtureNamesTheMissingFiles() throws {
        let s = try Sandbox()
        let fixture = try TestEnv.fixtureTree()
        // the vb2 and the DTS patches together: the DTS-only fixture lacks drivers/media
        do {
            _ = try PromoteVerb.parse(["fresnel", "--tree", fixture.path]).execute(in: s.ctx)
            Issue.record("expected a refusal")
        } catch let e as KAError {
            #expect(e.message.contains("missing-file"), "\(e.message)")
        }
        #expect(try s.read("out/fresnel/apply-report.txt").contains("3 ok"))
    }
}
