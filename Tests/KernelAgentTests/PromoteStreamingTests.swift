import Crypto
import Foundation
import Testing
import KATestSupport
@testable import KernelAgent

/// Promote streams its series (issue 11 §3): the outputs are those of the in-memory promote it replaced, byte for
/// byte, and its peak memory does not grow with the number of patches.
@Suite struct PromoteStreamingTests {
    /// PromoteTests' tree, plus patches that exercise the streamed apply check: src/d.c is patched by two patches
    /// with another file's patch between them, and the second one's context holds the first one's added line (so
    /// it applies only if the checker kept the patched file); a patch that ends with its diff, and one with a real
    /// format-patch signature.
    static func tree() throws -> Sandbox {
        let s = try PromoteTests.tree()
        let base = PromoteTests.baseLines
        try s.write("base/src/c.c", base.joined(separator: "\n") + "\n")
        try s.write("base/src/d.c", base.joined(separator: "\n") + "\n")
        try s.write("base/src/e.c", base.joined(separator: "\n") + "\n")
        func mail(_ rel: String, _ diff: String) throws {
            let scope = (rel as NSString).deletingLastPathComponent
            try s.write("patches/" + rel, Sandbox.mail(subject: rel, trailers: ["Campaign: camp", "Scope: \(scope)"], diff: diff))
        }
        try mail("board/b1/0003-d-first.patch", Sandbox.diff(file: "src/d.c", lines: base, at: 30, added: "first change to d"))
        // no signature at all: the mail ends with its diff
        let bare = Sandbox.mail(subject: "bare", trailers: ["Campaign: camp", "Scope: board/b1"],
                                diff: Sandbox.diff(file: "src/e.c", lines: base, at: 30, added: "change to e"))
        try s.write("patches/board/b1/0004-e.patch", String(bare[..<(bare.range(of: "--\n2.39.5")?.lowerBound ?? bare.endIndex)]))
        var patched = base
        patched.insert("first change to d", at: 30)
        try mail("board/b1/0005-d-second.patch", Sandbox.diff(file: "src/d.c", lines: patched, at: 32, added: "second change to d"))
        // a real format-patch signature, which the cumulative replaces by its own between patches
        let signed = Sandbox.mail(subject: "signed", trailers: ["Campaign: camp", "Scope: board/b1"],
                                  diff: Sandbox.diff(file: "src/e.c", lines: base, at: 50, added: "signed change"))
        try s.write("patches/board/b1/0006-signed.patch", signed.replacingOccurrences(of: "\n--\n2.39.5\n", with: "\n-- \n2.39.5\n"))
        return s
    }

