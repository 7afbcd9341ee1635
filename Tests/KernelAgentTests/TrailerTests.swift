import Foundation
import Testing
@testable import KernelAgent

/// Trailers are read where and as `git interpret-trailers --parse` reads them, and import writes new ones
/// where `git interpret-trailers --trailer` would.
@Suite struct TrailerTests {
    static func gitParse(_ data: Data, cwd: URL) async throws -> String {
        let r = try await Tools.git(["interpret-trailers", "--parse"], cwd: cwd, stdin: data)
        #expect(r.status == 0, "\(r.stderrText)")
        return r.stdoutText
    }

    static func ours(_ data: Data) -> String {
        PatchFile(bytes: data).trailers.map { "\($0.key): \($0.value)\n" }.joined()
    }

    // MARK: 3. reading

    /// `Scope: board/b1` + continuation ` extra/continued`: git's value is "board/b1 extra/continued",
    /// which is not the dir, so the patch is refused (the old reader took "board/b1" and accepted it).
    @Test func aContinuationLineBelongsToTheScopeValue() async throws {
        try await Tools.require("git")
        let s = try PromoteTests.tree()
        let text = Sandbox.mail(subject: "cont", trailers: ["Signed-off-by: m <m@r>", "Campaign: camp", "Scope: board/b1", " extra/continued"],
                                diff: Sandbox.diff(file: "src/c.c", lines: PromoteTests.baseLines, at: 30, added: "x"))
        try s.write("patches/board/b1/0003-cont.patch", text)
        #expect(try await Self.gitParse(Data(text.utf8), cwd: s.root).contains("Scope: board/b1 extra/continued\n"))
        #expect(PatchFile(bytes: Data(text.utf8)).scopeTrailers == ["board/b1 extra/continued"])
        do {
            _ = try await PromoteVerb.parse(["h1"]).execute(in: s.ctx)
            Issue.record("no refusal")
        } catch let e as KAError {
            #expect(e.message.contains("Scope: board/b1 extra/continued differs from its directory board/b1"), "\(e.message)")
        }
    }

    static let handWritten: [String] = [
        "Subject: t\n\nbody\n\nScope: a/b\n extra/continued\n---\n",
        "Subject: t\n\nbody\n\nScope: a/b\n\textra\n  more\nCampaign: c\n---\n",
        "Subject: t\n\nScope: a/b\n",
        "Subject: t\nScope: a/b\n",                                                 // the title paragraph cannot hold trailers
        "Subject: t\n\nbody text\nScope: a/b\n---\n",                               // mixed paragraph, no git trailer
        "Subject: t\n\nsome text\nmore text\nSigned-off-by: a <a@b>\nScope: a/b\n---\n",   // 25% rule with a git-generated trailer
        "Subject: t\n\n1\n2\n3\n4\n5\n6\n7\nSigned-off-by: a <a@b>\nScope: a/b\n---\n", // below 25%
        "Subject: t\n\nx\n(cherry picked from commit 0123456789abcdef)\nScope: a/b\n",
        "Subject: t\n\nbody\n\nScope : a/b\nBug #43: nope\nKey-2:   spaced value  \n---\n",
        "Subject: t\n\nbody\n\n# a comment\nScope: a/b\n# another\n---\n",
        "Subject: t\n\nbody\n\nScope: a/b\n\n\n---\n",
        "Subject: t\n\nbody\n\nScope: a/b\n---- not a divider\nCampaign: c\n",
        "Subject: t\n\nbody\n\nScope: a/b\n---\tdivider with a tab\nCampaign: c\n",
        "Subject: t\n\nbody\n\nScope: a/b\n--- a/file\n+++ b/file\n",
        "Subject: t\n\nbody\n\nScope: a/b\nConflicts:\n\tfile.c\n",
        "Subject: t\n\nbody\n\nScope: a/b\n# ------------------------ >8 ------------------------\nCampaign: c\n",
        "Subject: t\r\n\r\nbody\r\n\r\nScope: a/b\r\nCampaign: c\r\n---\r\n",
        "Subject: t\n\nbody\n\nhttp://example.org/x\nScope: a/b\n",
        "Subject: t\n\nbody\n\nScope:\nCampaign:c\n",
        "Subject: t\n\nbody\n\n   \nScope: a/b\n",
        "Subject: t\n\nbody\n\n indented: first\nScope: a/b\n",
        "Subject: t\n\n * original author someone\n   for kernel 6.12\n---\n",
        "Subject: t\n\nScope: a/b\n\u{0}Campaign: c\n",
        "",
        "no newline at all",
        "Subject: t\n\nbody\n\nSigned-off-by: a\nnot a trailer line\nnot a trailer line\nnot a trailer line\nnot a trailer line\nScope: x\n",
        "Subject: t\n\nbody\n\nScöpe: a\nScope: b\n",
        "Subject: t\n\nbody\n\nScope: a\n\u{0B}vtab\n",
    ]

