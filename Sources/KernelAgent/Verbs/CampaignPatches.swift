import Foundation

/// The tree's patches that belong to a campaign (by their `Campaign:` trailer).
enum CampaignPatches {
    static func find(_ campaign: CampaignName, in ws: Workspace) throws -> [TreePath] {
        let all = try PatchTree(ws).allPatches()
        let parsed = try Resolver.parseAll(all, in: ws)
        return zip(all, parsed).filter { $0.1.campaign == campaign.value }.map(\.0)
    }

    /// Hosts whose current resolution includes any of `paths`.
    static func hosts(including paths: Set<String>, ws: Workspace, policy: Policy) -> [HostName] {
        Fleet.resolveAll(ws, policy: policy).compactMap { host, r in
            guard case let .success(res) = r, res.entries.contains(where: { paths.contains($0.path.value) }) else { return nil }
            return host
        }
    }
}
