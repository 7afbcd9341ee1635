import FuzzSupport
import KernelAgent

// The hosts.yaml reader (KernelAgent/Fleet/HostRegistry.swift, YAMLReader.swift): the input is fleet/hosts.yaml.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHosts(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let text = FuzzInput.text(data, size)
    guard let registry = FuzzCheck.refusesOnlyWithKAError("HostRegistry.parse", {
        try HostRegistry.parse(text, file: "fleet/hosts.yaml")
    }) else { return 0 }
    for (name, entry) in registry.hosts {
        _ = entry.rolesText
        _ = entry.wake.description
        _ = FuzzCheck.refusesOnlyWithKAError("HostRegistry.entry") { try registry.entry(name) }
    }
    return 0
}

FuzzDriver.run(fuzzHosts)
