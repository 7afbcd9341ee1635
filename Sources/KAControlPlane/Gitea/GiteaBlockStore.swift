import Foundation
import KernelAgent

/// Open `[ka:<kind>] …` issues are the block store. Each carries a hidden marker with its kind and scope;
/// blocks are found by the marker, never by title alone, and closing the issue lifts the block.
/// Filing goes through the outbox (durable, idempotent by the marker's ref).
public final class GiteaBlockStore: BlockStore, @unchecked Sendable {
    let api: GiteaAPI
    let ledger: Ledger

    public init(api: GiteaAPI, ledger: Ledger) { self.api = api; self.ledger = ledger }

    static func marker(_ kind: BlockKind, _ scope: BlockScope) -> String { "<!-- ka:block kind=\(kind.rawValue) scope=\(scope.marker) -->" }

    static func parse(_ issue: GiteaIssue) -> Block? {
        guard let body = issue.body, let r = body.range(of: "<!-- ka:block kind="),
              let end = body[r.upperBound...].range(of: " -->") else { return nil }
        let inner = body[r.upperBound..<end.lowerBound]   // "<kind> scope=<marker>"
        guard let sp = inner.range(of: " scope="), let kind = BlockKind(rawValue: String(inner[..<sp.lowerBound])),
              issue.title.hasPrefix(kind.titlePrefix), let scope = BlockScope.parse(marker: String(inner[sp.upperBound...])) else { return nil }
        return Block(id: "#\(issue.number)", kind: kind, scope: scope, title: issue.title)
    }

    /// Verbs are synchronous; they run on their own threads, so waiting here blocks no async executor.
    func blocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        nonisolated(unsafe) var result: Result<T, Error>?
        let done = DispatchSemaphore(value: 0)
        Task { do { result = .success(try await body()) } catch { result = .failure(error) }; done.signal() }
        done.wait()
        guard let result else { throw KAError.failure("block store", "no result") }
        return try result.get()
    }

    public func openBlocks() throws -> [Block] {
        do {
            let api = self.api
            return try blocking { try await api.listIssues(state: "open", since: nil) }.compactMap(Self.parse)
        } catch let e as GiteaError {
            throw KAError.failure("block store", "cannot read open block issues: \(e)")
        }
    }

    @discardableResult
    public func file(kind: BlockKind, scope: BlockScope, title: String, body: String) throws -> Block {
        let marker = Self.marker(kind, scope)
        if let existing = try openBlocks().first(where: { $0.kind == kind && $0.scope == scope }) { return existing }
        let ref = "block-\(kind.rawValue)-\(Blake2b.hex(Data(scope.marker.utf8), digestLength: 8))"
        try ledger.enqueue(.issue(title: "\(kind.titlePrefix) \(title)", body: body + "\n\n" + marker, labels: ["ka:\(kind.rawValue)"]), ref: ref)
        return Block(id: "pending:\(ref)", kind: kind, scope: scope, title: "\(kind.titlePrefix) \(title)")
    }

    public func close(id: String) throws {
        guard id.hasPrefix("#"), let n = Int(id.dropFirst()) else { throw KAError.refusal("block \(id)", "not an issue reference (#N)") }
        try ledger.enqueue(.editIssue(number: n, body: nil, state: "closed"), ref: "close-block-\(n)")
    }
}
