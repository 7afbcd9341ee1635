import ArgumentParser
import Foundation
import KernelAgent

/// `ka <verb> …`, or `ka-<verb> …` through a symlink named after the verb (see README, "Installing").
struct KA: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ka",
        abstract: "kernel-agent: the kernel side of the home fleet.",
        discussion: "Every verb runs immediately from the CLI. Refusals exit 2 and change nothing.",
        version: KernelAgentVersion.string,
        subcommands: Verbs.all.map { $0 as ParsableCommand.Type })
}

var args = Array(CommandLine.arguments.dropFirst())
let invokedAs = URL(fileURLWithPath: CommandLine.arguments.first ?? "ka").lastPathComponent
if invokedAs.hasPrefix("ka-") {
    args.insert(String(invokedAs.dropFirst(3)), at: 0)
}
KA.main(args)
