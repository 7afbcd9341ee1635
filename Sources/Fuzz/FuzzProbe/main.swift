import FuzzSupport
import KernelAgent

// The probe language (KernelAgent/Verify/ProbeParser.swift): the input is one probe's text, as a manifest's
// verify: section holds it. Bad text must be refused with a ProbeParseError placed inside the text; good text
// must read back the same from the text the probe keeps. The regex guard runs the parsed pattern on the input,
// and the device-tree renderer and the result's escaping read the raw bytes.

private let origin = ProbeOrigin(file: "fleet/ohm.yaml", line: 20, column: 14, field: "verify.probes[0].probe")

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzProbe(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = FuzzInput.bytes(data, size)
    let text = String(decoding: bytes, as: UTF8.self)
    _ = DeviceTreeValue.render(bytes)
    FuzzCheck.require(ProbeResult.shown(bytes).utf8.count <= ProbeLimits.shownBytes + 64, "shown text exceeds its bound")
    let probe: Probe
    do throws(ProbeParseError) {
        probe = try ProbeParser.parse(text, origin: origin)
    } catch {
        let lines = text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false)
        FuzzCheck.require((1...lines.count).contains(error.line), "error line \(error.line) outside 1...\(lines.count)")
        let lineLength = lines[error.line - 1].count
        FuzzCheck.require((1...(lineLength + 1)).contains(error.column),
                          "error column \(error.column) outside 1...\(lineLength + 1) on line \(error.line)")
        FuzzCheck.require(error.excerpt.contains("^") && error.description.hasPrefix("fleet/ohm.yaml:"), "error without its place: \(error)")
        return 0
    }
    // The text a probe keeps parses to the same probe.
    do {
        let again = try ProbeParser.parse(probe.text, origin: origin)
        FuzzCheck.require(again.subject == probe.subject && again.check == probe.check, "'\(probe.text)' reads back differently")
    } catch {
        FuzzCheck.require(false, "'\(probe.text)' parsed once, then not: \(error)")
    }
    switch probe.subject {
    case let .file(path):
        FuzzCheck.require(path.hasPrefix("/") && !path.split(separator: "/").contains(".."), "file path '\(path)' escaped the checks")
        FuzzCheck.require(ProbeParser.unreadableReason(path) == nil, "file path '\(path)' is not readable but was accepted")
    case let .deviceTree(node, _):
        FuzzCheck.require(node.hasPrefix("/") && !node.split(separator: "/").contains(".."), "node path '\(node)' escaped the checks")
    case let .command(argv):
        FuzzCheck.require(!argv.isEmpty && !argv[0].isEmpty, "empty argv accepted")
        let base = String(argv[0].split(separator: "/").last ?? "")
        FuzzCheck.require(ProbeParser.allowedPrograms.contains(base), "program '\(base)' is not on the allow-list but was accepted")
    }
    FuzzCheck.require(!text.unicodeScalars.contains("\u{0}"), "a NUL byte was accepted")
    if case let .matches(pattern, _) = probe.check {
        FuzzCheck.require(pattern.source.utf8.count <= ProbeLimits.patternBytes, "pattern over its bound")
        _ = pattern.firstMatch(in: text, budget: .milliseconds(200))
    }
    return 0
}

FuzzDriver.run(fuzzProbe)
