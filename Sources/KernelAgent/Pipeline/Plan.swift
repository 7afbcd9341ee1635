import Foundation

/// One concrete step a verb will take, and the inputs it is pinned to. A consent reply lists the steps;
/// at run time the pins are recomputed and any change voids the consent.
public struct Plan: Sendable {
    public struct Pin: Sendable, Equatable, Codable {
        public let name: String
        public let value: String
        public init(_ name: String, _ value: String) { self.name = name; self.value = value }
    }

    public let verb: String
    /// The arguments as the person wrote them (the pipeline sets the parsed argv over what the verb spelled).
    public var arguments: [String]
    public var steps: [String]
    public var pins: [Pin]

    public init(verb: String, arguments: [String], steps: [String], pins: [Pin] = []) {
        self.verb = verb; self.arguments = arguments; self.steps = steps; self.pins = pins
    }

    /// Pins that differ between this plan and a fresh one, as "name: old → new" lines.
    public func changedPins(comparedTo fresh: Plan) -> [String] {
        let old = Dictionary(pins.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        let new = Dictionary(fresh.pins.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        return Set(old.keys).union(new.keys).sorted().compactMap { k in
            old[k] == new[k] ? nil : "\(k): \(old[k] ?? "(none)") → \(new[k] ?? "(gone)")"
        }
    }

    public func render() -> String {
        var out = "ka \(([verb] + arguments).joined(separator: " ")) will:\n"
        for (i, s) in steps.enumerated() { out += "  \(i + 1). \(s)\n" }
        if !pins.isEmpty {
            out += "pinned to:\n"
            for p in pins { out += "  \(p.name) = \(p.value)\n" }
        }
        return out
    }
}

public struct VerbOutcome: Sendable {
    public let text: String
    public init(_ text: String) { self.text = text }
}
