import Foundation
import FuzzSupport
import KernelAgent

// The manifest reader (KernelAgent/Fleet/Manifest.swift, YAMLReader.swift): the input is fleet/ohm.yaml.

// Static, hence initialized on first use: when libFuzzer's main() runs, this file's top-level code never does.
private enum Fixture { static let host: HostName? = try? HostName("ohm") }

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzManifest(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let host = Fixture.host else { FuzzCheck.require(false, "HostName(\"ohm\") refused"); return 0 }
    let bytes = FuzzInput.data(data, size)
    guard let manifest = FuzzCheck.refusesOnlyWithKAError("Manifest.parse", {
        try Manifest.parse(bytes, host: host, file: "fleet/ohm.yaml")
    }) else { return 0 }
    // migrate-tree rewrites selectors in place; rewriting each to itself changes nothing or refuses.
    if let same = ManifestEdit.rewrite(bytes, selectors: manifest.selectors.map { ($0, $0.raw) }) {
        FuzzCheck.require(same == bytes, "rewriting every selector to itself changed the manifest")
    }
    return 0
}

FuzzDriver.run(fuzzManifest)
