import Foundation
import KernelAgent

/// `labels/labels.yaml` → the repo's labels, with Prow label_sync's semantics: a label whose `previously`
/// name exists is renamed (keeping its issues), a missing one is created, a differing color or description
/// is updated. Labels not in the file are left alone. Without `confirm` nothing is changed.
package struct LabelSpec: Sendable, Equatable {
    package let name: String
    package let color: String
    package let description: String
    package let previously: [String]

    package static func load(_ url: URL, display: String) throws -> [LabelSpec] {
        let text = String(decoding: try FS.read(url, display: display), as: UTF8.self)
        let doc = try YAMLValue.parse(text, file: display)
        let list = try doc.mapping(allowed: ["labels"]).required("labels").sequence()
        var seen = Set<String>()
        return try list.map { item in
            let m = try item.mapping(allowed: ["name", "color", "description", "previously"])
            let name = try m.required("name").string()
            let colorV = try m.required("color")
            let color = try colorV.string().lowercased()
            guard color.count == 6, color.allSatisfy(\.isHexDigit) else { throw colorV.error("color must be rrggbb hex without '#'") }
            guard seen.insert(name).inserted else { throw item.error("duplicate label '\(name)'") }
            let prev = try m["previously"]?.sequence().map { try $0.mapping(allowed: ["name", "color", "description"]).required("name").string() } ?? []
            return LabelSpec(name: name, color: color, description: try m["description"]?.string() ?? "", previously: prev)
        }
    }
}

package enum LabelSync {
    package enum Action: Equatable, CustomStringConvertible, Sendable {
        case create(LabelSpec)
        case rename(id: Int64, from: String, to: LabelSpec)
        case update(id: Int64, LabelSpec)
        package var description: String {
            switch self {
            case let .create(s): return "create \(s.name) (#\(s.color))"
            case let .rename(_, from, to): return "rename \(from) → \(to.name)"
            case let .update(_, s): return "update \(s.name) (color #\(s.color), description)"
            }
        }
    }

    package static func plan(desired: [LabelSpec], current: [GiteaLabel]) -> [Action] {
        var out: [Action] = []
        let byName = Dictionary(current.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for d in desired {
            if let have = byName[d.name] {
                if have.color.lowercased().trimmingCharacters(in: ["#"]) != d.color || (have.description ?? "") != d.description {
                    out.append(.update(id: have.id, d))
                }
            } else if let old = d.previously.compactMap({ byName[$0] }).first {
                out.append(.rename(id: old.id, from: old.name, to: d))
            } else {
                out.append(.create(d))
            }
        }
        return out
    }

    package static func apply(_ actions: [Action], api: GiteaAPI) async throws {
        for a in actions {
            switch a {
            case let .create(s): _ = try await api.createLabel(name: s.name, color: s.color, description: s.description)
            case let .rename(id, _, s), let .update(id, s):
                _ = try await api.editLabel(id: id, name: s.name, color: s.color, description: s.description)
            }
        }
    }
}
