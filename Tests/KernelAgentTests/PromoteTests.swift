import Foundation
import Testing
import KATestSupport
@testable import KernelAgent

/// Resolution, refusals, lock, hashes: the library path (the CLI tests check the same through the binary).
@Suite struct PromoteTests {
    static let baseLines = (1...60).map { "line \($0) of the base file" }

    /// A sandbox with a tiny tree: patches in several scopes, and manifests for h1/h2.
    static func tree() throws -> Sandbox {
        let s = try Sandbox(copyShipped: false)
        func add(_ rel: String, at: Int, file: String = "src/a.c", campaign: String? = "camp") throws {
            let scope = (rel as NSString).deletingLastPathComponent
            var trailers = ["Signed-off-by: marfrit <marfrit@reauktion.de>"]
            if let campaign { trailers.append("Campaign: \(campaign)") }
            trailers.append("Scope: \(scope)")
            try s.write("patches/" + rel, Sandbox.mail(subject: rel, trailers: trailers,
                                                      diff: Sandbox.diff(file: file, lines: baseLines, at: at, added: "added by \(rel)")))
        }
        try add("board/b1/0002-second.patch", at: 50)
        try add("board/b1/0001-first.patch", at: 40)
        try add("arch/arm64/x/0001-arch.patch", at: 5, file: "src/c.c")
        try add("soc/rockchip/rk3399/0001-soc.patch", at: 20)
        try add("soc/rockchip/0001-soc-generic.patch", at: 30, file: "src/b.c")
        try add("subsystem/media/vb2/0001-sub.patch", at: 10)
        try s.write("fleet/h1.yaml", """
        # h1 manifest
        host: h1
        baseline: {repo: "https://example.invalid/linux.git", ref: v7.0}
        kernel_suffix: h1
        scopes:
          - board/b1
          - soc/rockchip
        include:
          - arch/arm64/x
          - subsystem/media/vb2/0001-sub.patch
          - board/b1/0001-first.patch
        """)
        for i in 1...60 { _ = i }
        try s.write("base/src/a.c", baseLines.joined(separator: "\n") + "\n")
        try s.write("base/src/b.c", baseLines.joined(separator: "\n") + "\n")
        return s
    }

