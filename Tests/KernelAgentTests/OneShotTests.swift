import Foundation
import Testing
@testable import KernelAgent

/// A value set once (issue 18: no poll loops where a wake-up exists): `set` wakes every waiter, a later wait
/// returns at once, a timeout or a cancel ends a wait with nil, and only the first `set` counts.
@Suite struct OneShotTests {
    @Test func setWakesEveryWaiterAndALaterWaitReturnsAtOnce() async throws {
        let shot = OneShot<String>()
        #expect(await shot.value(waitingUpTo: .milliseconds(20)) == nil, "a timeout ends the wait with nothing")
        // two waiters at once, both woken by one set (the 60 s limit would fail the test's own time limit)
        async let first = shot.value(waitingUpTo: .seconds(60))
        async let second = shot.value(waitingUpTo: .seconds(60))
        try await Task.sleep(for: .milliseconds(10))   // let them register; a set before that still counts
        shot.set("exited")
        shot.set("ignored: only the first set counts")
        #expect(await first == "exited")
        #expect(await second == "exited")
        #expect(await shot.value(waitingUpTo: .seconds(60)) == "exited", "set before the wait: at once")
        #expect(shot.value == "exited")
    }

    @Test func aCancelledWaitEndsWithNothing() async {
        let shot = OneShot<Int>()
        let waiting = Task { await shot.value(waitingUpTo: .seconds(60)) }
        waiting.cancel()
        #expect(await waiting.value == nil)
        let cancelledFirst = Task {
            withUnsafeCurrentTask { $0?.cancel() }   // cancelled before it starts waiting
            return await shot.value(waitingUpTo: .seconds(60))
        }
        #expect(await cancelledFirst.value == nil)
        shot.set(1)
        #expect(await shot.value(waitingUpTo: .seconds(60)) == 1)
    }
}
