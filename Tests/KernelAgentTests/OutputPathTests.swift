import Foundation
import Testing
@testable import KernelAgent

/// Issue 20, high: every path a verb writes goes through one rule (`Policy.admitOutputPath`): only `out/` and
/// `build/` of the checkout, never the registry, the state, git's files, $HOME or anything outside.
@Suite struct OutputPathTests {
    /// A checkout with state (a promote ran), git's config, and every file a stray `--html` could destroy.
    static func checkout() async throws -> Sandbox {
        let s = try PromoteTests.tree()
        try s.write(".git/config", "[core]\n\tbare = false\n")
        let r = try await KaRun.run(["promote", "h1"], root: s.root)
        try #require(r.status == 0, "\(r.stderr)")
        #expect(s.exists(".ka/state.sqlite"))
        return s
    }

    static func bytes(_ url: URL) -> Data? { FileManager.default.contents(atPath: url.path) }

    @Test func statusHtmlRefusesEveryPathOutsideTheOutputDirsAndChangesNothing() async throws {
        let s = try await Self.checkout()
        let home = try ConfinementTests.fakeHome()
        let outside = FileManager.default.temporaryDirectory.appendingPathComponent("ka-outside-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: outside, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: home); try? FileManager.default.removeItem(at: outside) }
        let system = URL(fileURLWithPath: "/etc/ka-test-\(UUID().uuidString).html")
        defer { try? FileManager.default.removeItem(at: system) }
        let guarded = [".ka/state.sqlite", "fleet/hosts.yaml", "fleet/h1.yaml", ".git/config", "build/h1/v7.0/manifest.lock",
                       "patches/board/b1/0001-first.patch"]
        let before = Dictionary(uniqueKeysWithValues: guarded.map { ($0, Self.bytes(s.url($0))) })
        let env = ["HOME": home.path]
        let cases: [(String, String)] = [
            (".ka/state.sqlite", "the state dir"),
            ("fleet/hosts.yaml", "fleet/"),
            (".git/config", ".git/"),
            (s.url("patches/x.html").path, "patches/"),
            (home.appendingPathComponent("x.html").path, "$HOME"),
            ("~/dash.html", "home directory"),
            (system.path, "outside the agent's output dirs"),
            (outside.appendingPathComponent("d.html").path, "outside the agent's output dirs"),
            ("dash.html", "outside the agent's output dirs"),
            ("build/h1/v7.0/manifest.lock", "must end in .html"),
            ("build/h1/v7.0/page.html", "promote output dir"),
            ("out/../fleet/x.html", "fleet/"),
            ("", "is empty"),
        ]
        for (path, why) in cases {
            let r = try await KaRun.run(["status", "--html", path], root: s.root, env: env)
            #expect(r.status == 2, "--html \(path): exit \(r.status) \(r.stderr)")
            #expect(r.stderr.contains(why), "--html \(path): \(r.stderr)")
        }
        for rel in guarded { #expect(Self.bytes(s.url(rel)) == before[rel], "\(rel) changed") }
        #expect(try FileManager.default.contentsOfDirectory(atPath: home.path).isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside.path).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: system.path))
        #expect(!s.exists("dash.html") && !s.exists("build/h1/v7.0/page.html"))
        // every later verb still works
        let after = try await KaRun.run(["status"], root: s.root, env: env)
        #expect(after.status == 0, "\(after.stderr)")
    }

    @Test func aSymlinkOrAForeignFileInOutIsNotReplaced() async throws {
        let s = try await Self.checkout()
        let hosts = try s.read("fleet/hosts.yaml")
        try FileManager.default.createDirectory(at: s.url("out"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(at: s.url("out/reg.html"), withDestinationURL: s.url("fleet/hosts.yaml"))
        var r = try await KaRun.run(["status", "--html", "out/reg.html"], root: s.root)
        #expect(r.status == 2 && r.stderr.contains("fleet/"), "\(r.stderr)")
        #expect(try s.read("fleet/hosts.yaml") == hosts)
        // out/ itself a symlink out of the checkout
        let elsewhere = FileManager.default.temporaryDirectory.appendingPathComponent("ka-elsewhere-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: elsewhere, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: elsewhere) }
        try FileManager.default.removeItem(at: s.url("build"))   // the promote's output: build/ itself becomes the link
        try FileManager.default.createSymbolicLink(at: s.url("build"), withDestinationURL: elsewhere)
        r = try await KaRun.run(["status", "--html", "build/d.html"], root: s.root)
        #expect(r.status == 2 && r.stderr.contains("leads out of the checkout"), "\(r.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: elsewhere.path).isEmpty)
        // a person's file under out/ is not a page kernel-agent wrote
        try s.write("out/notes.html", "<p>mine</p>\n")
        r = try await KaRun.run(["status", "--html", "out/notes.html"], root: s.root)
        #expect(r.status == 2 && r.stderr.contains("not a dashboard page kernel-agent wrote"), "\(r.stderr)")
        #expect(try s.read("out/notes.html") == "<p>mine</p>\n")
        // a FIFO is refused without blocking
        #expect(mkfifo(s.url("out/fifo.html").path, 0o644) == 0)
        r = try await KaRun.run(["status", "--html", "out/fifo.html"], root: s.root, deadline: 30)
        #expect(!r.signalled && r.status == 2 && r.stderr.contains("FIFO"), "\(r.stderr)")
    }

    @Test func aRelativePathIsTheCheckoutsAndAPageIsReplacedByTheNextOne() async throws {
        let s = try await Self.checkout()
        let cwd = FileManager.default.temporaryDirectory.appendingPathComponent("ka-cwd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: cwd.appendingPathComponent("out"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: cwd) }
        var r = try await KaRun.run(["status", "--html", "out/dash.html"], root: s.root, cwd: cwd)
        #expect(r.status == 0, "\(r.stderr)")
        let page = try s.read("out/dash.html")
        #expect(page.contains(StatusVerb.pageMark) && page.contains("<!doctype html>"))
        #expect(!FileManager.default.fileExists(atPath: cwd.appendingPathComponent("out/dash.html").path), "resolved against the working dir")
        // the page it wrote is its own to replace
        r = try await KaRun.run(["status", "--html", "out/dash.html"], root: s.root, cwd: cwd)
        #expect(r.status == 0, "\(r.stderr)")
        r = try await KaRun.run(["status", "--html", "build/pages/dash.html"], root: s.root)
        #expect(r.status == 0 && s.exists("build/pages/dash.html"), "\(r.stderr)")
        // no temp file is left beside it
        let left = try FileManager.default.contentsOfDirectory(atPath: s.url("out").path).filter { $0.hasPrefix(FS.tempPrefix) }
        #expect(left.isEmpty, "\(left)")
    }

    @Test func aDanglingSymlinkIntoHomeIsARefusalNotAFailure() async throws {
        let s = try PromoteTests.tree()
        let home = try ConfinementTests.fakeHome()
        defer { try? FileManager.default.removeItem(at: home) }
        try FileManager.default.createDirectory(at: s.url("build/h1"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: s.url("build/h1/v7.0").path, withDestinationPath: home.appendingPathComponent("gone").path)
        let r = try await KaRun.run(["promote", "h1"], root: s.root, env: ["HOME": home.path])
        #expect(r.status == 2 && r.stderr.contains("leads out of build/"), "exit \(r.status): \(r.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: home.path).isEmpty)
        let page = try await KaRun.run(["status", "--html", "build/h1/v7.0"], root: s.root, env: ["HOME": home.path])
        #expect(page.status == 2, "\(page.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: home.path).isEmpty)
    }

    @Test func promoteOutIsHeldToTheSameRule() async throws {
        let s = try await Self.checkout()
        let outside = FileManager.default.temporaryDirectory.appendingPathComponent("ka-outside-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: outside) }
        var r = try await KaRun.run(["promote", "h1", "--out", outside.path], root: s.root)
        #expect(r.status == 2 && r.stderr.contains("outside the agent's output dirs"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: outside.path))
        r = try await KaRun.run(["promote", "h1", "--out", "build/h1/v7.0"], root: s.root)
        #expect(r.status == 0 && s.exists("build/h1/v7.0/manifest.lock"), "\(r.stderr)")
    }
}
