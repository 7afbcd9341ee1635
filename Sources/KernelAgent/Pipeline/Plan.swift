import Foundation

/// One concrete step a verb will take, and the inputs it is pinned to. A consent reply lists the steps;
/// at run time the pins are recomputed and any change voids the consent.
package struct Plan: Sendable {
    package struct Pin: Sendable, Equatable, Codable {
        package let name: String
        package let value: String
        package init(_ name: String, _ value: String) { self.name = name; self.value = value }
    }

    package let verb: String
    /// The arguments as the person wrote them (the pipeline sets the parsed argv over what the verb spelled).
    package var arguments: [String]
    package var steps: [String]
    package var pins: [Pin]

    package init(verb: String, arguments: [String], steps: [String], pins: [Pin] = []) {
        self.verb = verb; self.arguments = arguments; self.steps = steps; self.pins = pins
    }

    /// Pins that differ between this plan and a fresh one, as "name: old → new" lines.
    package func changedPins(comparedTo fresh: Plan) -> [String] {
        let old = Dictionary(pins.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        let new = Dictionary(fresh.pins.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        return Set(old.keys).union(new.keys).sorted().compactMap { k in
            old[k] == new[k] ? nil : "\(k): \(old[k] ?? "(none)") → \(new[k] ?? "(gone)")"
        }
    }

    package func render() -> String {
        var out = "ka \(([verb] + arguments).joined(separator: " ")) will:\n"
        for (i, s) in steps.enumerated() { out += "  \(i + 1). \(s)\n" }
        if !pins.isEmpty {
            out += "pinned to:\n"
            for p in pins { out += "  \(p.name) = \(p.value)\n" }
        }
        return out
    }
}

package struct VerbOutcome: Sendable {
    package let text: String
    package init(_ text: String) { self.text = text }
}
