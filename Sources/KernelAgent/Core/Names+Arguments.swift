import ArgumentParser

// Names that a verb takes as arguments parse as themselves: a bad one is a usage error from the verb's own parser,
// the same text at the CLI and in the bot (which parses `/ka-<verb>` arguments with it), before any plan.
// `init?(argument:)` returns nil for an invalid name on purpose: ArgumentParser then names the value and the argument.

extension HostName: ExpressibleByArgument {
    package init?(argument: String) {
        guard Self.isValid(argument) else { return nil }
        value = argument
    }
}

extension CampaignName: ExpressibleByArgument {
    package init?(argument: String) {
        do { self = try CampaignName(argument) } catch { return nil }
    }
}

extension JobID: ExpressibleByArgument {
    package init?(argument: String) {
        do { self = try JobID(argument) } catch { return nil }
    }
}
