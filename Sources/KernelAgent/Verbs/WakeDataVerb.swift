import ArgumentParser
import Foundation

/// `ka wake-data`: His's `wake-host data` (kbuild-x86's machine), and His's answer.
package struct WakeDataVerb: InlineVerb {
    package static let configuration = CommandConfiguration(
        commandName: "wake-data", abstract: "Wake 'data' (kbuild-x86's machine) through His's wake-host.",
        discussion: "Calls the MCP tool wake-host with host=data on His, as KA_CONFIG's his: section names it, and prints His's answer. The host comes up later; His answers at once.")
    package init() {}

    package static let host = "data"
    package var lane: Lane { .none }
    package var writesState: Bool { false }

    package func policySubject(in ctx: VerbContext) throws -> PolicySubject { PolicySubject() }

    func his(_ ctx: VerbContext) throws -> any HisOps {
        // The plan lists this one call, so it may use wake-host even where His marks it destructive.
        guard let his = try ctx.settings().hisClient(allowDestructive: [.wakeHost]) else {
            throw KAError.refusal("ka wake-data", "His is not configured: KA_CONFIG has no his: section",
                                  hint: "add his: {url: http://<hub>:8090/mcp, token_env: <VAR>} (or his: {command: [<argv>]}) to the file KA_CONFIG names")
        }
        return his
    }

    package func plan(in ctx: VerbContext) async throws -> Planned<Void> {
        let his = try his(ctx)
        return Planned(Plan(verb: Self.verbName, arguments: [], steps: ["ask \(his.endpoint) to wake \(Self.host) (MCP tool wake-host)"]))
    }

    package func run(_ planned: Planned<Void>, in ctx: VerbContext) async throws -> VerbOutcome {
        let his = try his(ctx)
        let answer = try await his.wakeHost(try HostName(Self.host))
        return VerbOutcome("\(his.endpoint): \(answer.isEmpty ? "(no answer text)" : answer)\n")
    }
}
