import Foundation

/// Fleet-wide views: every host that has a manifest, and what each resolves to.
package enum Fleet {
    /// Hosts with a `fleet/<host>.yaml` (hosts.yaml is the registry, not a manifest), sorted.
    package static func manifestHosts(_ ws: Workspace) -> [HostName] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: ws.fleetDir.path)) ?? []
        return names.filter { $0.hasSuffix(".yaml") && $0 != "hosts.yaml" && !$0.hasPrefix(".") }
            .compactMap { try? HostName(String($0.dropLast(5))) }
            .sorted()
    }

    /// Each manifest host's resolution, or the refusal it gives.
    package static func resolveAll(_ ws: Workspace, policy: Policy) -> [(HostName, Result<Resolution, KAError>)] {
        let resolver = Resolver(workspace: ws, policy: policy)
        return manifestHosts(ws).map { host in
            do { return (host, .success(try resolver.resolve(try Manifest.load(host, in: ws)))) }
            catch let e as KAError { return (host, .failure(e)) }
            catch { return (host, .failure(KAError.failure(host.value, "\(error)", cause: error))) }
        }
    }

    /// host → [patch path: content hash], for hosts that resolve.
    package static func contentHashes(_ ws: Workspace, policy: Policy) -> [String: [String]] {
        var out: [String: [String]] = [:]
        for (h, r) in resolveAll(ws, policy: policy) {
            if case let .success(res) = r { out[h.value] = res.entries.map(\.patch.contentHash) }
        }
        return out
    }
}
