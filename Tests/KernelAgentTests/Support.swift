import Foundation
import Testing
import KATestSupport
@testable import KernelAgent

/// Paths and helpers shared by the tests.
enum TestEnv {
    static let projectRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// `../shared` beside the project (or $KA_SHARED_DIR). Tests that need it fail loudly without it.
    static var sharedDir: URL {
        if let env = ProcessInfo.processInfo.environment["KA_SHARED_DIR"] { return URL(fileURLWithPath: env) }
        return projectRoot.deletingLastPathComponent().appendingPathComponent("shared")
    }

    static func fixtureTree() throws -> URL {
        let url = sharedDir.appendingPathComponent("fixtures/linux-v7.0-dts")
        guard FileManager.default.fileExists(atPath: url.appendingPathComponent("arch/arm64/boot/dts/rockchip/rk3399-pinebook-pro.dts").path) else {
            Issue.record("MISSING FIXTURE: \(url.path) — put the shared folder beside the project or set KA_SHARED_DIR")
            throw KAError.failure("fixture missing", url.path)
        }
        return url
    }

    /// The built `ka` binary: the one beside this test bundle (swift test builds it alongside, in the same scratch
    /// path, so a sanitizer build tests its own `ka`, not .build's), else .build's.
    static var kaBinary: URL {
        if let env = ProcessInfo.processInfo.environment["KA_BIN"] { return URL(fileURLWithPath: env) }
        // Without /proc/self/exe (not Linux) the fixed candidates below are tried.
        if let bundle = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            let beside = URL(fileURLWithPath: bundle).deletingLastPathComponent().appendingPathComponent("ka")
            if FileManager.default.isExecutableFile(atPath: beside.path) { return beside }
        }
        let candidates = [".build/debug/ka", ".build/x86_64-unknown-linux-gnu/debug/ka", ".build/aarch64-unknown-linux-gnu/debug/ka"]
        for c in candidates where FileManager.default.isExecutableFile(atPath: projectRoot.appendingPathComponent(c).path) {
            return projectRoot.appendingPathComponent(c)
        }
        return projectRoot.appendingPathComponent(".build/debug/ka")
    }
}

/// A throwaway copy of the shipped fleet/ and patches/ in a temp dir, with its own state.
final class Sandbox {
    let root: URL
    let ws: Workspace
    let store = MemoryStateStore()

    init(copyShipped: Bool = true) throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("ka-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        ws = Workspace(root: root)
        if copyShipped {
            for d in ["fleet", "patches"] {
                try FileManager.default.copyItem(at: TestEnv.projectRoot.appendingPathComponent(d), to: root.appendingPathComponent(d))
            }
        } else {
            try FileManager.default.createDirectory(at: root.appendingPathComponent("fleet"), withIntermediateDirectories: true)
            try FileManager.default.createDirectory(at: root.appendingPathComponent("patches"), withIntermediateDirectories: true)
            try write("fleet/hosts.yaml", Self.miniRegistry)
        }
    }

    deinit { try? FileManager.default.removeItem(at: root) }

    static let miniRegistry = """
    hosts:
      h1: {roles: [target], arch: aarch64, distro: arch, wake: always}
      h2: {roles: [target], arch: aarch64, distro: arch, wake: always}
      hertz: {roles: [infra, signing], arch: x86_64, distro: debian, wake: always}
      bob: {roles: [target, build], build_tier: primary, arch: aarch64, distro: arch, wake: always}
    routing:
      aarch64: [bob]
    """

    var ctx: VerbContext { VerbContext(workspace: ws, state: store, blocks: store) }

    func ctx(faults: @escaping @Sendable (String) throws -> Void) -> VerbContext {
        VerbContext(workspace: ws, state: store, blocks: store, faults: faults)
    }

    func url(_ rel: String) -> URL { root.appendingPathComponent(rel) }

    func write(_ rel: String, _ text: String) throws {
        let u = url(rel)
        try FileManager.default.createDirectory(at: u.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: u)
    }

    func read(_ rel: String) throws -> String { String(decoding: try Data(contentsOf: url(rel)), as: UTF8.self) }
    func exists(_ rel: String) -> Bool { FileManager.default.fileExists(atPath: url(rel).path) }

    /// Every file under fleet/ and patches/ with its bytes: compare before/after for atomicity.
    func snapshot() -> [String: Data] {
        var out: [String: Data] = [:]
        for d in ["fleet", "patches"] {
            let base = url(d)
            guard let e = FileManager.default.enumerator(at: base, includingPropertiesForKeys: nil) else { continue }
            for case let u as URL in e {
                let rel = d + "/" + u.standardizedFileURL.path.dropFirst(base.standardizedFileURL.path.count + 1)
                var isDir: ObjCBool = false
                FileManager.default.fileExists(atPath: u.path, isDirectory: &isDir)
                out[rel] = isDir.boolValue ? Data("<dir>".utf8) : (try? Data(contentsOf: u)) ?? Data()
            }
        }
        return out
    }

    /// Runs the real `ka` binary in this sandbox, on a thread of its own: a blocking wait on one of the (2-thread)
    /// cooperative pool's threads starves every other test of the run.
    func ka(_ args: [String], env extra: [String: String] = [:], argv0: URL? = nil) async throws -> TestCommand.Result {
        var env = ProcessInfo.processInfo.environment
        env["KA_ROOT"] = root.path
        env["KA_STATE_DIR"] = root.appendingPathComponent(".ka").path
        for (k, v) in extra { env[k] = v }
        let argv = [(argv0 ?? TestEnv.kaBinary).path] + args, cwd = root
        let environment = env
        return try await offPool { try TestCommand.runBlocking(argv, cwd: cwd, environment: environment) }
    }

    /// A format-patch mail with the given trailers and diff body.
    static func mail(subject: String, trailers: [String], diff: String) -> String {
        """
        From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001
        From: marfrit <marfrit@reauktion.de>
        Date: Sat, 9 May 2026 10:00:00 +0200
        Subject: [PATCH] \(subject)

        Body text explaining why.

        \(trailers.joined(separator: "\n"))
        ---
         notes
        \(diff)--
        2.39.5

        """
    }

    /// A diff adding `added` after line `at` of a file whose lines are `lines`.
    static func diff(file: String, lines: [String], at: Int, added: String) -> String {
        let lo = max(0, at - 3), hi = min(lines.count, at + 3)
        var body = ""
        for i in lo..<at { body += " \(lines[i])\n" }
        body += "+\(added)\n"
        for i in at..<hi { body += " \(lines[i])\n" }
        let oldCount = hi - lo
        return "diff --git a/\(file) b/\(file)\n--- a/\(file)\n+++ b/\(file)\n@@ -\(lo + 1),\(oldCount) +\(lo + 1),\(oldCount + 1) @@\n" + body
    }
}

