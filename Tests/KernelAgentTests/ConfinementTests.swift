import Foundation
import Testing
@testable import KernelAgent

/// Bad input never stalls a reader, and no path — given or derived — leads out of the checkout or into $HOME.
@Suite struct ConfinementTests {
    /// A stand-in $HOME for the binary, outside the checkout.
    static func fakeHome() throws -> URL {
        let h = FileManager.default.temporaryDirectory.appendingPathComponent("ka-home-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: h, withIntermediateDirectories: true)
        return h
    }

    @Test func aFifoNamedLikeAPatchIsRefusedNotWaitedOn() async throws {
        let s = try PromoteTests.tree()
        #expect(mkfifo(s.url("patches/board/b1/0004-x.patch").path, 0o644) == 0)
        for args in [["promote", "h1"], ["status"]] {
            let r = try await KaRun.run(args, root: s.root, deadline: 30)
            #expect(!r.signalled)
            if args[0] == "promote" {
                #expect(r.status == 2)
                #expect(r.stderr.contains("board/b1/0004-x.patch") && r.stderr.contains("not a regular file (a FIFO)"), "\(r.stderr)")
            } else {
                #expect(r.stdout.contains("not a regular file (a FIFO)"), "\(r.stdout)")
            }
        }
        #expect(mkfifo(s.url("fleet/h2.yaml").path, 0o644) == 0)
        do { _ = try Manifest.load(try HostName("h2"), in: s.ws); Issue.record("a FIFO manifest must be refused") }
        catch let e as KAError { #expect(e.description.contains("fleet/h2.yaml") && e.description.contains("FIFO"), "\(e)") }
    }

    @Test func aliasBombsAndDeepNestingAreRefusedWithALocation() throws {
        // Mapping keys that alias a 9-way anchor chain: 63 s to load before the budget.
        var bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n"
        for i in 1...9 { bomb += "a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 9).joined(separator: ", ") + "]\n" }
        bomb += "? *a9\n: boom\n"
        do { _ = try YAMLValue.parse(bomb, file: "fleet/ohm.yaml"); Issue.record("an alias bomb must be refused") }
        catch let e as KAError {
            #expect(e.description.hasPrefix("fleet/ohm.yaml:"), "\(e)")
            #expect(e.description.contains("aliases") || e.description.contains("expands"), "\(e)")
        }
        // expansion alone (few aliases, each huge) is caught too
        var wide = "a0: &a0 [" + Array(repeating: "x", count: 200).joined(separator: ", ") + "]\n"
        for i in 1...4 { wide += "a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 10).joined(separator: ", ") + "]\n" }
        #expect(throws: KAError.self) { try YAMLValue.parse(wide, file: "f.yaml") }
        let deep = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        do { _ = try YAMLValue.parse("k: " + deep + "\n", file: "fleet/h1.yaml"); Issue.record("deep nesting must be refused") }
        catch let e as KAError { #expect(e.description.contains("fleet/h1.yaml:1:") && e.description.contains("nested deeper"), "\(e)") }
        let big = "k: \"" + String(repeating: "x", count: 300_000) + "\"\n"
        #expect(throws: KAError.self) { try YAMLValue.parse(big, file: "f.yaml") }
        // a manifest with a few honest anchors still loads
        _ = try YAMLValue.parse("base: &b {repo: r, ref: v7.0}\nother: *b\n", file: "f.yaml")
    }

    @Test func infraOptInIsOnlyTheWordTrue() throws {
        let s = try PromoteTests.tree()
        for word in ["yes", "on", "True", "\"true\"", "1", "y"] {
            try s.write("fleet/hertz.yaml", "host: hertz\nbaseline: {repo: r, ref: v7.0}\nkernel_suffix: hz\ninfra_opt_in: \(word)\nscopes: [board/b1]\n")
            do { _ = try Manifest.load(try HostName("hertz"), in: s.ws); Issue.record("infra_opt_in: \(word) must be refused") }
            catch let e as KAError {
                #expect(e.description.contains("fleet/hertz.yaml:4:") && e.description.contains("expected true or false"), "\(word): \(e)")
                #expect(e.hint?.contains("write exactly true or false") == true)
            }
        }
        try s.write("fleet/hertz.yaml", "host: hertz\nbaseline: {repo: r, ref: v7.0}\nkernel_suffix: hz\ninfra_opt_in: true\nscopes: [board/b1]\n")
        #expect(try Manifest.load(try HostName("hertz"), in: s.ws).infraOptIn)
    }

    @Test func outMustBeAPlaceOfItsOwnAndNothingIsCreatedForABadOne() async throws {
        let s = try PromoteTests.tree()
        let deep = (0..<4000).map { _ in "d" }.joined(separator: "/")
        for (out, expected) in [(deep, "the path is"), ("", "is empty"), (".", "is the checkout"), ("patches/x", "patches/"),
                                ("fleet", "fleet/"), (".git/out", ".git/"), (String(repeating: "n", count: 300), "path component")] {
            let r = try await KaRun.run(["promote", "h1", "--out", out], root: s.root)
            #expect(r.status == 2, "--out \(out.prefix(20)): \(r.stderr)")
            #expect(r.stderr.contains(expected), "--out \(out.prefix(20)): \(r.stderr)")
            #expect(!r.stderr.contains("NSCocoaErrorDomain") && !r.stderr.contains("Foundation"))
        }
        #expect(!s.exists("d") && !s.exists("patches/x") && !s.exists(".git"))
        // a dir that holds someone else's files is not promote's to replace
        try s.write("out/mine/notes.txt", "keep me")
        let r = try await KaRun.run(["promote", "h1", "--out", "out/mine"], root: s.root)
        #expect(r.status == 2 && r.stderr.contains("holds files promote did not write (notes.txt)"), "\(r.stderr)")
        #expect(try s.read("out/mine/notes.txt") == "keep me")
        // a dir outside out/ and build/ is not the agent's to write
        let elsewhere = try await KaRun.run(["promote", "h1", "--out", "mine"], root: s.root)
        #expect(elsewhere.status == 2 && elsewhere.stderr.contains("is outside the agent's output dirs"), "\(elsewhere.stderr)")
        #expect(!s.exists("mine"))
    }

    @Test func derivedPathsThroughSymlinksIntoHomeOrOutAreRefused() async throws {
        let home = try Self.fakeHome()
        defer { try? FileManager.default.removeItem(at: home) }
        let env = ["HOME": home.path]

        // the default build/ is a symlink into $HOME
        let a = try PromoteTests.tree()
        try FileManager.default.createSymbolicLink(at: a.url("build"), withDestinationURL: home)
        var r = try await KaRun.run(["promote", "h1"], root: a.root, env: env)
        #expect(r.status == 2 && r.stderr.contains("leads out of the checkout"), "\(r.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: home.path).isEmpty)

        // a patch file symlinked into $HOME, and one symlinked out of patches/
        let b = try PromoteTests.tree()
        try "secret".write(to: home.appendingPathComponent("secret.patch"), atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(at: b.url("patches/board/b1/0009-home.patch"), withDestinationURL: home.appendingPathComponent("secret.patch"))
        r = try await KaRun.run(["promote", "h1"], root: b.root, env: env)
        #expect(r.status == 2 && r.stderr.contains("0009-home.patch") && r.stderr.contains("escapes patches/"), "\(r.stderr)")
        try FileManager.default.removeItem(at: b.url("patches/board/b1/0009-home.patch"))
        try b.write("elsewhere/x.patch", try b.read("patches/board/b1/0001-first.patch"))
        try FileManager.default.createSymbolicLink(at: b.url("patches/board/b1/0009-out.patch"), withDestinationURL: b.url("elsewhere/x.patch"))
        r = try await KaRun.run(["promote", "h1"], root: b.root, env: env)
        #expect(r.status == 2 && r.stderr.contains("escapes patches/"), "\(r.stderr)")

        // fleet/h1.yaml is a symlink out of fleet/
        let c = try PromoteTests.tree()
        try FileManager.default.moveItem(at: c.url("fleet/h1.yaml"), to: home.appendingPathComponent("h1.yaml"))
        try FileManager.default.createSymbolicLink(at: c.url("fleet/h1.yaml"), withDestinationURL: home.appendingPathComponent("h1.yaml"))
        r = try await KaRun.run(["promote", "h1"], root: c.root, env: env)
        #expect(r.status == 2 && r.stderr.contains("fleet/h1.yaml") && r.stderr.contains("leads out of fleet/"), "\(r.stderr)")

        // KA_STATE_DIR under $HOME
        let d = try PromoteTests.tree()
        r = try await KaRun.run(["status"], root: d.root, env: env.merging(["KA_STATE_DIR": home.appendingPathComponent("state").path]) { $1 })
        #expect(r.status == 2 && r.stderr.contains("KA_STATE_DIR") && r.stderr.contains("$HOME"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: home.appendingPathComponent("state").path))

        // import --to a scope dir that is a symlink out
        let e = try PromoteTests.tree()
        try await CrashAndLockTests.campaignCheckout(e, count: 2)
        let outside = home.appendingPathComponent("landing")
        try FileManager.default.createDirectory(at: outside, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: e.url("patches/driver"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(at: e.url("patches/driver/x"), withDestinationURL: outside)
        r = try await KaRun.run(["import", "besser", "out/*.patch", "--to", "driver/x", "--checkout", "campaigns/besser"], root: e.root, env: env)
        #expect(r.status == 2, "\(r.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside.path).isEmpty, "import wrote through the symlink")

        // migrate-tree --to a path through a symlink into $HOME: refused before anything moves
        let f = try PromoteTests.tree()
        try FileManager.default.createSymbolicLink(at: f.url("patches/board/hl"), withDestinationURL: home)
        let snap = TreeFiles.snapshot(f.root)
        r = try await KaRun.run(["migrate-tree", "--from", "board/b1", "--to", "board/hl/pp"], root: f.root, env: env)
        #expect(r.status == 2, "\(r.stderr)")
        #expect(TreeFiles.snapshot(f.root) == snap)
        #expect(try FileManager.default.contentsOfDirectory(atPath: home.path).filter { $0 != "secret.patch" && $0 != "h1.yaml" && $0 != "landing" && $0 != "state" }.isEmpty)
    }
}
