import ArgumentParser
import Foundation

// Verbs whose pipelines land with later issues. Their arguments and help are final; `plan` refuses with
// "not available yet" after validating the arguments, so none of them can pretend to work.

func jobID(_ raw: String) throws -> String {
    guard !raw.isEmpty, raw.count <= 100, raw.first != "-",
          raw.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == ".") }) else {
        throw KAError.refusal("job '\(raw)'", "not a valid job id", hint: "job ids look like fresnel-20260509-1")
    }
    return raw
}

func duration(_ raw: String?) throws {
    guard let raw else { return }
    guard Duration.parseSeconds(raw) != nil else { throw KAError.refusal("--for \(raw)", "not a duration", hint: "use e.g. 6h, 2d or 30m") }
}

/// `ka pause-prune`
public struct PausePruneVerb: Verb {
    public static let configuration = CommandConfiguration(commandName: "pause-prune", abstract: "Pause pruning of build dirs, backups and archives.")
    public init() {}
    public var lane: Lane { .none }
    public func policySubject(in ctx: VerbContext) throws -> PolicySubject { PolicySubject() }
    public func plan(in ctx: VerbContext) async throws -> Plan { throw Verbs.notAvailable("pause-prune", "pruning (issue 9: retention) has not landed; ka keep already marks trees it must leave") }
    public func run(_ plan: Plan, in ctx: VerbContext) async throws -> VerbOutcome { throw Verbs.notAvailable("pause-prune", "pruning (issue 9: retention) has not landed; ka keep already marks trees it must leave") }
}

/// `ka resume-prune`
public struct ResumePruneVerb: Verb {
    public static let configuration = CommandConfiguration(commandName: "resume-prune", abstract: "Resume pruning after pause-prune.")
    public init() {}
    public var lane: Lane { .none }
    public func policySubject(in ctx: VerbContext) throws -> PolicySubject { PolicySubject() }
    public func plan(in ctx: VerbContext) async throws -> Plan { throw Verbs.notAvailable("resume-prune", "pruning (issue 9: retention) has not landed; ka keep already marks trees it must leave") }
    public func run(_ plan: Plan, in ctx: VerbContext) async throws -> VerbOutcome { throw Verbs.notAvailable("resume-prune", "pruning (issue 9: retention) has not landed; ka keep already marks trees it must leave") }
}

/// `ka restore-archive <job-id>`
public struct RestoreArchiveVerb: Verb {
    public static let configuration = CommandConfiguration(commandName: "restore-archive", abstract: "Restore a build job from hertz:/sparfuxdata/kernel-agent-archive/<job-id>/.")
    @Argument(help: "Build job id.") public var job: String
    public init() {}
    public var lane: Lane { .none }
    public func policySubject(in ctx: VerbContext) throws -> PolicySubject { _ = try jobID(job); return PolicySubject() }
    public func plan(in ctx: VerbContext) async throws -> Plan { throw Verbs.notAvailable("restore-archive", "archives (issue 9: retention) have not landed") }
    public func run(_ plan: Plan, in ctx: VerbContext) async throws -> VerbOutcome { throw Verbs.notAvailable("restore-archive", "archives (issue 9: retention) have not landed") }
}

