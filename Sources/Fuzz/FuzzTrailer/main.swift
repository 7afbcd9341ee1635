import Foundation
import FuzzSupport
import KernelAgent

// The trailer reader (PatchFile's trailer block) and import's trailer edits (KernelAgent/Patches/TrailerEdit.swift).
// The input is a patch mail. What import appends to a patch (one with a diff) must read back as its last
// trailers: otherwise import writes a patch it then refuses (issue 6 §2).

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTrailer(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let added = [("Campaign", "fuzz"), ("Scope", "board/fuzz")]
    let bytes = FuzzInput.data(data, size)
    let patch = PatchFile(bytes: bytes)
    _ = (patch.trailers, patch.scopeTrailers, patch.campaign, patch.scopeLinesOutsideTrailers)
    if !patch.files.isEmpty, let edited = TrailerEdit.append(added, to: bytes) {
        let reread = PatchFile(bytes: edited).trailers.suffix(2).map { ($0.key, $0.value) }
        FuzzCheck.require(reread.elementsEqual(added, by: ==),
                          "appended \(added) but the trailer block reads back as \(PatchFile(bytes: edited).trailers)")
    }
    if let edited = TrailerEdit.replace("Scope", with: "board/fuzz", in: bytes) {
        _ = PatchFile(bytes: edited).scopeTrailers
    }
    return 0
}

FuzzDriver.run(fuzzTrailer)
