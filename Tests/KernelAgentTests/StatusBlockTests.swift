import Foundation
import Testing
@testable import KernelAgent

/// Issue 20, low: a build host's block shows on that host and on the targets it reroutes, not on every host of
/// its arch (a compile-only host builds nothing of theirs).
@Suite struct StatusBlockTests {
    @Test func aBuildHostsBlockShowsOnItAndOnTheTargetsRoutedThroughIt() async throws {
        let s = try PromoteTests.tree()
        try s.write("fleet/hosts.yaml", Sandbox.miniRegistry.replacingOccurrences(of: "routing:", with: """
              nu: {roles: [compile-only], arch: aarch64, distro: arch, wake: always}
            routing:
            """))
        let block = try await s.store.file(kind: .hostChanged, scope: .buildHost("bob"), title: "bob: gcc changed", body: "b")
        let rows = try await StatusVerb().rows(in: s.ctx)
        func shows(_ host: String) -> Bool { rows.first { $0.host == host }?.openBlocks.contains { $0.contains(block.id) } ?? false }
        #expect(shows("bob"), "the build host it concerns")
        #expect(shows("h1") && shows("h2"), "the targets whose route starts at bob")
        #expect(!shows("nu"), "not a compile-only host of the same arch")
        #expect(!shows("hertz"))
    }
}
