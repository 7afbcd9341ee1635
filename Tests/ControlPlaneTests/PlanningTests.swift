import Foundation
import Testing
@testable import KAControlPlane
@testable import KernelAgent

/// Planning never stalls the control loop: it runs on its own threads, with a timeout that answers with an error.
@Suite(.serialized) struct PlanningTests {
    @Test func helpIsAnsweredAtOnceWhileAPromotePlansAndTheSlowPlanTimesOut() async throws {
        let h = try Harness()
        var faults = ServeFaults()
        let planGate = FaultGate()
        defer { planGate.open() }
        faults.set(.hold(planGate), in: .plan, verb: "promote")   // a plan as slow as a YAML bomb, until the test lets it go
        try await h.start(faults: faults) { $0.planTimeout = 20 }
        let g = h.gitea
        let slow = g.createIssue(by: "markus", title: "slow")
        let promote = g.comment(by: "markus", on: slow, body: "/ka-promote ohm")
        await Harness.waitFor("the promote to be stored") { h.stored(comment: promote) }
        // the plan is held shut, so a turn that returns at all did not wait for it
        let turned = FaultGate()   // opened by the turn once it returns
        let turn = Task { await h.loop.turn(poll: false); turned.open() }
        let turnReturned = await Harness.waitFor("a turn to return while the plan is held", timeout: 60) { h.engine.plansRunning == 1 && turned.isOpened }
        await turn.value
        #expect(turnReturned, "a turn does not wait for a plan")

        // the loop keeps turning as `ka serve` does; the help must not wait behind the plan
        let driver = h.drive()
        defer { driver.cancel() }
        let other = g.createIssue(by: "markus", title: "meanwhile")
        let asked = Date()
        g.comment(by: "markus", on: other, body: "/ka-help")
        let answered = await Harness.waitFor("the help reply", timeout: 60) { !g.botComments(on: other).isEmpty }
        #expect(answered)
        let helpLatency = Date().timeIntervalSince(asked)
        // the plan is held: a help answered while it still runs did not wait for it
        #expect(g.botComments(on: slow).isEmpty && h.engine.plansRunning == 1, "the promote is still planning when the help is answered (after \(helpLatency) s)")

        await Harness.waitFor("the promote's timeout reply", timeout: 60) { !g.botComments(on: slow).isEmpty }
        let reply = try #require(g.botComments(on: slow).first).body
        #expect(reply.contains("`/ka-promote ohm`: planning did not finish within 20 s, so I stopped waiting; nothing was done."), "\(reply)")
        #expect(h.engine.plansRunning == 1, "the timeout answered while the plan still ran")
        driver.cancel()
        await driver.value
        planGate.open()
        await Harness.waitFor("the slow plan's thread to return", timeout: 60) { h.engine.plansRunning == 0 }
        await h.settleAll()
        #expect(g.botComments(on: slow).count == 1, "the late plan adds nothing")
        let state = try h.ledger.readSync { try String.fetchOne($0, sql: "SELECT state FROM runs WHERE event_key = ?", arguments: ["comment:\(promote)"]) }
        #expect(state == "failed")
    }

    @Test func planTimeoutAndTheOtherLimitsAreReadFromTheConfig() throws {
        let env = ["KA_GITEA_URL": "https://x", "KA_REPO": "a/b", "KA_GITEA_TOKEN": "t"]
        let defaults = try ControlPlaneConfig.load(file: nil, env: env)
        #expect(defaults.planTimeout == 60 && defaults.maxCommandsPerComment == 10 && defaults.replyRateLimit == ReplyRateLimit(count: 30, window: 600))
        let set = try ControlPlaneConfig.load(file: nil, env: env.merging(["KA_PLAN_TIMEOUT": "2m", "KA_MAX_COMMANDS_PER_COMMENT": "3",
                                                                           "KA_REPLY_RATE_LIMIT": "5/1h"]) { $1 })
        #expect(set.planTimeout == 120 && set.maxCommandsPerComment == 3 && set.replyRateLimit == ReplyRateLimit(count: 5, window: 3600))
        #expect(try ControlPlaneConfig.load(file: nil, env: env.merging(["KA_REPLY_RATE_LIMIT": "off"]) { $1 }).replyRateLimit == nil)
        for (k, v) in [("KA_PLAN_TIMEOUT", "soon"), ("KA_MAX_COMMANDS_PER_COMMENT", "0"), ("KA_REPLY_RATE_LIMIT", "5"), ("KA_PLAN_TIMEOUT", "9999999h")] {
            #expect(throws: KAError.self, "\(k)=\(v)") { try ControlPlaneConfig.load(file: nil, env: env.merging([k: v]) { $1 }) }
        }
    }
}
