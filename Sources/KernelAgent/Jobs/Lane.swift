/// What runs one verb at a time on one resource. The control plane serializes runs per lane.
package enum Lane: Sendable, Equatable, Hashable, CustomStringConvertible {
    case tree                 // changes patches/ or fleet/
    case host(HostName)       // touches one host
    case none                 // read-only
    package var description: String {
        switch self {
        case .tree: return "the patch tree"
        case let .host(h): return "host \(h)"
        case .none: return "nothing"
        }
    }
}
