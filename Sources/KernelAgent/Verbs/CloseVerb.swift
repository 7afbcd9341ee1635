import ArgumentParser
import Foundation

/// `ka close <campaign> --status success`: the campaign's work is done; its patches stay in the tree.
package struct CloseVerb: InlineVerb {
    package enum Status: String, ExpressibleByArgument, CaseIterable, Sendable { case success }

    package static let configuration = CommandConfiguration(
        commandName: "close",
        abstract: "Close a campaign whose patches are in the tree (--status success).",
        discussion: "Closing records the outcome and lists the hosts that carry the campaign. It never promotes: that stays your explicit verb.")

    @Argument(help: "Campaign name.")
    package var campaign: String

    @Option(help: "Outcome of the campaign: success.")
    package var status: Status

    package init() {}

    package var lane: Lane { .tree }

    package func policySubject(in ctx: VerbContext) throws -> PolicySubject { _ = try CampaignName(campaign); return PolicySubject() }

    package func plan(in ctx: VerbContext) async throws -> Planned<Void> {
        let name = try CampaignName(campaign)
        let patches = try CampaignPatches.find(name, in: ctx.workspace)
        let record = try ctx.state.campaign(name.value)
        guard !patches.isEmpty || record != nil else {
            throw KAError.refusal("campaign \(name)", "unknown: no patch in the tree carries 'Campaign: \(name)'",
                                  hint: "import its patches first (ka import \(name) …)")
        }
        if let r = record, r.status == .abandonedPurged || r.status == .abandonedArchived {
            throw KAError.refusal("campaign \(name)", "already abandoned (\(r.status.rawValue)); a closed campaign cannot be reopened as success")
        }
        let hosts = CampaignPatches.hosts(including: Set(patches.map(\.value)), ws: ctx.workspace, policy: try ctx.policy())
        return Planned(Plan(verb: Self.verbName, arguments: [campaign, "--status", status.rawValue],
                    steps: ["record campaign \(name) as closed (\(status.rawValue)); \(patches.count) patch(es) stay in the tree",
                            hosts.isEmpty ? "no host manifest includes its patches" : "hosts carrying it: \(hosts.map(\.value).joined(separator: ", ")) (promote them yourself)"]))
    }

    package func run(_ planned: Planned<Void>, in ctx: VerbContext) async throws -> VerbOutcome {
        try ctx.state.setCampaign(campaign, status: .closedSuccess, at: ctx.now())
        return VerbOutcome("closed campaign \(campaign) (\(status.rawValue))\n" + planned.steps.dropFirst().joined(separator: "\n") + "\n")
    }
}
