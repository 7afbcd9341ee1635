import Foundation
import KATestSupport
import KernelAgent
import Testing

/// Issue 17, item 6, on the fleet-in-a-box: a recipe of the user's (`package.template_at`) built by makepkg from a
/// stamped copy, never edited; a recipe-side patch that drifted from the lock is refused at the plan; their publish
/// (`signing.publish_command`, a script in the shape of marfrit-publish-arch) replaces ka's gpg + repo-add, and ka
/// still checks the signature and the db afterwards.
@Suite(.serialized, .holdsBoxHosts("fresnel")) struct RecipeBoxTests {
    static let boardPatch = "0001-arm64-dts-rk3399-pinebook-pro-add-OC-OPP-tables-1704-2184.patch"

    /// A packages checkout beside the harness root holding fresnel's recipe in their shape: our PKGBUILD rendered,
    /// then turned into theirs (`_srctag`, `_cumulative_b2sum`, the cumulative under its ka-promote name, a copy of
    /// one board patch, no tarball: ka ships the pinned one).
    static func recipe(_ h: Harness) async throws -> URL {
        let checkout = h.root.appendingPathComponent("pk/marfrit-packages")
        let dir = checkout.appendingPathComponent("arch/linux-fresnel-fourier")
        let env = try JobBoxTests.boxEnvironment()
        let tarball = URL(fileURLWithPath: env["KA_BOX_DIR"] ?? "").appendingPathComponent("mirror/linux-7.0.tar.xz")
        let cumulative = h.root.appendingPathComponent("build/fresnel/v7.0/0001-fresnel-cumulative-series.patch")
        let r = try await TestCommand.run([Harness.projectRoot.appendingPathComponent("scripts/render-pkgbuild").path, "--host", "fresnel",
                                           "--suffix", "fresnel-fourier", "--tarball", tarball.path, "--patch", cumulative.path,
                                           "--config", h.root.appendingPathComponent("fleet/config/fresnel.config").path, "--out", dir.path])
        try #require(r.status == 0, "\(r.stderrText)")
        let fm = FileManager.default
        try fm.removeItem(at: dir.appendingPathComponent("linux-7.0.tar.xz"))
        try fm.moveItem(at: dir.appendingPathComponent("cumulative.patch"), to: dir.appendingPathComponent("0001-fresnel-cumulative-series.patch"))
        try fm.copyItem(at: h.root.appendingPathComponent("patches/board/pinebook-pro/\(boardPatch)"), to: dir.appendingPathComponent(boardPatch))
        let patchB2 = try PackageRenderer.b2sum(cumulative)
        var text = try String(contentsOf: dir.appendingPathComponent("PKGBUILD"), encoding: .utf8)
        text = text.replacingOccurrences(of: "'cumulative.patch'", with: "'0001-fresnel-cumulative-series.patch'")
            .replacingOccurrences(of: "../cumulative.patch", with: "../0001-fresnel-cumulative-series.patch")
            .replacingOccurrences(of: "'\(patchB2)'", with: "\"$_cumulative_b2sum\"")
            .replacingOccurrences(of: "\npkgrel=", with: "\n_srctag=v0.0\n_cumulative_b2sum=SKIP\npkgrel=")
        try text.write(to: dir.appendingPathComponent("PKGBUILD"), atomically: true, encoding: .utf8)
        return checkout
    }

    /// The box's config with the packages checkout and, when given, their publish command.
    static func config(_ h: Harness, checkout: URL, publish: String? = nil) throws -> URL {
        try BuildBoxTests.config(h, "recipe.yaml") { text in
            var t = BuildBoxTests.buildKeys(text, "  packages_checkout: \(checkout.path)\n")
            if let publish { t = t.replacingOccurrences(of: "\nsigning:\n", with: "\nsigning:\n  publish_command: [\(publish), aarch64]\n") }
            return t
        }
    }

    /// marfrit-publish-arch's shape: `<arch> <package>…`; signs each with the one key, copies it into the repo and
    /// repo-adds it. `sign: false` makes one that "succeeds" without signing (a broken publish ka must catch).
    static func installPublishScript(_ path: String, sign: Bool) async throws {
        let script = """
        #!/bin/bash
        set -euo pipefail
        export GNUPGHOME=/srv/kernel-agent/gnupg
        arch=$1; shift
        [ "$arch" = aarch64 ] || { echo "unknown arch $arch" >&2; exit 2; }
        repo=/srv/packages/arch/aarch64
        fpr=$(gpg --batch --with-colons --list-secret-keys | awk -F: '$1 == "fpr" { print $10; exit }')
        for p in "$@"; do
          name=$(basename -- "$p")
          \(sign ? "gpg --batch --yes --no-armor --local-user \"$fpr\" --detach-sign --output \"$repo/$name.sig\" -- \"$p\"" : ":")
          cp -- "$p" "$repo/$name"
          (cd "$repo" && repo-add \(sign ? "-s -k \"$fpr\"" : "") marfrit.db.tar.zst "$name")
        done
        echo "marfrit-publish-arch: published $#"

        """
        let r = try await JobBoxTests.inHost("hertz", ["sh", "-c", "printf '%s' \"$1\" > \"$2\" && chmod 0755 \"$2\"", "x", script, path])
        try #require(r.status == 0, "\(r.stderrText)")
    }

    static func manifestWithRecipe(_ h: Harness) throws {
        let url = h.root.appendingPathComponent("fleet/fresnel.yaml")
        let text = try String(contentsOf: url, encoding: .utf8)
        try (text + "package:\n  name: linux-fresnel-fourier\n  template_at: marfrit-packages/arch/linux-fresnel-fourier/\n")
            .write(to: url, atomically: true, encoding: .utf8)
    }

    static func tree(_ dir: URL) throws -> [String: String] {
        var out: [String: String] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: dir.path) {
            out[name] = Blake2b.hex(try Data(contentsOf: dir.appendingPathComponent(name)))
        }
        return out
    }

    @Test func theirRecipeIsStampedAndBuiltAndTheirPublishIsCheckedAfter() async throws {
        let h = try Harness()
        try Self.manifestWithRecipe(h)
        try await BuildBoxTests.promote(h)
        let checkout = try await Self.recipe(h)
        let recipeDir = checkout.appendingPathComponent("arch/linux-fresnel-fourier")
        let before = try Self.tree(recipeDir)
        let script = "/usr/local/bin/marfrit-publish-arch"
        try await Self.installPublishScript(script, sign: true)
        let config = try Self.config(h, checkout: checkout, publish: script)
        let r = try await BuildBoxTests.ka(h, ["build", "fresnel"], config: config)
        #expect(r.status == 0, "\(r.stdoutText)\n\(r.stderrText)")
        #expect(r.stdoutText.contains("check the recipe marfrit-packages/arch/linux-fresnel-fourier/ against the lock"), "\(r.stdoutText)")
        #expect(r.stdoutText.contains("\(Self.boardPatch) = board/pinebook-pro/\(Self.boardPatch) (sha256)") || r.stdoutText.contains("1 recipe-side patch(es) match the lock"), "\(r.stdoutText)")
        #expect(r.stdoutText.contains("published by \(script) aarch64 on hertz; verified: signed by"), "\(r.stdoutText)")
        #expect(try Self.tree(recipeDir) == before, "their recipe is never edited")
        // the package: built from the stamped copy (pkgrel and _srctag stamped), with the lock's cumulative in it
        let listing = try BuildBoxTests.snapshot()
        let pkg = try #require(listing.keys.filter { $0.hasPrefix("linux-fresnel-fourier-7.0-") && $0.hasSuffix(".pkg.tar.zst") }.sorted().last, "\(listing.keys.sorted())")
        #expect(listing["\(pkg).sig"] != nil)
        let x = h.root.appendingPathComponent("x")
        try FileManager.default.createDirectory(at: x, withIntermediateDirectories: true)
        let tar = try await TestCommand.run(["bsdtar", "-xf", BuildBoxTests.repoDir.appendingPathComponent(pkg).path, "-C", x.path])
        #expect(tar.status == 0, "\(tar.stderrText)")
        let opp = try await TestCommand.run(["fdtget", x.appendingPathComponent("boot/dtbs-fresnel-fourier/rockchip/rk3399-pinebook-pro.dtb").path,
                                             "/opp-table-0/opp-1704000000", "opp-hz"])
        #expect(opp.status == 0 && opp.stdoutText.contains("1704000000"), "the board patch is in the kernel: \(opp.stderrText)")
        let job = try #require(try JobBoxTests.jobs(h.root.appendingPathComponent(".ka")).last)
        let stamped = try String(contentsOf: JobLog.directory(Workspace(root: h.root, stateDir: h.root.appendingPathComponent(".ka")), job.id)
            .appendingPathComponent("package/PKGBUILD"), encoding: .utf8)
        let lock = try String(contentsOf: h.root.appendingPathComponent("build/fresnel/v7.0/manifest.lock"), encoding: .utf8)
        #expect(stamped.contains("\n_srctag='v7.0'\n") && stamped.contains("\n_cumulative_b2sum='") && !stamped.contains("_cumulative_b2sum=SKIP"), "\(stamped)")
        let b2 = try PackageRenderer.b2sum(h.root.appendingPathComponent("build/fresnel/v7.0/0001-fresnel-cumulative-series.patch"))
        #expect(stamped.contains("_cumulative_b2sum='\(b2)'") && lock.contains(b2))
    }

    @Test func aRecipeSidePatchThatDriftedIsRefusedBeforeAnything() async throws {
        let h = try Harness()
        try Self.manifestWithRecipe(h)
        try await BuildBoxTests.promote(h)
        let checkout = try await Self.recipe(h)
        let copy = checkout.appendingPathComponent("arch/linux-fresnel-fourier/\(Self.boardPatch)")
        let text = try String(contentsOf: copy, encoding: .utf8)
        // the recipe's copy with its diff changed (one OPP rate edited): drift
        try text.replacingOccurrences(of: "1704000000", with: "1800000000").write(to: copy, atomically: true, encoding: .utf8)
        let config = try Self.config(h, checkout: checkout)
        let repo = try BuildBoxTests.snapshot()
        let r = try await BuildBoxTests.ka(h, ["build", "fresnel"], config: config)
        #expect(r.status == 2 && r.stderrText.contains("recipe-side patch drifted from") && r.stderrText.contains("the lock is authoritative"), "\(r.stderrText)")
        #expect(try JobBoxTests.jobs(h.root.appendingPathComponent(".ka")).filter { $0.verb == "build" }.isEmpty, "no job was started")
        #expect(try BuildBoxTests.snapshot() == repo)
        // only the commit message differs (ka adopt's Scope: trailer): the same diff, accepted
        try text.replacingOccurrences(of: "Scope: board/pinebook-pro\n", with: "").write(to: copy, atomically: true, encoding: .utf8)
        let plan = try RecipeTemplate.locate(try Manifest.load(HostName("fresnel"), in: Workspace(root: h.root)),
                                             pipeline: try PipelineConfig.fromEnvironment(["KA_CONFIG": config.path]), stateRoot: h.root)
        let lock = try LockFile.load(h.root.appendingPathComponent("build/fresnel/v7.0/manifest.lock"), shown: "lock")
        let notes = try #require(plan).verify(against: lock, cumulativeName: "0001-fresnel-cumulative-series.patch")
        #expect(notes.count == 1 && notes[0].contains("same diff"), "\(notes)")
    }

    @Test func aPublishThatExitsZeroWithoutSigningIsCaught() async throws {
        let h = try Harness()
        try await BuildBoxTests.promote(h)
        let script = "/usr/local/bin/marfrit-publish-unsigned"
        try await Self.installPublishScript(script, sign: false)
        // the broken publish leaves an unsigned package and a db whose signature is stale: the repo is put back after
        let repo = "/srv/packages/arch/aarch64", saved = "/srv/packages/arch/.aarch64-before-unsigned"
        let save = try await JobBoxTests.inHost("hertz", ["sh", "-c", "rm -rf -- \"$2\" && cp -a -- \"$1\" \"$2\"", "x", repo, saved])
        try #require(save.status == 0, "\(save.stderrText)")
        defer {
            // put the repo back whatever happened; a failure here shows as the next build test's failure
            let back = try? TestCommand.runBlocking([JobBoxTests.fleetBox, "exec", "hertz", "sh", "-c", "rm -rf -- \"$1\" && mv -T -- \"$2\" \"$1\"", "x", repo, saved],
                                                    environment: ProcessInfo.processInfo.environment)
            if back?.status != 0 { Issue.record("the box repo was not restored: \(back?.stderrText ?? "no run")") }
        }
        let config = try BuildBoxTests.config(h, "unsigned.yaml") { text in
            text.replacingOccurrences(of: "\nsigning:\n", with: "\nsigning:\n  publish_command: [\(script), aarch64]\n")
        }
        let r = try await BuildBoxTests.ka(h, ["build", "fresnel"], config: config)
        #expect(r.status == 1, "\(r.stdoutText)\n\(r.stderrText)")
        #expect(r.stdoutText.contains("exited 0, but hertz:/srv/packages/arch/aarch64 does not hold what it should") && r.stdoutText.contains("no good signature"),
                "\(r.stdoutText)\n\(r.stderrText)")
        #expect(try BuildBoxTests.blocks(h).contains { $0.kind == .signingFail }, "a [ka:signing-fail] is filed")

    }
}