    /// The reference: what the in-memory promote wrote (its lock renderer, kept here verbatim, over
    /// `Resolver.resolve`'s entries, and `ApplyChecker.check` over them).
    static func reference(_ s: Sandbox, tree: URL?) throws -> (lock: String, cumulative: Data, report: String) {
        let res = try Resolver(workspace: s.ws, policy: try s.ctx.policy()).resolve(try Manifest.load(HostName("h1"), in: s.ws))
        var cumulative = Data()
        for (i, e) in res.entries.enumerated() { cumulative.append(CumulativeSeries.piece(e.patch.bytes, index: i, count: res.entries.count)) }
        let cumulativeB2 = Blake2b.hex(cumulative)
        var applyNote = "skipped: no baseline tree (give --tree or set source_dir)"
        var report = "# kernel-agent apply check: fleet/h1.yaml\nresult: SKIPPED — \(applyNote)\n"
        if let tree {
            let r = ApplyChecker.check(res.entries, tree: tree, display: tree.path)
            report = r.render(manifest: "fleet/h1.yaml")
            applyNote = "pass (\(r.summary)) against v7.0"
        }
        let shas = res.entries.map { Hex.encode(Array(SHA256.hash(data: $0.patch.bytes))) }
        let m = res.manifest
        let q = Promotion.quote
        var o = "# manifest.lock — written by `ka promote \(m.host)`; do not edit.\n"
        o += "lock_version: 3\n"
        o += "tool: \(q("kernel-agent \(KernelAgentVersion.string)"))\n"
        o += "host: \(q(m.host.value))\n"
        o += "manifest:\n  path: \(q(m.file))\n  b2sum: \(q(m.b2sum))\n"
        o += "baseline:\n  repo: \(q(m.baseline.repo))\n  ref: \(q(m.baseline.ref))\n"
        o += "  commit: \(m.baseline.commit.map(q) ?? "null")\n"
        // the tarball and config pins depend on KA_CONFIG (the box's, under scripts/test): BuildInputs' own tests cover them
        let inputs = try BuildInputs.resolve(m, ws: s.ws, pipeline: try PipelineConfig.fromEnvironment())
        o += inputs.lockBaselineLines(quote: q)
        o += inputs.lockConfigLines(quote: q)
        o += "kernel_suffix: \(q(m.kernelSuffix))\n"
        o += "apply_order: \(m.hasExplicitOrder ? "\"manifest\"" : "\"kind\"")\n"
        o += "patches:\n"
        if res.entries.isEmpty { o = String(o.dropLast()) + " []\n" }
        for (e, sha) in zip(res.entries, shas) {
            o += "  - path: \(q(e.path.value))\n"
            o += "    scope: \(q(e.patch.scopeTrailers.first ?? ""))\n"
            o += "    campaign: \(e.patch.campaign.map(q) ?? "null")\n"
            o += "    b2sum: \(q(e.patch.b2sum))\n"
            o += "    sha256: \(q(sha))\n"
            o += "    content_hash: \(q(e.patch.contentHash))\n"
            o += "    via: [\(e.via.map(q).joined(separator: ", "))]\n"
        }
        o += "cumulative:\n  path: \(q(Promotion.cumulativeName(m.host)))\n  b2sum: \(q(cumulativeB2))\n  patch_count: \(res.entries.count)\n"
        o += "apply_check: \(q(applyNote))\n"
        return (o, cumulative, report)
    }

    @Test(arguments: [false, true], [false, true])
    func outputsAreThoseOfTheInMemoryPromote(defaultDir: Bool, withTree: Bool) async throws {
        let s = try Self.tree()
        let tree = withTree ? s.url("base") : nil
        let expected = try Self.reference(s, tree: tree)
        #expect(expected.report.contains("result: PASS") || !withTree, "\(expected.report)")
        let dir = defaultDir ? "build/h1/v7.0" : "out/h1"
        let args = ["h1"] + (defaultDir ? [] : ["--out", dir]) + (tree.map { ["--tree", $0.path] } ?? [])
        let (plan, _) = try await PromoteVerb.parse(args).execute(in: s.ctx)
        let cumulativeName = Promotion.cumulativeName(try HostName("h1"))
        #expect(cumulativeName == "0001-h1-cumulative-series.patch")
        #expect(try s.read("\(dir)/manifest.lock") == expected.lock)
        #expect(try Data(contentsOf: s.url("\(dir)/\(cumulativeName)")) == expected.cumulative)
        #expect(try s.read("\(dir)/apply-report.txt") == expected.report)
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.url(dir).path).sorted()
                == PromoteOutput.ownedNames(host: try HostName("h1")).sorted())
        // the pins name every patch with its b2sum, and the cumulative's
        let res = try Resolver(workspace: s.ws, policy: try s.ctx.policy()).resolve(try Manifest.load(HostName("h1"), in: s.ws))
        for e in res.entries { #expect(plan.pins.contains(.init("patches/" + e.path.value, "b2:" + e.patch.b2sum))) }
        #expect(plan.pins.contains(.init("cumulative.patch", "b2:" + Blake2b.hex(expected.cumulative))))
        // and the build inputs the lock pins (lock v3)
        #expect(plan.pins.suffix(2).map(\.name) == ["config", "baseline tarball"])
    }

    @Test func theStreamedApplyCheckReportsWhatTheInMemoryOneDoes() async throws {
        let s = try Self.tree()
        // a patch whose context is not in the base: it fails, and the ones after it are still checked
        var other = PromoteTests.baseLines
        other[44] = "a line the base does not have"
        try s.write("patches/board/b1/0007-fails.patch", Sandbox.mail(subject: "fails", trailers: ["Campaign: camp", "Scope: board/b1"],
            diff: Sandbox.diff(file: "src/e.c", lines: other, at: 45, added: "never lands")))
        let tree = s.url("base")
        let expected = try Self.reference(s, tree: tree)
        #expect(expected.report.contains("result: FAIL"))
        #expect(!expected.report.contains("0005-d-second.patch  failed"), "the second patch of src/d.c applies on the first: \(expected.report)")
        do {
            _ = try await PromoteVerb.parse(["h1", "--tree", tree.path]).execute(in: s.ctx)
            Issue.record("promote did not refuse a failing apply check")
        } catch let e as KAError {
            #expect(e.message.contains("board/b1/0007-fails.patch: failed"), "\(e.message)")
        }
        #expect(try s.read("build/h1/v7.0/apply-report.txt") == expected.report)
        #expect(!s.exists("build/h1/v7.0/manifest.lock") && !s.exists("build/h1/v7.0/0001-h1-cumulative-series.patch"))
    }

    @Test func aPlanThatIsNotRunAndARefusalLeaveNothingBehind() async throws {
        let s = try Self.tree()
        // what is in the checkout, less the state dir (the tree lock lives there)
        func listing() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: s.root.path).filter { $0 != ".ka" }.sorted() }
        let before = try listing()
        do {
            let plan = try await PromoteVerb.parse(["h1"]).plan(in: s.ctx)
            #expect(plan.prepared != nil)
        }   // dropped: its staged cumulative goes with it
        #expect(try listing() == before)
        // refused after the series was streamed (a campaign conflict is found at its end)
        try s.write("patches/driver/d/0001-drv.patch", Sandbox.mail(subject: "drv", trailers: ["Campaign: other", "Scope: driver/d"],
            diff: Sandbox.diff(file: "src/a.c", lines: PromoteTests.baseLines, at: 48, added: "driver change")))
        try s.write("fleet/h1.yaml", try s.read("fleet/h1.yaml") + "\n  - driver/d\n")
        await #expect(throws: KAError.self) { try await PromoteVerb.parse(["h1"]).execute(in: s.ctx) }
        #expect(try listing() == before)
        // and a run that publishes leaves only its output dir
        try s.write("fleet/h1.yaml", try s.read("fleet/h1.yaml").replacingOccurrences(of: "\n  - driver/d\n", with: "\n"))
        _ = try await PromoteVerb.parse(["h1"]).execute(in: s.ctx)
        #expect(try listing() == (before + ["build"]).sorted())
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.url("build").path) == ["h1"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.url("build/h1").path) == ["v7.0"])
    }

    @Test func aNamedStandInIsPublishedLikeAnUnnamedFileAndRemovedWhenDropped() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ka-staged-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("out")
        for unnamed in [true, false] {
            do {
                let file = try StagedFile.create(for: out, shown: "out/x", unnamed: unnamed)
                #expect((file.standIn == nil) == unnamed)
                var sink = FileSink(file)
                try sink.write("hello \(unnamed)\n")
                #expect(try sink.finish() == Blake2b.hex(Data("hello \(unnamed)\n".utf8)))
                try PromoteOutput.publish([("x", file)], to: out)
            }
            #expect(try String(contentsOf: out.appendingPathComponent("x"), encoding: .utf8) == "hello \(unnamed)\n")
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["out"], "the stand-in or a staging dir was left")
        }
    }

    // MARK: memory

    /// One run of `argv` (output to `log`): its exit status and its peak anonymous memory (KiB), sampled from
    /// /proc/<pid>/status every 2 ms. Anonymous, not the whole RSS: the kernel may map shared-library and binary
    /// text as 2 MB file huge pages, so the whole RSS of two identical runs can differ by tens of MB.
    static func peakAnonymousMemory(_ argv: [String], env: [String: String], log: URL) throws -> (status: Int32, kib: Int) {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, log.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (cArgs + cEnv).forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, nil, cArgs, cEnv)
        guard rc == 0 else { throw KAError.failure(argv[0], "posix_spawn: \(String(cString: strerror(rc)))") }
        var peak = 0, status: Int32 = 0
        while true {
            if let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
               let line = text.split(separator: "\n").first(where: { $0.hasPrefix("RssAnon:") }),
               let kib = Int(line.split(separator: " ").dropFirst().first ?? "") {
                peak = max(peak, kib)
            }
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { break }
            guard r == 0 || errno == EINTR else { throw KAError.failure(argv[0], "waitpid: \(String(cString: strerror(errno)))") }
            usleep(2_000)
        }
        return ((status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f), peak)
    }

    /// Issue 11 §3: the in-memory promote held every patch, its parse and the whole cumulative (265 MB for 10,000
    /// patches in a debug build, ~22 KB a patch), and the apply check every file it touched. Streamed, 4,000 more
    /// patches (32 MB more text, 400 more files to patch) may only add what the plan shows of them (~0.6 KB a
    /// patch). Measured as anonymous memory: see `peakAnonymousMemory`.
    @Test func peakMemoryOfPromoteIsFlatInThePatchCount() async throws {
        let python = "/usr/bin/python3"
        guard FileManager.default.isExecutableFile(atPath: python) else {
            Issue.record("MISSING TOOL: python3 (scripts/gen-bench-tree.py makes the trees); run scripts/setup")
            return
        }
        var peaks: [Int: Int] = [:]
        for count in [1_000, 5_000] {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ka-flat-\(count)-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: dir) }
            let gen = try await TestCommand.run([python, TestEnv.projectRoot.appendingPathComponent("scripts/gen-bench-tree.py").path, dir.path,
                                          "--patches", "\(count)"])
            try #require(gen.status == 0, "\(gen.stderrText)")
            let log = dir.appendingPathComponent("promote.log")
            var env = ProcessInfo.processInfo.environment
            env["KA_ROOT"] = dir.path
            env["KA_STATE_DIR"] = dir.appendingPathComponent(".ka").path
            // Under scripts/sanitize address the ka measured is ASan's, whose quarantine keeps up to 256 MB of freed
            // memory: without it the heap is what promote holds. A ka built without ASan ignores the variable.
            env["ASAN_OPTIONS"] = [env["ASAN_OPTIONS"], "quarantine_size_mb=0"].compactMap { $0 }.joined(separator: ":")
            // sampled on a thread of its own: the run takes seconds, and a pool thread held that long starves others
            let argv = [TestEnv.kaBinary.path, "promote", "bench", "--out", dir.appendingPathComponent("out").path,
                        "--tree", dir.appendingPathComponent("base").path]
            let environment = env
            let run = try await offPool { try Self.peakAnonymousMemory(argv, env: environment, log: log) }
            let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            try #require(run.status == 0, "ka promote of \(count) patches: exit \(run.status)\n\(text.suffix(2000))")
            #expect(text.contains("promoted bench: \(count) patch(es)"))
            #expect(text.contains("apply check: pass (\(count) ok"), "\(text.suffix(500))")
            peaks[count] = run.kib
        }
        let small = peaks[1_000] ?? 0, large = peaks[5_000] ?? 0
        print("promote peak anonymous memory: \(small / 1024) MiB at 1,000 patches, \(large / 1024) MiB at 5,000")
        #expect(large - small < 16 * 1024, "4,000 more patches added \((large - small) / 1024) MiB (\(small / 1024) → \(large / 1024) MiB)")
    }
}