    /// Lines the generated messages are built from.
    static let pool: [String] = [
        "Scope: board/pinebook-pro", "Campaign: fresnel", "Signed-off-by: A U Thor <a@u.thor>", "Reviewed-by: R <r@x>",
        " continued value", "\tcontinued with a tab", "plain prose line", "prose: with a colon later", "Fixes: 0123abcd (\"x\")",
        "", "   ", "# comment", "(cherry picked from commit deadbeef)", "Link: https://lore.kernel.org/r/1", "Key : spaced",
        "---", "--- a/file.c", "Scope:", "x-y-z: v", "Bug #1: text", "Signed-off-by:", "Conflicts:", "\tdrivers/x.c",
    ]

    /// Our trailers against git's over hand-written messages, generated ones, the shipped patches and all
    /// Armbian patches (read from ../shared at run time).
    @Test func trailersAgreeWithGitInterpretTrailersParse() async throws {
        try await Tools.require("git")
        let cwd = try Tools.tempDir("trailers")
        defer { try? FileManager.default.removeItem(at: cwd) }
        var inputs: [(String, Data)] = Self.handWritten.enumerated().map { ("hand-written #\($0.offset)", Data($0.element.utf8)) }
        var rng = SplitMix64(seed: 0x7472_6169_6C65_7273)
        for n in 0..<300 {
            var text = "Subject: generated \(n)\n\nA body paragraph.\n"
            for _ in 0..<Int(rng.next() % 9) {
                text += Self.pool[Int(rng.next() % UInt64(Self.pool.count))] + "\n"
            }
            if rng.next() % 2 == 0 { text += "---\n diff stat\n" }
            inputs.append(("generated #\(n)", Data(text.utf8)))
        }
        for p in try PatchTree(Workspace(root: TestEnv.projectRoot)).allPatches() {
            inputs.append((p.value, try Data(contentsOf: TestEnv.projectRoot.appendingPathComponent("patches/" + p.value))))
        }
        let armbian = TestEnv.sharedDir.appendingPathComponent("fixtures/armbian-rockchip64-6.12")
        let names = try FileManager.default.contentsOfDirectory(atPath: armbian.path).filter { $0.hasSuffix(".patch") }.sorted()
        try #require(names.count == 146, "MISSING FIXTURE: \(armbian.path) (\(names.count) patches)")
        for name in names { inputs.append(("armbian/" + name, try Data(contentsOf: armbian.appendingPathComponent(name)))) }

        var differ: [String] = []
        var withTrailers = 0
        for (name, data) in inputs {
            let git = try await Self.gitParse(data, cwd: cwd)
            let ours = Self.ours(data)
            if git != ours { differ.append("\(name):\n  git:  \(git.debugDescription)\n  ours: \(ours.debugDescription)") }
            if !git.isEmpty { withTrailers += 1 }
        }
        #expect(differ.isEmpty, "\(differ.count) of \(inputs.count) differ:\n\(differ.prefix(10).joined(separator: "\n"))")
        #expect(withTrailers > 100, "the corpus has messages with trailers: \(withTrailers)")
    }

    // MARK: 4. writing

