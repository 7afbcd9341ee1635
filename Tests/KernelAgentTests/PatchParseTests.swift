import Foundation
import Testing
@testable import KernelAgent

/// The patch parser reads a diff as `git apply` does: every number is bounded, a body must match its header's
/// counts, and unsafe paths are refused; every verb that reads the tree turns a bad patch into a refusal
/// naming file:line, never a crash.
@Suite struct PatchParseTests {
    /// A format-patch mail whose only hunk has `header` and `body`; the header's 1-based line in the file.
    static func mail(header: String, body: String = " line 3 of the base file\n-line 4 of the base file\n+x\n",
                     trailers: [String] = ["Signed-off-by: m <m@r>", "Campaign: camp", "Scope: board/b1"],
                     file: String = "src/c.c") -> (text: String, line: Int) {
        let diff = "diff --git a/\(file) b/\(file)\n--- a/\(file)\n+++ b/\(file)\n\(header)\n\(body)"
        let text = Sandbox.mail(subject: "bad", trailers: trailers, diff: diff)
        let line = text.split(separator: "\n", omittingEmptySubsequences: false).firstIndex { $0 == header }.map { $0 + 1 } ?? 0
        return (text, line)
    }

    // MARK: 1. bounded numbers: refusals, not crashes

    static let crashingHeaders = [
        "@@ - +1 @@",                               // index out of range in the old parseHunkHeader
        "@@ -9223372036854775807,2 +1,2 @@",        // overflow in Hunk.oldRange (ConflictDetector)
        "@@ --9223372036854775808,1 +1,1 @@",       // overflow in the --tree apply check
        "@@ -20000000,1 +20000000,1 @@",            // past the bound: refused, though git would parse it
        "@@ -1,20000000 +1,1 @@",
    ]

    @Test(arguments: crashingHeaders)
    func parserRefusesTheHeaderWithItsLine(_ header: String) throws {
        let (text, line) = Self.mail(header: header, body: " a\n-b\n+c\n")
        let p = PatchFile(bytes: Data(text.utf8))
        let problem = try #require(p.problem, "\(header) must be refused")
        #expect(problem.line == line)
        #expect(problem.message.contains(header), "\(problem.message)")
        do {
            _ = try PatchFile(bytes: Data(text.utf8), display: "x.patch")
            Issue.record("no refusal")
        } catch let e as KAError {
            #expect(e.kind == .refusal)
            #expect(e.chain.first == "x.patch:\(line)")
            #expect(e.hint != nil)
        }
    }

    /// promote (with and without --tree), status, abandon, migrate-tree and import all read the tree or a
    /// checkout; each refuses the bad patch naming it with file:line (the old code died with SIGILL).
    @Test(arguments: crashingHeaders)
    func everyVerbThatReadsPatchesRefusesWithFileAndLine(_ header: String) async throws {
        let s = try PromoteTests.tree()
        let (text, line) = Self.mail(header: header, body: " a\n-b\n+c\n")
        try s.write("patches/board/b1/0003-bad.patch", text)
        let where_ = "patches/board/b1/0003-bad.patch:\(line)"
        func refusal(_ what: String, _ body: () async throws -> Void) async {
            do {
                try await body()
                Issue.record("\(what): no refusal for \(header)")
            } catch let e as KAError {
                #expect(e.kind == .refusal, "\(what): \(e)")
                #expect(e.message.contains(where_), "\(what): \(e.message)")
                #expect(e.message.contains(header), "\(what): \(e.message)")
            } catch {
                Issue.record("\(what): \(error)")
            }
        }
        let snap = s.snapshot()
        await refusal("promote") { _ = try await PromoteVerb.parse(["h1"]).execute(in: s.ctx) }
        await refusal("promote --tree") { _ = try await PromoteVerb.parse(["h1", "--tree", s.url("base").path]).execute(in: s.ctx) }
        await refusal("abandon") { _ = try await AbandonVerb.parse(["camp", "--keep-as-archive"]).execute(in: s.ctx) }
        await refusal("abandon --purge") { _ = try await AbandonVerb.parse(["camp", "--purge-from-fleet"]).execute(in: s.ctx) }
        await refusal("migrate-tree") { _ = try await MigrateTreeVerb.parse(["--from", "board/b1", "--to", "board/b9"]).execute(in: s.ctx) }
        let rows = try await StatusVerb.parse([]).rows(in: s.ctx)
        let h1 = try #require(rows.first { $0.host == "h1" })
        #expect(h1.state == "error")
        #expect(h1.detail?.contains(where_) == true, "\(h1.detail ?? "")")
        #expect(s.snapshot() == snap, "a refusal changes nothing")
        #expect(!s.exists("build/h1/v7.0"))

        let (unscoped, importLine) = Self.mail(header: header, body: " a\n-b\n+c\n", trailers: ["Signed-off-by: m <m@r>"])
        try s.write("campaigns/camp/out/0001-bad.patch", unscoped)
        do {
            _ = try await ImportVerb.parse(["camp", "out/*.patch", "--to", "board/b2", "--checkout", s.url("campaigns/camp").path]).execute(in: s.ctx)
            Issue.record("import: no refusal")
        } catch let e as KAError {
            #expect(e.message.contains("camp:out/0001-bad.patch:\(importLine)"), "\(e.message)")
        }
        #expect(!s.exists("patches/board/b2"))
    }

