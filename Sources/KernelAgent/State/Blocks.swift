import Foundation

/// Block-severity issues of the seed. Each halts exactly what its scope says, nothing more.
package enum BlockKind: String, CaseIterable, Sendable, Codable {
    case patchFail = "patch-fail"
    case campaignConflict = "campaign-conflict"
    case hostDrifted = "host-drifted"
    case buildFail = "build-fail"
    case bootstrapMissing = "bootstrap-missing"
    case hostChanged = "host-changed"
    case signingFail = "signing-fail"
    case regression

    package var titlePrefix: String { "[ka:\(rawValue)]" }
}

/// What a block halts (seed, "Block-severity issues"), as a machine-readable scope.
package enum BlockScope: Sendable, Equatable, Codable {
    case patches([String])      // patch paths under patches/ (patch-fail, campaign-conflict)
    case host(String)           // installs to / builds for that host
    case buildHost(String)      // builds routed to that build host
    case global                 // signing-fail

    /// The hidden marker in a block issue's body; the control plane finds blocks by it, never by title.
    package var marker: String {
        switch self {
        case let .patches(p): return "patches=" + p.sorted().joined(separator: ",")
        case let .host(h): return "host=\(h)"
        case let .buildHost(h): return "build-host=\(h)"
        case .global: return "global"
        }
    }

    package static func parse(marker: String) -> BlockScope? {
        if marker == "global" { return .global }
        guard let eq = marker.firstIndex(of: "=") else { return nil }
        let key = marker[..<eq], value = String(marker[marker.index(after: eq)...])
        switch key {
        case "patches": return .patches(value.split(separator: ",").map(String.init))
        case "host": return .host(value)
        case "build-host": return .buildHost(value)
        default: return nil
        }
    }
}

package struct Block: Sendable, Equatable, Codable {
    package let id: String
    package let kind: BlockKind
    package let scope: BlockScope
    package let title: String
    package init(id: String, kind: BlockKind, scope: BlockScope, title: String) {
        self.id = id; self.kind = kind; self.scope = scope; self.title = title
    }

    /// Does this block halt promoting the patch at `path`?
    package func haltsPromote(of path: String) -> Bool {
        guard kind == .patchFail || kind == .campaignConflict, case let .patches(ps) = scope else { return false }
        return ps.contains(path)
    }

    /// Is this block about `host` (for status)?
    package func concerns(host: String) -> Bool {
        switch scope {
        case let .host(h), let .buildHost(h): return h == host
        case .global: return true
        case .patches: return false
        }
    }
}

/// Where open blocks live. Locally a SQLite table; the control plane backs it with Gitea issues, read over the
/// network, hence async (a local store's synchronous methods satisfy it as they are).
package protocol BlockStore: Sendable {
    func openBlocks() async throws -> [Block]
    /// Files a block, idempotently: an open block with the same kind and scope is returned as is.
    @discardableResult
    func file(kind: BlockKind, scope: BlockScope, title: String, body: String) async throws -> Block
    func close(id: String) async throws
}

/// A block a refusal asks to have filed: what, about which scope, and the words.
package struct BlockRequest: Sendable, Equatable {
    package let kind: BlockKind
    package let scope: BlockScope
    package let title: String
    package let body: String
    package init(kind: BlockKind, scope: BlockScope, title: String, body: String) {
        self.kind = kind; self.scope = scope; self.title = title; self.body = body
    }
}

/// Files the tracker's record issues (`[ka:installable] …`): in `ka serve` an issue through the outbox; the bare
/// CLI has none, and the state store's record is all there is.
package protocol RecordFiler: Sendable {
    /// Idempotent by `ref`: a retry never files a second issue.
    func fileRecord(title: String, body: String, label: String, ref: String) async throws
    /// Closes the record filed with `ref`, after a comment with the outcome. Idempotent by `ref`.
    func closeRecord(ref: String, outcome: String) async throws
}
