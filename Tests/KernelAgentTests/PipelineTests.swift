import ArgumentParser
import Foundation
import Testing
@testable import KernelAgent

/// Issue 18: one pipeline for both front doors. A job verb whose plan refuses with a block request files it, once,
/// where blocks are filed (the bot's context); consented pins are compared in one place; inline and job verbs come
/// out as the same `Performed`.
@Suite struct PipelineTests {
    /// A job verb whose plan refuses and asks for a [ka:bootstrap-missing] block (as a missing toolchain would).
    struct RefusingJobVerb: JobVerb {
        static let configuration = CommandConfiguration(commandName: "refusing-job")
        @Argument var host: HostName
        init() {}
        var lane: Lane { .host(host) }
        var jobSubject: String { host.value }
        var arguments: [String] { [host.value] }
        func policySubject(in ctx: VerbContext) throws -> PolicySubject { PolicySubject() }
        func steps(in ctx: VerbContext) throws -> [JobStep] {
            throw KAError(.refusal, ["host \(host)", "has no compiler"], hint: "install one",
                          blocks: [BlockRequest(kind: .bootstrapMissing, scope: .buildHost(host.value), title: "\(host): no compiler", body: "install gcc")])
        }
        func summary(of job: JobRecord, in ctx: VerbContext) -> String { "done" }
    }

    /// A job verb with one step that counts its runs.
    struct CountingJobVerb: JobVerb {
        static let configuration = CommandConfiguration(commandName: "counting-job")
        @Argument var host: HostName
        init() {}
        var lane: Lane { .host(host) }
        var jobSubject: String { host.value }
        var arguments: [String] { [host.value] }
        func policySubject(in ctx: VerbContext) throws -> PolicySubject { PolicySubject() }
        func steps(in ctx: VerbContext) throws -> [JobStep] {
            [JobStep("count", lanes: [], resumption: .rerun) { _ in "counted" }]
        }
        func summary(of job: JobRecord, in ctx: VerbContext) -> String { "counting \(host): \(job.state.rawValue)" }
    }

    @Test func aBotRunJobRefusedWithABlockRequestFilesTheBlockOnce() async throws {
        let s = try Sandbox(copyShipped: false)
        let botContext = VerbContext(workspace: s.ws, state: s.store, blocks: s.store, fileBlocksOnRefusal: true)
        let verb = try RefusingJobVerb.parse(["bob"])
        // proposed (/ka-refusing-job bob) and then performed after a /ka-yes: refused both times
        await #expect(throws: KAError.self) { _ = try await VerbPipeline.propose(verb, in: botContext) }
        await #expect(throws: KAError.self) {
            _ = try await VerbPipeline.perform(verb, consented: [], origin: .issue(7, run: 1), in: botContext)
        }
        let filed = try s.store.openBlocks().filter { $0.kind == .bootstrapMissing }
        #expect(filed.count == 1 && filed.first?.scope == .buildHost("bob"), "\(filed)")
        // the bare CLI files nothing
        let t = try Sandbox(copyShipped: false)
        await #expect(throws: KAError.self) { _ = try await VerbPipeline.perform(verb, consented: nil, origin: .cli(user: "t"), in: t.ctx) }
        #expect(try t.store.openBlocks().isEmpty)
    }

    @Test func aJobVerbComesOutAsAJobAndConsentedPinsAreComparedOnce() async throws {
        let s = try Sandbox(copyShipped: false)
        let ctx = s.ctx   // one context: one job store
        let verb = try CountingJobVerb.parse(["bob"])
        guard case let .job(job, spec) = try await VerbPipeline.perform(verb, consented: nil, arguments: ["bob"], origin: .cli(user: "t"), in: ctx) else {
            Issue.record("not a job"); return
        }
        #expect(job.arguments == ["bob"] && job.steps.map(\.name) == ["count"])
        let ended = try await VerbPipeline.run(job, steps: spec.steps, observer: nil, in: ctx)
        #expect(ended.state == .succeeded && spec.summary(ended, ctx) == "counting bob: succeeded")
        // an inline verb: promote's pins, consented, then one of its inputs moves
        let t = try PromoteTests.tree()
        let promote = try PromoteVerb.parse(["h1"])
        let plan = try await VerbPipeline.propose(promote, arguments: ["h1"], in: t.ctx)
        #expect(plan.arguments == ["h1"])
        try t.write("fleet/h1.yaml", try t.read("fleet/h1.yaml") + "\n# a comment changes the manifest's bytes\n")
        guard case let .consentVoid(changed) = try await VerbPipeline.perform(promote, consented: plan.pins, origin: .issue(1, run: 1), in: t.ctx) else {
            Issue.record("a moved input did not void the consent"); return
        }
        #expect(changed.count == 1 && changed[0].hasPrefix("fleet/h1.yaml: b2:"), "\(changed)")
        #expect(!t.exists("build/h1/v7.0/manifest.lock"), "nothing ran")
        // the same pins, consented afresh: it runs
        let fresh = try await VerbPipeline.propose(promote, in: t.ctx)
        guard case .done = try await VerbPipeline.perform(promote, consented: fresh.pins, origin: .issue(1, run: 2), in: t.ctx) else {
            Issue.record("the consented plan did not run"); return
        }
        #expect(t.exists("build/h1/v7.0/manifest.lock"))
    }

    @Test func namesParseAsThemselvesSoABadOneIsAUsageError() throws {
        for args in [["build", "Bad_Host"], ["promote", "../etc"], ["install", "x_y"], ["verify", "UPPER"], ["preflight", "a b"]] {
            let type = try #require(Verbs.named(args[0]))
            do {
                _ = try Verbs.parse(type, Array(args.dropFirst()))
                Issue.record("\(args) parsed")
            } catch {
                let text = Verbs.usageReply(type, error: error)
                #expect(text.contains("The value '\(args[1])' is invalid for '<host>'"), "\(args): \(text)")
            }
        }
        #expect(HostName(argument: "fresnel")?.value == "fresnel" && HostName(argument: "Fresnel") == nil)
        #expect(CampaignName(argument: "ohm_gl_fix") != nil && CampaignName(argument: "../x") == nil)
        #expect(JobID(argument: "fresnel-20261130-1412-a3f9") != nil && JobID(argument: "x;y") == nil)
    }
}

/// Issue 18, item 5: an error keeps its cause; its words do not change.
@Suite struct ErrorCauseTests {
    @Test func aFailureKeepsTheErrorUnderneathAndItsText() throws {
        let s = try Sandbox(copyShipped: false)
        try s.write("not-a-dir", "a file where the state dir would be\n")
        let ws = Workspace(root: s.root, stateDir: s.url("not-a-dir/state"))
        do {
            _ = try TreeLock.acquire(ws, access: .read, state: nil, holder: "test")
            Issue.record("a lock dir under a file was created")
        } catch let e as KAError {
            #expect(e.message.contains("cannot create the lock dir: "), "\(e.message)")
            let cause = try #require(e.rootCause, "the file-system error is kept")
            #expect(!(cause is KAError))
            #expect(e.within("ka promote").rootCause != nil, "a wrapped error keeps it too")
            #expect(e == KAError(e.kind, e.chain, hint: e.hint), "the cause is not part of equality")
        }
    }
}
