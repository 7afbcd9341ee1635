import Foundation
import GRDB
import KATestSupport
import KernelAgent
import Testing

/// Issue 20 §2: each refusal that guards a host, on the fleet-in-a-box, with proof that nothing reached fresnel:
/// its /boot byte for byte, `pacman -Q` and its reboot count unchanged. In BuildBoxTests' serialized suite (the box's
/// hosts and repo are shared), holding fresnel.
extension BuildBoxTests {
    /// What an install would change on fresnel.
    struct FresnelState: Equatable {
        let boot: [String: String]
        let packages: String
        let reboots: Int
    }

    static func fresnelState() async throws -> FresnelState {
        var boot: [String: String] = [:]
        let base = fresnelBoot.standardizedFileURL.path
        if let e = FileManager.default.enumerator(atPath: base) {
            for case let rel as String in e {
                let url = URL(fileURLWithPath: base).appendingPathComponent(rel)
                if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: url.path) { boot[rel] = "-> \(target)"; continue }
                if FS.isDirectory(url) { boot[rel] = "<dir>"; continue }
                boot[rel] = Blake2b.hex(try Data(contentsOf: url))
            }
        }
        let packages = try await JobBoxTests.inHost("fresnel", ["pacman", "-Q"]).stdoutText
        return FresnelState(boot: boot, packages: packages, reboots: try await rebootCount())
    }

    @Test func everyInstallRefusalLeavesFresnelUntouched() async throws {
        let h = try Harness()
        try await Self.promoteAndBuild(h)
        let before = try await Self.fresnelState()
        #expect(!before.boot.isEmpty && before.packages.contains("linux-eos-arm"), "\(before.packages)")
        var refusals = 0
        func expectRefused(_ what: String, _ args: [String], config: URL? = nil, exit: Int32? = 2, saying: String,
                           sourceLocation: SourceLocation = #_sourceLocation) async throws {
            let r = try await Self.ka(h, args, config: config)
            if let exit { #expect(r.status == exit, "\(what): exit \(r.status)\n\(r.stdoutText)\n\(r.stderrText)", sourceLocation: sourceLocation) }
            else { #expect(r.status != 0, "\(what): exit 0", sourceLocation: sourceLocation) }
            let said = r.stdoutText + r.stderrText
            #expect(said.contains(saying), "\(what): \(said)", sourceLocation: sourceLocation)
            if r.status != 0 && said.contains(saying) { refusals += 1 }
            #expect(try await Self.fresnelState() == before, "\(what): something reached fresnel", sourceLocation: sourceLocation)
        }

        // a host that is not a target; a Debian target
        try await expectRefused("not a target", ["install", "lagrange"], saying: "is not a target")
        try await expectRefused("a Debian target", ["install", "higgs"], saying: "is a Debian target")

        // install.mode: replace
        let manifest = h.root.appendingPathComponent("fleet/fresnel.yaml")
        let original = try String(contentsOf: manifest, encoding: .utf8)
        try original.replacingOccurrences(of: "mode: alongside", with: "mode: replace").write(to: manifest, atomically: true, encoding: .utf8)
        try await expectRefused("install.mode replace", ["install", "fresnel"], saying: "install.mode: replace is not supported")

        // an installable built from an older lock: the manifest changed and was promoted, not built
        try (original + "# a later edit\n").write(to: manifest, atomically: true, encoding: .utf8)
        #expect(try await Self.ka(h, ["promote", "fresnel"]).status == 0)
        try await expectRefused("an older lock", ["install", "fresnel"], saying: "was built from lock b2:")
        try original.write(to: manifest, atomically: true, encoding: .utf8)
        #expect(try await Self.ka(h, ["promote", "fresnel"]).status == 0, "the lock is the built one again")

        // no signing: section in KA_CONFIG
        let unsigned = try Self.config(h, "unsigned.yaml") { text in
            var out: [Substring] = [], skipping = false
            for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
                if line.hasPrefix("signing:") { skipping = true; continue }
                if skipping, line.hasPrefix(" ") || line.isEmpty { continue }
                skipping = false
                out.append(line)
            }
            return out.joined(separator: "\n")
        }
        try await expectRefused("no signing section", ["install", "fresnel"], config: unsigned, saying: "has no signing section")

        // a package without its signature in the installable record
        let db = try DatabaseQueue(path: h.root.appendingPathComponent(".ka/state.sqlite").path)
        let newest = try await db.read { try String.fetchOne($0, sql: "SELECT job FROM installables WHERE host = 'fresnel' ORDER BY filedAt DESC LIMIT 1") }
        let job = try #require(newest)
        let stored = try await db.read { try String.fetchOne($0, sql: "SELECT packages FROM installables WHERE job = ?", arguments: [job]) }
        let packages = try #require(stored)
        let unsignedPackages = packages.split(separator: "\n").map { $0.components(separatedBy: " sig:").first ?? String($0) }.joined(separator: "\n")
        try await db.write { try $0.execute(sql: "UPDATE installables SET packages = ? WHERE job = ?", arguments: [unsignedPackages, job]) }
        try await expectRefused("a missing signature", ["install", "fresnel"], exit: nil, saying: "has no signature in the installable record")
        try await db.write { try $0.execute(sql: "UPDATE installables SET packages = ? WHERE job = ?", arguments: [packages, job]) }

        // the package on the signing host is not the one built (b2sum); its signature does not verify
        let kernel = try #require(packages.split(separator: "\n").map { String($0.split(separator: " ")[0]) }.first { !$0.contains("-headers-") })
        let pkg = Self.repoDir.appendingPathComponent(kernel), sig = Self.repoDir.appendingPathComponent(kernel + ".sig")
        let pkgBytes = try Data(contentsOf: pkg), sigBytes = try Data(contentsOf: sig)
        defer {
            do { try pkgBytes.write(to: pkg); try sigBytes.write(to: sig) } catch { Issue.record("cannot restore \(kernel): \(error)") }
        }
        try (pkgBytes + Data([0])).write(to: pkg)
        try await expectRefused("a package b2sum mismatch", ["install", "fresnel"], exit: nil, saying: "not the installable's")
        try pkgBytes.write(to: pkg)
        var badSig = sigBytes
        badSig[badSig.count / 2] ^= 0xff
        try badSig.write(to: sig)
        try await expectRefused("a signature that does not verify", ["install", "fresnel"], exit: nil, saying: "its signature does not verify")
        try sigBytes.write(to: sig)
        #expect(refusals == 8, "\(refusals) of the 8 refusals were seen")
    }
}