    @Test func resolutionOrderIsGenericFirstThenDirThenName() throws {
        let s = try Self.tree()
        let policy = try s.ctx.policy()
        let res = try Resolver(workspace: s.ws, policy: policy).resolve(try Manifest.load(HostName("h1"), in: s.ws))
        #expect(res.entries.map(\.path.value) == [
            "arch/arm64/x/0001-arch.patch",
            "subsystem/media/vb2/0001-sub.patch",
            "soc/rockchip/0001-soc-generic.patch",
            "soc/rockchip/rk3399/0001-soc.patch",
            "board/b1/0001-first.patch",
            "board/b1/0002-second.patch",
        ])
        // reached twice (scope board/b1 and the explicit include): applied once, reported
        let dup = try #require(res.duplicates.first)
        #expect(res.duplicates.count == 1)
        #expect(dup.path.value == "board/b1/0001-first.patch")
        #expect(dup.via == ["scope board/b1", "include board/b1/0001-first.patch"])
    }

    @Test func seriesFileOverridesNameOrder() throws {
        let s = try Self.tree()
        try s.write("patches/board/b1/series", "# our order\n0002-second.patch\n0001-first.patch\n")
        let res = try Resolver(workspace: s.ws, policy: try s.ctx.policy()).resolve(try Manifest.load(HostName("h1"), in: s.ws))
        #expect(res.entries.suffix(2).map(\.path.value) == ["board/b1/0002-second.patch", "board/b1/0001-first.patch"])
    }

    @Test func manifestLineOrderDoesNotChangeTheResult() async throws {
        let s = try Self.tree()
        let a = try await PromoteVerb.parse(["h1"]).execute(in: s.ctx)
        let lockA = try s.read("build/h1/v7.0/manifest.lock")
        let text = try s.read("fleet/h1.yaml")
        try s.write("fleet/h1.yaml", text.replacingOccurrences(of: "  - board/b1\n  - soc/rockchip", with: "  - soc/rockchip\n  - board/b1"))
        _ = try await PromoteVerb.parse(["h1"]).execute(in: s.ctx)
        let lockB = try s.read("build/h1/v7.0/manifest.lock")
        // only the manifest's own hash differs
        let strip = { (t: String) in t.split(separator: "\n").filter { !$0.contains("b2sum") || $0.contains("    b2sum") }.joined(separator: "\n") }
        #expect(strip(lockA) == strip(lockB))
        #expect(a.0.pins.count > 0)
    }

    @Test func lockIsByteIdenticalForTheSameInputs() async throws {
        let s = try Self.tree()
        _ = try await PromoteVerb.parse(["h1"]).execute(in: s.ctx)
        let lock1 = try Data(contentsOf: s.url("build/h1/v7.0/manifest.lock"))
        let cum1 = try Data(contentsOf: s.url("build/h1/v7.0/0001-h1-cumulative-series.patch"))
        // a second sandbox with the same inputs, different location, different time
        let t = try Self.tree()
        _ = try await PromoteVerb.parse(["h1", "--out", "out/elsewhere"]).execute(in: t.ctx)
        #expect(try Data(contentsOf: t.url("out/elsewhere/manifest.lock")) == lock1)
        #expect(try Data(contentsOf: t.url("out/elsewhere/0001-h1-cumulative-series.patch")) == cum1)
        // the lock's cumulative b2sum is what coreutils says
        let b2 = try await TestCommand.run(["b2sum", s.url("build/h1/v7.0/0001-h1-cumulative-series.patch").path])
        let lock = String(decoding: lock1, as: UTF8.self)
        #expect(lock.contains("b2sum: \"\(b2.stdoutText.prefix(128))\""))
        // every patch's b2sum too
        let p = try await TestCommand.run(["b2sum", s.url("patches/board/b1/0001-first.patch").path])
        #expect(lock.contains("b2sum: \"\(p.stdoutText.prefix(128))\""))
        for key in ["host: \"h1\"", "path: \"fleet/h1.yaml\"", "ref: \"v7.0\"", "commit: null", "kernel_suffix: \"h1\"",
                    "tool: \"kernel-agent", "content_hash: \"sha256:", "scope: \"board/b1\"", "patch_count: 6"] {
            #expect(lock.contains(key), "lock lacks \(key)")
        }
    }

    @Test func contentHashIgnoresContextDriftAndTrailerEdits() throws {
        let lines = Self.baseLines
        let a = Sandbox.mail(subject: "x", trailers: ["Scope: board/b1"], diff: Sandbox.diff(file: "src/a.c", lines: lines, at: 20, added: "new"))
        var drifted = lines
        drifted[18] = "context line that changed upstream"
        drifted.insert("an extra line above", at: 2)
        let b = Sandbox.mail(subject: "x (v2)", trailers: ["Signed-off-by: someone else <x@y>", "Campaign: other", "Scope: board/b2"],
                             diff: Sandbox.diff(file: "src/a.c", lines: drifted, at: 21, added: "new"))
        let c = Sandbox.mail(subject: "x", trailers: ["Scope: board/b1"], diff: Sandbox.diff(file: "src/a.c", lines: lines, at: 20, added: "different"))
        let d = Sandbox.mail(subject: "x", trailers: ["Scope: board/b1"], diff: Sandbox.diff(file: "src/other.c", lines: lines, at: 20, added: "new"))
        let ha = PatchFile(bytes: Data(a.utf8)), hb = PatchFile(bytes: Data(b.utf8))
        #expect(ha.contentHash == hb.contentHash)
        #expect(ha.b2sum != hb.b2sum)
        #expect(ha.contentHash != PatchFile(bytes: Data(c.utf8)).contentHash)
        #expect(ha.contentHash != PatchFile(bytes: Data(d.utf8)).contentHash)
    }

    @Test func shippedPatchTrailersAgreeWithGit() async throws {
        let s = try Sandbox()
        for p in try PatchTree(s.ws).allPatches() {
            let data = try Data(contentsOf: s.ws.url(p))
            let git = try await TestCommand.run(["git", "interpret-trailers", "--parse"], stdin: data)
            let gitScopes = git.stdoutText.split(separator: "\n").filter { $0.hasPrefix("Scope: ") }.map { String($0.dropFirst(7)) }
            let ours = PatchFile(bytes: data)
            #expect(ours.scopeTrailers == gitScopes, "\(p)")
            #expect(ours.scopeTrailers == [p.parent], "\(p)")
            #expect(!ours.files.isEmpty)
        }
    }

    // MARK: refusals

    func refusal(_ s: Sandbox, _ args: [String] = ["h1"], file: String = "h1") async throws -> KAError {
        do {
            _ = try await PromoteVerb.parse(args).execute(in: s.ctx)
        } catch let e as KAError {
            #expect(e.exitCode == 2)
            #expect(!s.exists("build/\(file)"), "a refusal must write nothing")
            return e
        }
        Issue.record("promote did not refuse")
        throw KAError.failure("no refusal")
    }

    @Test func refusesMissingInclude() async throws {
        let s = try Self.tree()
        try s.write("fleet/h1.yaml", try s.read("fleet/h1.yaml").replacingOccurrences(of: "arch/arm64/x", with: "arch/arm64/xyz"))
        let e = try await refusal(s)
        #expect(e.message == "fleet/h1.yaml:9:5 → include arch/arm64/xyz → no such patch dir")
        #expect(e.hint?.contains("did you mean 'arch/arm64/x'") == true)
    }

    @Test func refusesUnscopedDoubleAndMismatchedScopes() async throws {
        for (trailers, expected) in [
            (["Signed-off-by: a <b@c>"], "unscoped patch: no 'Scope:' trailer"),
            (["Scope: board/b1", "Scope: board/b1"], "2 'Scope:' trailers"),
            (["Scope: board/other"], "Scope: board/other differs from its directory board/b1"),
        ] {
            let s = try Self.tree()
            try s.write("patches/board/b1/0003-bad.patch", Sandbox.mail(subject: "bad", trailers: trailers,
                diff: Sandbox.diff(file: "src/c.c", lines: Self.baseLines, at: 3, added: "x")))
            let e = try await refusal(s)
            #expect(e.message.hasPrefix("fleet/h1.yaml → scope board/b1 → board/b1/0003-bad.patch → "))
            #expect(e.message.contains(expected), "\(e.message)")
        }
    }

    @Test func scopeLineInBodyIsNotAScopeTag() async throws {
        let s = try Self.tree()
        let mail = Sandbox.mail(subject: "bad", trailers: ["Signed-off-by: a <b@c>"], diff: Sandbox.diff(file: "src/c.c", lines: Self.baseLines, at: 3, added: "x"))
            .replacingOccurrences(of: "Body text explaining why.", with: "Scope: board/b1\nis mentioned in the body")
        try s.write("patches/board/b1/0003-bad.patch", mail)
        let e = try await refusal(s)
        #expect(e.message.contains("a Scope: line stands in the body, not in the trailer block"))
    }

    @Test func refusesIncludesThatEscapePatches() async throws {
        for (include, expected) in [("../fleet", "escapes patches/ ('..')"), ("/etc/passwd", "escapes patches/ (absolute path)"),
                                    ("board/../../x", "escapes patches/ ('..')"), ("evil/x", "unscoped: the first component")] {
            let s = try Self.tree()
            try s.write("fleet/h1.yaml", try s.read("fleet/h1.yaml").replacingOccurrences(of: "  - arch/arm64/x\n", with: "  - \(include)\n"))
            let e = try await refusal(s)
            #expect(e.message.hasPrefix("fleet/h1.yaml:9:5 → include \(include) → "), "\(e.message)")
            #expect(e.message.contains(expected), "\(e.message)")
        }
        // a symlink that leads out of patches/
        let s = try Self.tree()
        try FileManager.default.createSymbolicLink(atPath: s.url("patches/board/leak").path, withDestinationPath: s.url("fleet").path)
        try s.write("fleet/h1.yaml", try s.read("fleet/h1.yaml") + "\n  - board/leak\n")
        let e = try await refusal(s)
        #expect(e.message.contains("include board/leak → escapes patches/ (symlink to"), "\(e.message)")
    }

    @Test func refusesManifestErrorsWithFileLineColumn() async throws {
        let cases: [(String, String)] = [
            ("host: h1\nbaseline: {repo: r, ref: v7.0}\nkernel_suffix: h1\nscopse: [board/b1]\n", "fleet/h1.yaml:4:1: unknown key 'scopse'"),
            ("host: h1\nbaseline: {repo: r, ref: v7.0}\nkernel_suffix: h1\nscopes: board/b1\n", "fleet/h1.yaml:4:9: scopes: expected a list, found a scalar"),
            ("host: h1\nbaseline: {repo: r, ref: v7.0\nkernel_suffix: h1\n", "fleet/h1.yaml:3:"),
            ("host: h1\nkernel_suffix: h1\n", "fleet/h1.yaml:1:1: missing required key 'baseline'"),
            ("host: h2\nbaseline: {repo: r, ref: v7.0}\nkernel_suffix: h1\n", "fleet/h1.yaml:1:7: host: names host 'h2'"),
            ("host: h1\nbaseline: {repo: r, ref: v7.0}\nkernel_suffix: h1\ninfra_opt_in: maybe\n", "fleet/h1.yaml:4:15: infra_opt_in: expected true or false"),
        ]
        for (yaml, expected) in cases {
            let s = try Self.tree()
            try s.write("fleet/h1.yaml", yaml)
            let e = try await refusal(s)
            #expect(e.message.hasPrefix(expected), "got: \(e.message)")
        }
        let s = try Self.tree()
        try s.write("fleet/h1.yaml", "host: h1\nbaseline: {repo: r, ref: v7.0}\nkernel_suffix: h1\nscopse: []\n")
        await #expect(try refusal(s).hint?.contains("did you mean 'scopes'?") == true)
    }

    @Test func refusesUnknownHostAndInfraWithoutOptIn() async throws {
        let s = try Self.tree()
        let e = try await refusal(s, ["h3"], file: "h3")
        #expect(e.message == "host 'h3' → unknown host (not in fleet/hosts.yaml)")
        // a bad name does not parse: a usage error from the verb's own parser, before any plan (issue 18)
        #expect(throws: (any Error).self) { _ = try PromoteVerb.parse(["../h1"]) }
        #expect(!s.exists("build"))
        try s.write("fleet/hertz.yaml", "host: hertz\nbaseline: {repo: r, ref: v7.0}\nkernel_suffix: hz\nscopes: [board/b1]\n")
        let infra = try await refusal(s, ["hertz"], file: "hertz")
        #expect(infra.message == "fleet/hertz.yaml → 'hertz' is an infra host (signing,infra) and its manifest does not opt in")
        try s.write("fleet/hertz.yaml", "host: hertz\nbaseline: {repo: r, ref: v7.0}\nkernel_suffix: hz\nscopes: [board/b1]\ninfra_opt_in: true\n")
        _ = try await PromoteVerb.parse(["hertz"]).execute(in: s.ctx)
        #expect(s.exists("build/hertz/v7.0/manifest.lock"))
    }

    @Test func infraRuleHoldsEvenIfTheRegistryForgetsTheRole() async throws {
        let s = try Self.tree()
        try s.write("fleet/hosts.yaml", Sandbox.miniRegistry.replacingOccurrences(of: "hertz: {roles: [infra, signing]", with: "hertz: {roles: [target]"))
        try s.write("fleet/hertz.yaml", "host: hertz\nbaseline: {repo: r, ref: v7.0}\nkernel_suffix: hz\nscopes: [board/b1]\n")
        #expect(try await refusal(s, ["hertz"], file: "hertz").message.contains("is an infra host"))
    }

    @Test func refusesBlockedPatchesByName() async throws {
        let s = try Self.tree()
        try s.store.file(kind: .patchFail, scope: .patches(["soc/rockchip/rk3399/0001-soc.patch"]), title: "soc patch fails on v7.0", body: "")
        let e = try await refusal(s)
        #expect(e.message == "fleet/h1.yaml → scope soc/rockchip → soc/rockchip/rk3399/0001-soc.patch → blocked by open [ka:patch-fail] mem-1: soc patch fails on v7.0")
        // closing the block lifts it
        try s.store.close(id: "mem-1")
        _ = try await PromoteVerb.parse(["h1"]).execute(in: s.ctx)
        #expect(s.exists("build/h1/v7.0/manifest.lock"))
        // a block on another host's patch or of another kind does not halt this promote
        try s.store.file(kind: .hostDrifted, scope: .host("h1"), title: "drifted", body: "")
        _ = try await PromoteVerb.parse(["h1"]).execute(in: s.ctx)
    }

    @Test func detectsCampaignConflicts() async throws {
        let s = try Self.tree()
        // a driver patch from another campaign touching lines 45-50 of src/a.c, where board/b1/0002 (at 50) also edits
        try s.write("patches/driver/d/0001-drv.patch", Sandbox.mail(subject: "drv", trailers: ["Campaign: other", "Scope: driver/d"],
            diff: Sandbox.diff(file: "src/a.c", lines: Self.baseLines, at: 48, added: "driver change")))
        try s.write("fleet/h1.yaml", try s.read("fleet/h1.yaml") + "\n  - driver/d\n")
        let e = try await refusal(s)
        #expect(e.message.contains("campaign conflict: 1 overlapping hunk pair(s)"), "\(e.message)")
        #expect(e.message.contains("src/a.c: driver/d/0001-drv.patch [scope driver/d, campaign other] lines 46-51 overlaps board/b1/0002-second.patch [scope board/b1, campaign camp] lines 48-53"), "\(e.message)")
        // plan only reads: even where refusals file blocks, the plan files none; its error names the block, and
        // the front door files it, once however often the refusal is seen
        let filing = VerbContext(workspace: s.ws, state: s.store, blocks: s.store, fileBlocksOnRefusal: true)
        let planned = try await #require(throws: KAError.self) { try await PromoteVerb.parse(["h1"]).plan(in: filing) }
        #expect(try s.store.openBlocks().isEmpty, "the plan filed nothing")
        #expect(planned.blocks.map(\.kind) == [.campaignConflict] && planned.blocks.first?.scope.marker == "patches=board/b1/0002-second.patch,driver/d/0001-drv.patch", "\(planned.blocks)")
        try await filing.fileRequestedBlocks(of: planned)
        try await filing.fileRequestedBlocks(of: planned)
        #expect(try s.store.openBlocks().map(\.kind) == [.campaignConflict], "filed once")
        try await s.ctx.fileRequestedBlocks(of: planned)   // the bare CLI files none
        #expect(try s.store.openBlocks().count == 1)
        // patches of one series (same scope and campaign) touching neighbouring lines are not a conflict
        #expect(ConflictDetector.detect(try Resolver(workspace: s.ws, policy: try s.ctx.policy())
            .resolve(try Manifest.load(HostName("h1"), in: s.ws)).entries.filter { $0.path.value.hasPrefix("board/") }).isEmpty)
    }
}
