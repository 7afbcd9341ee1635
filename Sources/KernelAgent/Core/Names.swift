/// The byte classes the identifiers below are made of (ASCII only).
enum NameBytes {
    static func isLower(_ c: UInt8) -> Bool { c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z") }
    static func isUpper(_ c: UInt8) -> Bool { c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z") }
    static func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }
    /// host names: a-z 0-9 -
    static func host(_ c: UInt8) -> Bool { isLower(c) || isDigit(c) || c == UInt8(ascii: "-") }
    /// campaign names: letters, digits, - _ .
    static func campaign(_ c: UInt8) -> Bool {
        isLower(c) || isUpper(c) || isDigit(c) || c == UInt8(ascii: "-") || c == UInt8(ascii: "_") || c == UInt8(ascii: ".")
    }
    /// path components under patches/: the campaign set plus + and ,
    static func pathComponent(_ c: UInt8) -> Bool { campaign(c) || c == UInt8(ascii: "+") || c == UInt8(ascii: ",") }
}

/// Validated identifiers. Every host, campaign and scope path that reaches a verb passes through here,
/// so nothing downstream ever sees `..`, a slash in a host name, or an option smuggled in as an argument.
package struct HostName: Hashable, Comparable, Sendable, CustomStringConvertible {
    package let value: String
    package init(_ raw: String) throws {
        guard Self.isValid(raw) else {
            throw KAError.refusal("host '\(raw)'", "not a valid host name",
                                  hint: "use lowercase letters, digits and '-' (e.g. fresnel, kbuild-x86)")
        }
        value = raw
    }
    static func isValid(_ s: String) -> Bool {
        guard let first = s.utf8.first, s.utf8.count <= 63, first != UInt8(ascii: "-") else { return false }
        return s.utf8.allSatisfy(NameBytes.host)
    }
    package var description: String { value }
    package static func < (a: HostName, b: HostName) -> Bool { a.value < b.value }
}

package struct CampaignName: Hashable, Comparable, Sendable, CustomStringConvertible {
    package let value: String
    package init(_ raw: String) throws {
        let ok = !raw.isEmpty && raw.utf8.count <= 100 && raw.first != "-" && raw.first != "."
            && raw.utf8.allSatisfy(NameBytes.campaign)
        guard ok else {
            throw KAError.refusal("campaign '\(raw)'", "not a valid campaign name",
                                  hint: "use letters, digits, '.', '_' and '-' (e.g. fresnel-fourier, ohm_gl_fix)")
        }
        value = raw
    }
    package var description: String { value }
    package static func < (a: CampaignName, b: CampaignName) -> Bool { a.value < b.value }
}

/// The first path component of every patch directory. Order = resolution precedence:
/// generic scopes first, so a board patch may rely on an SoC or driver change.
package enum ScopeKind: String, CaseIterable, Sendable, Comparable {
    case arch, subsystem, driver, soc, module, board
    package var precedence: Int { Self.allCases.firstIndex(of: self) ?? 0 }
    package static func < (a: ScopeKind, b: ScopeKind) -> Bool { a.precedence < b.precedence }
}

/// A path relative to `patches/`: a scope dir (`board/pinebook-pro`) or a single patch in one.
/// Lexically confined: no absolute paths, no `..`, no empty or hidden components.
package struct TreePath: Hashable, Comparable, Sendable, CustomStringConvertible {
    package let value: String
    package var components: [Substring] { value.split(separator: "/") }
    package var kind: ScopeKind { ScopeKind(rawValue: String(components[0])) ?? .arch }

    package init(_ raw: String) throws {
        var s = raw
        while s.hasSuffix("/") && s.count > 1 { s.removeLast() }
        if s.hasPrefix("patches/") { s.removeFirst("patches/".count) }
        guard !s.hasPrefix("/"), !s.hasPrefix("~") else {
            throw KAError.refusal("'\(raw)'", "escapes patches/ (absolute path)", hint: "name it relative to patches/, e.g. board/pinebook-pro")
        }
        let parts = s.split(separator: "/", omittingEmptySubsequences: false)
        for p in parts {
            if p == ".." { throw KAError.refusal("'\(raw)'", "escapes patches/ ('..')", hint: "name it relative to patches/ without '..'") }
            if p.isEmpty || p == "." || p.hasPrefix(".") {
                throw KAError.refusal("'\(raw)'", "not a clean path under patches/ (empty, '.' or hidden component)")
            }
            if !p.utf8.allSatisfy(NameBytes.pathComponent) { throw KAError.refusal("'\(raw)'", "component '\(p)' has characters outside [A-Za-z0-9._+,-]") }
        }
        guard let first = parts.first, ScopeKind(rawValue: String(first)) != nil else {
            throw KAError.refusal("'\(raw)'", "unscoped: the first component must be one of \(ScopeKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        value = s
    }

    package func appending(_ name: String) throws -> TreePath {
        // Only the new component needs checking; self is valid already.
        guard !name.isEmpty, !name.hasPrefix("."), !name.contains("/"), name.utf8.allSatisfy(NameBytes.pathComponent) else {
            return try TreePath(value + "/" + name)   // the full check names the problem
        }
        return TreePath(trusted: value + "/" + name)
    }

    private init(trusted: String) { value = trusted }

    package var parent: String { components.dropLast().joined(separator: "/") }
    package var lastComponent: String { String(components.last ?? "") }
    package func isWithin(_ other: TreePath) -> Bool { value == other.value || value.hasPrefix(other.value + "/") }
    package var description: String { value }
    package static func < (a: TreePath, b: TreePath) -> Bool { Array(a.value.utf8).lexicographicallyPrecedes(Array(b.value.utf8)) }
}