    // MARK: 2. corrupt patches, as git apply --check sees them

    static let corruptCases: [(name: String, header: String, body: String)] = [
        ("new count far beyond the body", "@@ -3,1 +3,99999999 @@", "-line 3 of the base file\n+x\n"),
        ("hunk header with no body", "@@ -3,1 +3,1 @@", ""),
        ("empty old start", "@@ -,5 +1 @@", "-line 3 of the base file\n+x\n"),
        ("letters for numbers", "@@ -a,b +c,d @@", "-line 3 of the base file\n+x\n"),
        ("no closing @@", "@@ -3,1 +3,1", "-line 3 of the base file\n+x\n"),
        ("body line of the wrong kind", "@@ -3,2 +3,2 @@", " line 3 of the base file\n*line 4 of the base file\n+x\n"),
        ("only context", "@@ -3,1 +3,1 @@", " line 3 of the base file\n"),
    ]

    @Test func corruptHunksAreRefusedLikeGitApplyCheckDoes() async throws {
        try await Tools.require("git")
        let dir = try Tools.tempDir("corrupt")
        defer { try? FileManager.default.removeItem(at: dir) }
        for c in Self.corruptCases {
            let (text, line) = Self.mail(header: c.header, body: c.body)
            let p = PatchFile(bytes: Data(text.utf8))
            #expect(p.problem?.line == line, "\(c.name): \(String(describing: p.problem))")
            let file = dir.appendingPathComponent("p.patch")
            try Data(text.utf8).write(to: file)
            let git = try await Tools.git(["apply", "--check", file.path], cwd: dir)
            #expect(git.status == 128, "\(c.name): git says \(git.status) \(git.stderrText)")
            #expect(git.stderrText.contains("corrupt patch") || git.stderrText.contains("patch fragment without header"),
                    "\(c.name): \(git.stderrText)")
        }
    }

    /// A fuzz corpus written by the test: mutations of the shipped patches, of a few Armbian patches read
    /// from ../shared at run time, and of hand-written patches. Each must get the same verdict on
    /// malformed-ness from us (problem, or no diff) as from `git apply --check` (exit 128; an apply
    /// failure is exit 1 and means well-formed).
    ///
    /// Deliberate differences, excluded from the comparison by construction and checked separately:
    ///  - line numbers and counts above 10,000,000: git parses them (and then fails to apply); we refuse;
    ///  - unsafe paths: git refuses them only once the file is found (exit 1 before that); we refuse at parse.
    @Test func fuzzCorpusVerdictsAgreeWithGitApplyCheck() async throws {
        try await Tools.require("git")
        let work = try Tools.tempDir("fuzz")
        defer { try? FileManager.default.removeItem(at: work) }
        var rng = SplitMix64(seed: 0x6B61_2D66_757A_7A01)
        var seeds: [(String, Data)] = []
        for p in try PatchTree(Workspace(root: TestEnv.projectRoot)).allPatches() {
            seeds.append((p.value, try Data(contentsOf: TestEnv.projectRoot.appendingPathComponent("patches/" + p.value))))
        }
        let armbian = TestEnv.sharedDir.appendingPathComponent("fixtures/armbian-rockchip64-6.12")
        let names = try FileManager.default.contentsOfDirectory(atPath: armbian.path).filter { $0.hasSuffix(".patch") }.sorted()
        try #require(names.count > 100, "MISSING FIXTURE: \(armbian.path)")
        for name in stride(from: 0, to: names.count, by: 20).map({ names[$0] }) {
            seeds.append(("armbian/" + name, try Data(contentsOf: armbian.appendingPathComponent(name))))
        }
        for (name, text) in Self.handWrittenSeeds { seeds.append((name, Data(text.utf8))) }

        var corpus: [(String, Data)] = seeds
        for (name, data) in seeds {
            for n in 0..<30 {
                guard let (what, mutated) = Mutator.mutate(data, &rng) else { continue }
                corpus.append(("\(name) #\(n) \(what)", mutated))
            }
        }
        for (name, text) in Self.handWrittenEntries { corpus.append((name, Data(text.utf8))) }

        var disagreements: [String] = []
        var refusedByBoth = 0, acceptedByBoth = 0, beyondBound = 0
        let file = work.appendingPathComponent("entry.patch")
        for (name, data) in corpus {
            let ours = PatchFile(bytes: data)
            let weRefuse = ours.problem != nil || ours.files.isEmpty
            try data.write(to: file)
            let git = try await Tools.git(["apply", "--check", file.path], cwd: work)
            #expect(git.status == 0 || git.status == 1 || git.status == 128, "\(name): git exit \(git.status)")
            let gitRefuses = git.status == 128
            if weRefuse == gitRefuses {
                if weRefuse { refusedByBoth += 1 } else { acceptedByBoth += 1 }
            } else if weRefuse, ours.problem?.message.contains("above \(PatchFile.maxLineNumber)") == true {
                beyondBound += 1   // deliberate difference, see above
            } else {
                disagreements.append("\(name): ours \(weRefuse ? "refuse (\(ours.problem?.description ?? "no diff"))" : "accept"), "
                                     + "git \(git.status): \(git.stderrText.prefix(200))")
            }
        }
        print("fuzz corpus: \(corpus.count) entries; refused by both \(refusedByBoth), accepted by both \(acceptedByBoth), "
              + "past our bound only \(beyondBound), disagreements \(disagreements.count)")
        #expect(disagreements.isEmpty, "\(disagreements.count) disagreement(s):\n\(disagreements.prefix(20).joined(separator: "\n"))")
        // the corpus exercises both sides
        #expect(refusedByBoth > 100, "refused by both: \(refusedByBoth)")
        #expect(acceptedByBoth > 50, "accepted by both: \(acceptedByBoth)")
        #expect(beyondBound > 0, "the corpus has numbers past the bound that git parses")
    }

    static let handWrittenSeeds: [(String, String)] = [
        ("two hunks", """
        From 1 Mon Sep 17 00:00:00 2001
        Subject: [PATCH] two hunks

        Scope: board/b1
        ---
        diff --git a/f.c b/f.c
        index 1111111..2222222 100644
        --- a/f.c
        +++ b/f.c
        @@ -1,4 +1,4 @@
         one
        -two
        +TWO
         three
         four
        @@ -10,3 +10,4 @@ static int f(void)
         ten
         eleven
        +eleven and a half
         twelve
        -- 
        2.39.5

        """),
        ("new, deleted, renamed, mode change, no newline", """
        diff --git a/new.c b/new.c
        new file mode 100644
        index 0000000..e69de29
        --- /dev/null
        +++ b/new.c
        @@ -0,0 +1,2 @@
        +int x;
        +int y;
        diff --git a/old.c b/old.c
        deleted file mode 100644
        index e69de29..0000000
        --- a/old.c
        +++ /dev/null
        @@ -1 +0,0 @@
        -int z;
        diff --git a/a.c b/b.c
        similarity index 100%
        rename from a.c
        rename to b.c
        diff --git a/run.sh b/run.sh
        old mode 100644
        new mode 100755
        diff --git a/eof.c b/eof.c
        --- a/eof.c
        +++ b/eof.c
        @@ -1,2 +1,2 @@
         first
        -last
        \\ No newline at end of file
        +last;
        \\ No newline at end of file

        """),
        ("traditional diff", """
        --- linux-6.1/drivers/x.c\t2024-01-01 00:00:00.000000000 +0000
        +++ linux-6.1-new/drivers/x.c\t2024-01-02 00:00:00.000000000 +0000
        @@ -5,3 +5,3 @@
         a
        -b
        +c
         d

        """),
    ]

    /// Entries kept as written (the issue's examples among them).
    static let handWrittenEntries: [(String, String)] = [
        ("issue: +99999999", mail(header: "@@ -3,1 +3,99999999 @@", body: "-line 3 of the base file\n+x\n").text),
        ("issue: header without body", mail(header: "@@ -3,1 +3,1 @@", body: "").text),
        ("issue: -,5", mail(header: "@@ -,5 +1 @@", body: "-a\n+b\n").text),
        ("issue: letters", mail(header: "@@ -a,b +c,d @@", body: "-a\n+b\n").text),
        ("issue: - +1", mail(header: "@@ - +1 @@", body: "-a\n+b\n").text),
        ("issue: --9223372036854775808", mail(header: "@@ --9223372036854775808,1 +1,1 @@", body: "-a\n+b\n").text),
        ("stray hunk header in the message", "Subject: x\n\n@@ -1,1 +1,1 @@\n\n" + mail(header: "@@ -3,1 +3,1 @@", body: "-a\n+b\n").text),
        ("no diff at all", "Subject: just words\n\nnothing to apply\n"),
        ("empty file", ""),
        ("garbage after a file header", "diff --git a/x b/x\nindex 1..2 100644\n--- a/x\n+++ b/x\nnot a hunk\n"),
        ("new file with old lines", "diff --git a/n b/n\nnew file mode 100644\n--- /dev/null\n+++ b/n\n@@ -1,1 +1,1 @@\n-a\n+b\n"),
        ("inconsistent names", "diff --git a/x b/x\n--- a/x\n+++ b/y\n@@ -1,1 +1,1 @@\n-a\n+b\n"),
        ("ends inside the hunk without newline", "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n-b\n+c"),
        ("well-formed, tail garbage", "--- a/x\n+++ b/x\n@@ -1,1 +1,1 @@\n-a\n+b\n-- \n2.39.5\n"),
        ("well-formed, counts smaller than the body", "--- a/x\n+++ b/x\n@@ -1,1 +1,1 @@\n-a\n+b\n+c\n"),
        ("too short to be a hunk header", "--- a/x\n+++ b/x\n@@ -\n-a\n+b\n"),
    ]

    // MARK: 7. unsafe diff paths

    static let unsafePaths: [(String, String)] = [
        ("../secret.txt", "has a '..' component"),
        ("dir/../../secret.txt", "has a '..' component"),
        ("/etc/hostname", "is absolute"),
        (".git/config", "has a '.git' component"),
        ("sub/.GIT/hooks/pre-commit", "has a '.git' component"),
        ("./x.c", "has a '.' component"),
    ]

    @Test func unsafeDiffPathsAreRefusedAtParseTimeNamingTheHeaderLine() throws {
        for (path, why) in Self.unsafePaths {
            for style in ["git", "traditional"] {
                let text = style == "git"
                    ? "Subject: x\n\n---\ndiff --git a/\(path) b/\(path)\n--- a/\(path)\n+++ b/\(path)\n@@ -1,1 +1,1 @@\n-a\n+b\n"
                    : "Subject: x\n\n---\n--- a/\(path)\n+++ b/\(path)\n@@ -1,1 +1,1 @@\n-a\n+b\n"
                let p = PatchFile(bytes: Data(text.utf8))
                #expect(p.problem?.line == 4, "\(style) \(path): \(String(describing: p.problem))")
                #expect(p.problem?.message.contains(why) == true, "\(style) \(path): \(String(describing: p.problem))")
            }
        }
    }

    /// git refuses the same paths ("invalid path", exit 128) once the file exists where the path points.
    @Test func gitApplyRefusesTheSameUnsafePaths() async throws {
        try await Tools.require("git")
        let root = try Tools.tempDir("unsafe")
        defer { try? FileManager.default.removeItem(at: root) }
        let cwd = root.appendingPathComponent("a/b/tree")
        try FileManager.default.createDirectory(at: cwd.appendingPathComponent(".git"), withIntermediateDirectories: true)
        let abs = root.appendingPathComponent("abs.txt")
        for target in [root.appendingPathComponent("a/b/secret.txt"), root.appendingPathComponent("a/secret.txt"), abs,
                       cwd.appendingPathComponent(".git/config")] {
            try Data("a\n".utf8).write(to: target)
        }
        for path in ["../secret.txt", "../../secret.txt", "/" + abs.path.dropFirst(), ".git/config"] {
            let text = "--- a/\(path)\n+++ b/\(path)\n@@ -1,1 +1,1 @@\n-a\n+b\n"
            let p = PatchFile(bytes: Data(text.utf8))
            #expect(p.problem?.line == 1, "\(path): \(String(describing: p.problem))")
            let file = root.appendingPathComponent("p.patch")
            try Data(text.utf8).write(to: file)
            let git = try await Tools.git(["apply", "--check", file.path], cwd: cwd)
            #expect(git.status == 128 && git.stderrText.contains("invalid path"), "\(path): \(git.status) \(git.stderrText)")
        }
    }

    /// `--- a/../home/secret.txt` with --tree: refused before anything outside the tree is opened.
    @Test func promoteRefusesADotDotPathBeforeTheApplyCheck() async throws {
        let s = try PromoteTests.tree()
        let text = Sandbox.mail(subject: "x", trailers: ["Scope: board/b1"],
                                diff: "diff --git a/../home/secret.txt b/../home/secret.txt\n--- a/../home/secret.txt\n+++ b/../home/secret.txt\n@@ -1,1 +1,1 @@\n-a\n+b\n")
        try s.write("patches/board/b1/0003-escape.patch", text)
        let line = text.split(separator: "\n", omittingEmptySubsequences: false).firstIndex { $0.hasPrefix("diff --git") }.map { $0 + 1 } ?? 0
        do {
            _ = try await PromoteVerb.parse(["h1", "--tree", s.url("base").path]).execute(in: s.ctx)
            Issue.record("no refusal")
        } catch let e as KAError {
            #expect(e.message.contains("patches/board/b1/0003-escape.patch:\(line)"), "\(e.message)")
            #expect(e.message.contains("'..'"), "\(e.message)")
        }
        #expect(!s.exists("build/h1/v7.0/apply-report.txt"))
    }

    /// A well-formed patch keeps the hash and the hunks it had with the lenient parser (locks stay valid).
    @Test func shippedPatchesParseCleanlyWithTheirHunks() throws {
        for p in try PatchTree(Workspace(root: TestEnv.projectRoot)).allPatches() {
            let data = try Data(contentsOf: TestEnv.projectRoot.appendingPathComponent("patches/" + p.value))
            let pf = try PatchFile(bytes: data, display: p.value)
            #expect(!pf.files.isEmpty && pf.files.allSatisfy { !$0.hunks.isEmpty }, "\(p)")
            for f in pf.files {
                #expect(f.oldPath == f.newPath && f.oldPath?.hasPrefix("a/") == false, "\(p): \(String(describing: f.oldPath))")
            }
        }
    }
}

