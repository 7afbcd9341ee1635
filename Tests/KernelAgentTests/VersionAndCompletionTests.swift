import Foundation
import Testing
import KATestSupport
@testable import KernelAgent

@Suite struct VersionAndCompletionTests {
    @Test func versionNamesTheGitCommitItWasBuiltFrom() async throws {
        let r = try await TestCommand.run([TestEnv.kaBinary.path, "--version"])
        #expect(r.status == 0)
        let head = try await TestCommand.run(["git", "-C", TestEnv.projectRoot.path, "rev-parse", "--short=12", "HEAD"]).stdoutText
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(head.count == 12)
        #expect(r.stdoutText.hasPrefix("\(KernelAgentVersion.string) (git \(head)"), "\(r.stdoutText) vs HEAD \(head)")
    }

    @Test(arguments: ["bash", "zsh", "fish"])
    func completionScriptsComeFromArgumentParser(shell: String) async throws {
        let r = try await TestCommand.run([TestEnv.kaBinary.path, "--generate-completion-script", shell])
        #expect(r.status == 0, "\(r.stderrText)")
        for verb in ["promote", "adopt", "migrate-tree", "serve"] { #expect(r.stdoutText.contains(verb), "\(shell): \(verb)") }
    }
}
