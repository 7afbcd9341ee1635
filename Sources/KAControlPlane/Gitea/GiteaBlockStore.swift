import Foundation
import KernelAgent

/// Open `[ka:<kind>] …` issues are the block store. Each carries a hidden marker with its kind and scope;
/// blocks are found by the marker, never by title alone, and closing the issue lifts the block.
/// A block counts only when the bot filed it or its author may run the verb it halts (the rule that admits
/// `/ka-yes`); anyone else's gets one comment saying it is ignored.
/// Filing goes through the outbox (durable, idempotent by the marker's ref).
package final class GiteaBlockStore: BlockStore, RecordFiler, Sendable {
    let api: GiteaAPI
    let ledger: Ledger
    let authorizer: Authorizer

    package init(api: GiteaAPI, ledger: Ledger, authorizer: Authorizer) { self.api = api; self.ledger = ledger; self.authorizer = authorizer }

    static func marker(_ kind: BlockKind, _ scope: BlockScope) -> String { "<!-- ka:block kind=\(kind.rawValue) scope=\(scope.marker) -->" }

    static func parse(_ issue: GiteaIssue) -> Block? {
        guard let body = issue.body, let r = body.range(of: "<!-- ka:block kind="),
              let end = body[r.upperBound...].range(of: " -->") else { return nil }
        let inner = body[r.upperBound..<end.lowerBound]   // "<kind> scope=<marker>"
        guard let sp = inner.range(of: " scope="), let kind = BlockKind(rawValue: String(inner[..<sp.lowerBound])),
              issue.title.hasPrefix(kind.titlePrefix), let scope = BlockScope.parse(marker: String(inner[sp.upperBound...])) else { return nil }
        return Block(id: "#\(issue.number)", kind: kind, scope: scope, title: issue.title)
    }

    package func openBlocks() async throws -> [Block] {
        do {
            let issues = try await api.listIssues(state: "open", since: nil)
            var blocks: [Block] = []
            for issue in issues {
                guard let block = Self.parse(issue) else { continue }
                let author = issue.user.login
                if try await authorizer.trustsBlock(author: author, kind: block.kind) {
                    blocks.append(block)
                } else {
                    try noteUntrusted(issue, block)
                }
            }
            return blocks
        } catch let e as GiteaError {
            throw KAError.failure("block store", "cannot read open block issues: \(e)")
        }
    }

    /// One comment per ignored issue, however often the blocks are read.
    func noteUntrusted(_ issue: GiteaIssue, _ block: Block) throws {
        let verb = Authorizer.verbHalted(by: block.kind)
        try ledger.enqueue(.comment(issue: issue.number, body: "@\(issue.user.login) this issue carries a `\(block.kind.titlePrefix)` block marker, "
                                    + "but a block counts only when \(authorizer.botLogin) files it or its author may run `/ka-\(verb)` here; "
                                    + "it is ignored and halts nothing. Ask someone who may to file it."),
                           ref: "untrusted-block-\(issue.number)")
    }

    @discardableResult
    package func file(kind: BlockKind, scope: BlockScope, title: String, body: String) async throws -> Block {
        let marker = Self.marker(kind, scope)
        if let existing = try await openBlocks().first(where: { $0.kind == kind && $0.scope == scope }) { return existing }
        // The title is in the ref: a retry of the same failure files once, and a new failure (its job id is in the
        // title) after the last one was closed files again instead of hitting the outbox's old ref.
        let ref = "block-\(kind.rawValue)-\(Blake2b.hex(Data((scope.marker + "\n" + title).utf8), digestLength: 8))"
        try ledger.enqueue(.issue(title: "\(kind.titlePrefix) \(title)", body: body + "\n\n" + marker, labels: ["ka:\(kind.rawValue)"]), ref: ref)
        return Block(id: "pending:\(ref)", kind: kind, scope: scope, title: "\(kind.titlePrefix) \(title)")
    }

    package func fileRecord(title: String, body: String, label: String, ref: String) async throws {
        try ledger.enqueue(.issue(title: title, body: body, labels: [label]), ref: ref)
    }

    package func closeRecord(ref: String, outcome: String) async throws {
        // A record this bot never filed (a build from the CLI) has no issue to close: the close would wait forever.
        guard try ledger.hasOutboxItem(ref: ref) else { return }
        try ledger.enqueue(.closeIssue(targetRef: ref, comment: outcome), ref: "close-\(ref)")
    }

    package func close(id: String) async throws {
        guard id.hasPrefix("#"), let n = Int(id.dropFirst()) else { throw KAError.refusal("block \(id)", "not an issue reference (#N)") }
        try ledger.enqueue(.editIssue(number: n, body: nil, state: "closed"), ref: "close-block-\(n)")
    }
}
