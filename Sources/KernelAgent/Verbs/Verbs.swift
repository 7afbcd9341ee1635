import ArgumentParser

/// The verbs of the seed, in the order `ka --help` lists them.
package enum Verbs {
    package static let all: [any Verb.Type] = [
        PromoteVerb.self, ImportVerb.self, CloseVerb.self, AbandonVerb.self, StatusVerb.self, MigrateTreeVerb.self, AdoptVerb.self,
        BuildVerb.self, InstallVerb.self, VerifyVerb.self, YankVerb.self, KeepVerb.self, PruneVerb.self, PausePruneVerb.self, ResumePruneVerb.self,
        RestoreArchiveVerb.self, SnoozeVerb.self, DebugVerb.self, WakeDataVerb.self,
        PreflightVerb.self, ProbeVerb.self, JobsVerb.self, BlocksVerb.self,
    ]

    package static func named(_ name: String) -> (any Verb.Type)? { all.first { $0.verbName == name } }

    package static var names: [String] { all.map { $0.verbName } }

    package static var abstracts: [(String, String)] { all.map { ($0.verbName, $0.configuration.abstract) } }

    /// Parses `args` with the verb's own ArgumentParser definition (the control plane's front door).
    package static func parse(_ type: any Verb.Type, _ args: [String]) throws -> any Verb {
        func open<V: Verb>(_ t: V.Type) throws -> any Verb { try t.parse(args) }
        return try open(type)
    }

    /// The verb's own error text and help for bad arguments.
    package static func usageReply(_ type: any Verb.Type, error: Error) -> String {
        func open<V: Verb>(_ t: V.Type) -> String {
            "\(t.message(for: error))\n\n```\n\(t.helpMessage(columns: 100))\n```"
        }
        return open(type)
    }

    package static func help(_ type: any Verb.Type) -> String {
        func open<V: Verb>(_ t: V.Type) -> String { t.helpMessage(columns: 100) }
        return open(type)
    }

    /// Refusal shared by the verbs whose pipeline has not landed yet.
    package static func notAvailable(_ verb: String, _ lands: String) -> KAError {
        KAError(.notAvailable, ["ka \(verb)", "not available yet: \(lands)"],
                hint: "nothing was done; the arguments were checked and are kept in the verb's help (ka \(verb) --help)")
    }
}
