import FuzzSupport
import KAControlPlane

// The comment command parser (KAControlPlane/Engine/CommandParser.swift): the input is a comment body, and
// also an issue title and an argument string.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCommand(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let text = FuzzInput.text(data, size)
    let lineCount = text.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n", omittingEmptySubsequences: false).count
    for result in CommandParser.parse(comment: text) {
        switch result {
        case let .success(inv):
            FuzzCheck.require((1...lineCount).contains(inv.line), "command line \(inv.line) outside 1...\(lineCount)")
            FuzzCheck.require(!inv.verb.isEmpty && inv.verb == inv.verb.lowercased(), "verb '\(inv.verb)' empty or not lowercased")
            FuzzCheck.require(inv.raw.hasPrefix("/ka-"), "command '\(inv.raw)' does not start with /ka-")
        case let .failure(problem):
            FuzzCheck.require((1...lineCount).contains(problem.line), "problem line \(problem.line) outside 1...\(lineCount)")
        }
    }
    if case let .success(inv)? = CommandParser.parse(title: text) {
        FuzzCheck.require(inv.line == 0 && !inv.verb.isEmpty, "title command \(inv)")
    }
    _ = try? CommandParser.split(text)   // a ParseProblem is the expected refusal
    return 0
}

FuzzDriver.run(fuzzCommand)