/// Mutations of a patch that keep the file recognisable: hunk headers, body lines, line ends, file headers.
enum Mutator {
    static func mutate(_ data: Data, _ rng: inout SplitMix64) -> (String, Data)? {
        var lines = data.split(separator: 0x0A, omittingEmptySubsequences: false).map { Array($0) }
        let headers = lines.indices.filter { lines[$0].starts(with: Array("@@ -".utf8)) }
        let body = lines.indices.filter { i in
            guard let c = lines[i].first else { return false }
            return (c == 0x20 || c == 0x2D || c == 0x2B) && headers.contains { $0 < i } && !lines[i].starts(with: Array("--- ".utf8))
                && !lines[i].starts(with: Array("+++ ".utf8))
        }
        let fileHeaders = lines.indices.filter { i in
            ["diff --git ", "--- ", "+++ ", "index "].contains { lines[i].starts(with: Array($0.utf8)) }
        }
        guard !headers.isEmpty, !body.isEmpty else { return nil }
        let numbers = ["0", "1", "2", "3", "5", "17", "99999999", "9223372036854775807", "18446744073709551616", "", "a", "-1", "+2", "0x10", " 3"]
        func pick<T>(_ a: [T]) -> T { a[Int(rng.next() % UInt64(a.count))] }
        let what: String
        switch rng.next() % 13 {
        case 0, 1:
            // one number of a hunk header
            let h = pick(headers)
            var text = String(decoding: lines[h], as: UTF8.self)
            let numberRanges = text.ranges(of: /[0-9]+/).map { $0 }
            guard let r = numberRanges.prefix(4).randomElement(using: &rng) else { return nil }
            let replacement = pick(numbers)
            text.replaceSubrange(r, with: replacement)
            lines[h] = Array(text.utf8)
            what = "header number → '\(replacement)'"
        case 2:
            let i = pick(body); lines.remove(at: i); what = "drop body line \(i + 1)"
        case 3:
            let i = pick(body); lines.insert(lines[i], at: i); what = "duplicate body line \(i + 1)"
        case 4:
            let i = pick(body)
            let c = pick([" ", "-", "+", "\\", "x", "\t", "@", "#", "\r"])
            lines[i][0] = Array(c.utf8)[0]
            what = "body line \(i + 1) starts with \(c.debugDescription)"
        case 5:
            let i = pick(body); lines = Array(lines[..<i]); what = "truncate before line \(i + 1)"
        case 6:
            let i = pick(body)
            var out = Data()
            for (n, l) in lines[...i].enumerated() { out.append(contentsOf: l); if n < i { out.append(0x0A) } }
            return ("end without newline at line \(i + 1)", out)
        case 7:
            let i = pick(body); lines.insert([], at: i); what = "empty line before body line \(i + 1)"
        case 8:
            let i = Int(rng.next() % UInt64(lines.count)); lines.insert(Array("@@ -1,2 +1,2 @@".utf8), at: i); what = "stray hunk header at \(i + 1)"
        case 9:
            guard !fileHeaders.isEmpty else { return nil }
            let i = pick(fileHeaders); lines.remove(at: i); what = "drop file header line \(i + 1)"
        case 10:
            guard let i = fileHeaders.first(where: { lines[$0].starts(with: Array("+++ ".utf8)) }) else { return nil }
            lines[i] += Array("x".utf8); what = "rename the +++ side"
        case 11:
            let h = pick(headers)
            var text = String(decoding: lines[h], as: UTF8.self)
            if let r = text.range(of: " @@", options: .backwards) { text.removeSubrange(r) }
            lines[h] = Array(text.utf8); what = "no closing @@"
        default:
            let i = pick(body)
            guard i + 1 < lines.count else { return nil }
            lines.swapAt(i, i + 1); what = "swap lines \(i + 1) and \(i + 2)"
        }
        var out = Data()
        for (n, l) in lines.enumerated() { out.append(contentsOf: l); if n + 1 < lines.count { out.append(0x0A) } }
        return (what, out)
    }

}
