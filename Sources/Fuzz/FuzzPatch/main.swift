import Foundation
import FuzzSupport
import KernelAgent

// The patch parser (KernelAgent/Patches/PatchFile.swift) and what reads its hunks: the conflict detector and
// the in-memory apply check. The input is one patch file, taken as two patches of different scopes (so every
// hunk range is compared with every other) and checked against a tree: $KA_FUZZ_TREE (scripts/fuzz points it
// at the linux-v7.0-dts fixture) or a small tree of its own.

// Static, hence initialized on first use: when libFuzzer's main() runs, this file's top-level code never does.
private enum Fixture {
    static let tree: URL = {
        if let dir = ProcessInfo.processInfo.environment["KA_FUZZ_TREE"], !dir.isEmpty { return URL(fileURLWithPath: dir) }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ka-fuzz-tree-\(getpid())")
        let numbered = (1...40).map { "line \($0)\n" }.joined()
        do {
            try FileManager.default.createDirectory(at: dir.appendingPathComponent("src"), withIntermediateDirectories: true)
            try Data(numbered.utf8).write(to: dir.appendingPathComponent("a.c"))
            try Data(numbered.utf8).write(to: dir.appendingPathComponent("src/b.c"))
        } catch { FuzzCheck.require(false, "cannot create the fuzz tree \(dir.path): \(error)") }
        return dir
    }()

    static let paths: (TreePath, TreePath)? = {
        guard let a = try? TreePath("board/fuzz-a/0001-fuzz.patch"), let b = try? TreePath("soc/fuzz-b/0001-fuzz.patch") else {
            return nil
        }
        return (a, b)
    }()
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPatch(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let paths = Fixture.paths else { FuzzCheck.require(false, "TreePath refused the fuzz paths"); return 0 }
    let bytes = FuzzInput.data(data, size)
    let patch = PatchFile(bytes: bytes)
    _ = (patch.subject, patch.scopeTrailers, patch.campaign, patch.contentHash, patch.b2sum)
    for file in patch.files {
        _ = (file.path, file.targetPath)
        for hunk in file.hunks {
            FuzzCheck.require(hunk.body.lowerBound >= 0 && hunk.body.upperBound <= bytes.count,
                              "hunk body \(hunk.body) outside the \(bytes.count)-byte patch")
            _ = hunk.oldRange
        }
    }
    // Once PatchFile refuses malformed patches (issue 6 §1), only an accepted patch reaches these two.
    let entries = [Resolution.Entry(path: paths.0, patch: patch), Resolution.Entry(path: paths.1, patch: patch)]
    _ = ConflictDetector.detect(entries).map(\.description)
    let report = ApplyChecker.check(entries, tree: Fixture.tree, display: "fuzz-tree")
    _ = report.render(manifest: "fleet/fuzz.yaml")
    return 0
}

FuzzDriver.run(fuzzPatch)
