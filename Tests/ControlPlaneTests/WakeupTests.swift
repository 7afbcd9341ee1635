import Foundation
import Testing
@testable import KAControlPlane

/// The loop's wake-up (issue 18: no more 20 ms poll slices): a poke wakes a waiter or the next wait; a timeout or a
/// cancel ends a wait as not poked.
@Suite struct WakeupTests {
    @Test func aPokeWakesTheWaiterOrTheNextWaitAndATimeoutDoesNot() async throws {
        let w = Wakeup()
        w.poke()
        #expect(await w.wait(upTo: .seconds(60)), "a poke before the wait is kept for it")
        #expect(await w.wait(upTo: .milliseconds(20)) == false, "and only once")
        // a poke while waiting ends the wait as poked (the 60 s timeout would fail the test's own time limit)
        async let woken = w.wait(upTo: .seconds(60))
        try await Task.sleep(for: .milliseconds(10))   // let the waiter register; a poke before it still counts
        w.poke()
        #expect(await woken)
        // a cancelled wait ends, not poked
        let waiting = Task { await w.wait(upTo: .seconds(60)) }
        waiting.cancel()
        #expect(await waiting.value == false)
        // many pokes are one
        for _ in 0..<5 { w.poke() }
        #expect(await w.wait(upTo: .seconds(60)))
        #expect(await w.wait(upTo: .milliseconds(20)) == false)
    }
}