    /// Our appended trailers against `git interpret-trailers --trailer` on every Armbian patch and the
    /// shipped ones: byte for byte the same file.
    @Test func appendedTrailersLandWhereGitPutsThem() async throws {
        try await Tools.require("git")
        let cwd = try Tools.tempDir("append")
        defer { try? FileManager.default.removeItem(at: cwd) }
        let armbian = TestEnv.sharedDir.appendingPathComponent("fixtures/armbian-rockchip64-6.12")
        let names = try FileManager.default.contentsOfDirectory(atPath: armbian.path).filter { $0.hasSuffix(".patch") }.sorted()
        try #require(names.count == 146, "MISSING FIXTURE: \(armbian.path)")
        var inputs = try names.map { ("armbian/" + $0, try Data(contentsOf: armbian.appendingPathComponent($0))) }
        inputs += Self.handWritten.filter { $0.contains("\n---\n") }.map { ("hand-written", Data($0.utf8)) }
        var differ: [String] = []
        for (name, data) in inputs {
            guard let ours = TrailerEdit.append([("Campaign", "armbian"), ("Scope", "soc/rockchip64")], to: data) else {
                Issue.record("\(name): no divider"); continue
            }
            let git = try await Tools.git(["interpret-trailers", "--trailer", "Campaign: armbian", "--trailer", "Scope: soc/rockchip64"],
                                    cwd: cwd, stdin: data)
            if git.stdout != ours {
                // git reprints the trailer block normalized; the trailers themselves must still agree
                let a = try await Self.gitParse(ours, cwd: cwd), b = try await Self.gitParse(git.stdout, cwd: cwd)
                if name.hasPrefix("armbian/") || a != b { differ.append("\(name): ours parses as \(a.debugDescription), git's as \(b.debugDescription)") }
            }
            #expect(PatchFile(bytes: ours).scopeTrailers.last == "soc/rockchip64", "\(name)")
        }
        #expect(differ.isEmpty, "\(differ.prefix(10).joined(separator: "\n"))")
    }

    /// Found by FuzzTrailer: a NUL byte in the message. git reads a message only up to its first NUL, so trailers
    /// appended after one were invisible and import wrote a patch it then refused. Now append declines, and the
    /// refusal names the line.
    @Test func aNulByteInTheMessageIsRefusedNamingItsLine() throws {
        var mail = Data("From 1234 Mon Sep 17 00:00:00 2001\nFrom: A <a@example.org>\nSubject: [PATCH] x\n\nbody with a ".utf8)
        mail.append(0)
        mail.append(Data(" byte\n---\n a | 1 +\n\ndiff --git a/a b/a\n--- a/a\n+++ b/a\n@@ -1 +1,2 @@\n x\n+y\n".utf8))
        #expect(TrailerEdit.nulLineInMessage(mail) == 5)
        #expect(TrailerEdit.append([("Scope", "board/x")], to: mail) == nil)
        // a NUL inside the diff is the diff's business, not the message's
        var inDiff = Data("Subject: x\n\nbody\n---\ndiff --git a/a b/a\n--- a/a\n+++ b/a\n@@ -1 +1 @@\n-x\n+y".utf8)
        inDiff.append(0)
        inDiff.append(Data("\n".utf8))
        #expect(TrailerEdit.nulLineInMessage(inDiff) == nil)
        #expect(TrailerEdit.append([("Scope", "board/x")], to: inDiff) != nil)
    }

    /// FuzzTrailer's finding: a title paragraph that opens with `Conflicts:` keeps git's old-conflicts rule on, so the
    /// tab-indented paragraphs after it are skipped as that list and the title cannot hold trailers. Git itself then
    /// adds trailers it cannot read back; import and adopt refuse instead of writing a patch they would then refuse.
    @Test func trailersGitWouldNotReadBackAreRefusedNotWritten() async throws {
        try await Tools.require("git")
        let mail = Data("Conflicts:\nx\n\n\tpath/a.c\n---\n a | 1 +\n\ndiff --git a/a b/a\n--- a/a\n+++ b/a\n@@ -1 +1,2 @@\n x\n+y\n".utf8)
        let s = try Sandbox(copyShipped: false)
        // git's own edit of this mail: the trailer lands where ours would, and git's reader does not see it
        let gitEdited = try await Tools.git(["interpret-trailers", "--trailer", "Scope: board/x"], cwd: s.root, stdin: mail)
        #expect(gitEdited.status == 0 && gitEdited.stdoutText.contains("Scope: board/x"), "\(gitEdited.stderrText)")
        #expect(try await Self.gitParse(gitEdited.stdout, cwd: s.root) == "")
        #expect(TrailerEdit.appending([("Scope", "board/x")], to: mail) == .failure(.wouldNotReadBack))
        #expect(TrailerEdit.append([("Scope", "board/x")], to: mail) == nil)
        // import refuses, naming the file, and lands nothing
        try s.write("campaigns/c/0001-x.patch", String(decoding: mail, as: UTF8.self))
        let before = s.snapshot()
        await #expect(throws: KAError.self) { _ = try await ImportVerb.parse(["c", "0001-x.patch", "--to", "board/x", "--checkout", s.url("campaigns/c").path]).execute(in: s.ctx) }
        do {
            _ = try await ImportVerb.parse(["c", "0001-x.patch", "--to", "board/x", "--checkout", s.url("campaigns/c").path]).execute(in: s.ctx)
        } catch let e as KAError {
            #expect(e.description.contains("0001-x.patch") && e.description.contains("cannot add trailers git would read"), "\(e)")
        }
        #expect(s.snapshot() == before)
    }

    /// The two Armbian patches whose last paragraph is indented prose: import starts a new paragraph,
    /// git sees the trailers, and nothing else in the file changes (the old import refused its own edit).
    @Test func importStartsANewParagraphAfterIndentedProse() async throws {
        try await Tools.require("git")
        let s = try Sandbox(copyShipped: false)
        let armbian = TestEnv.sharedDir.appendingPathComponent("fixtures/armbian-rockchip64-6.12")
        for name in ["board-rocks0-0001-deviceTree.patch", "general-cryptov1-trng.patch"] {
            let original = try Data(contentsOf: armbian.appendingPathComponent(name))
            _ = try await ImportVerb.parse(["armbian", name, "--to", "soc/rockchip64", "--checkout", armbian.path]).execute(in: s.ctx)
            let imported = try Data(contentsOf: s.url("patches/soc/rockchip64/\(name)"))
            #expect(try await Self.gitParse(imported, cwd: s.root) == "Campaign: armbian\nScope: soc/rockchip64\n")
            // exactly one inserted block: "\nCampaign: …\nScope: …\n" right above the divider
            let divider = try #require(original.range(of: Data("\n---\n".utf8)))
            let insert = Data("\nCampaign: armbian\nScope: soc/rockchip64\n".utf8)
            var expected = original
            expected.insert(contentsOf: insert, at: divider.lowerBound + 1)
            #expect(imported == expected, "\(name)")
        }
    }

    /// A glob import stays all-or-nothing and names every refused patch, each with its cause.
    @Test func globImportReportsEveryRefusalAtOnce() async throws {
        let s = try PromoteTests.tree()
        func put(_ name: String, trailers: [String], header: String? = nil) async throws {
            var text = Sandbox.mail(subject: name, trailers: trailers,
                                    diff: Sandbox.diff(file: "src/\(name).c", lines: PromoteTests.baseLines, at: 10, added: name))
            if let header { text = text.replacingOccurrences(of: "@@ -8,6 +8,7 @@", with: header) }
            try s.write("campaigns/besser/out/\(name).patch", text)
        }
        try await put("0001-good", trailers: ["Signed-off-by: m <m@r>"])
        try await put("0002-wrong-scope", trailers: ["Scope: driver/other"])
        try await put("0003-corrupt", trailers: ["Signed-off-by: m <m@r>"], header: "@@ -8,6 +8,99999999 @@")
        try await put("0004-other-campaign", trailers: ["Campaign: someone-else"])
        let snap = s.snapshot()
        do {
            _ = try await ImportVerb.parse(["besser", "out/*.patch", "--to", "driver/bes2600", "--checkout", s.url("campaigns/besser").path]).execute(in: s.ctx)
            Issue.record("must refuse")
        } catch let e as KAError {
            #expect(e.kind == .refusal)
            #expect(e.message.contains("3 of 4 patch(es) refused; nothing was imported"), "\(e.message)")
            #expect(e.message.contains("besser:out/0002-wrong-scope.patch → carries 'Scope: driver/other', not driver/bes2600"), "\(e.message)")
            #expect(e.message.contains("besser:out/0003-corrupt.patch:"), "\(e.message)")
            #expect(e.message.contains("besser:out/0004-other-campaign.patch → carries 'Campaign: someone-else'"), "\(e.message)")
            #expect(!e.message.contains("0001-good"), "\(e.message)")
            #expect(e.message.split(separator: "\n").count >= 4, "one line per refusal: \(e.message)")
        }
        #expect(s.snapshot() == snap)
    }
}
