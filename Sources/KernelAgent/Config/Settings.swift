import Foundation

/// `KA_CONFIG`, read once at the composition root (the CLI's context, `ka serve`'s start) and carried by
/// `VerbContext`: every section the verbs and their steps read, so a step reads what its plan read.
package struct Settings: Sendable {
    /// The file it came from; nil: no `KA_CONFIG`, every default.
    package let file: String?
    package let agent: AgentConfig
    package let pipeline: PipelineConfig
    package let his: HisConfig?
    /// The environment the file was read with: His's bearer token and a stdio His's own environment.
    package let env: [String: String]

    package init(file: String?, agent: AgentConfig, pipeline: PipelineConfig, his: HisConfig?, env: [String: String]) {
        self.file = file; self.agent = agent; self.pipeline = pipeline; self.his = his; self.env = env
    }

    /// No file: the defaults under the state dir.
    package static func defaults(stateDir: URL, env: [String: String] = [:]) -> Settings {
        Settings(file: nil, agent: .defaults(stateDir: stateDir), pipeline: .none, his: nil, env: env)
    }

    /// The file `KA_CONFIG` names, read once and parsed by each section's reader, or the defaults.
    package static func load(env: [String: String] = ProcessInfo.processInfo.environment, stateDir: URL) throws -> Settings {
        guard let path = env["KA_CONFIG"], !path.isEmpty else { return defaults(stateDir: stateDir, env: env) }
        // the file is read once; each section's reader parses the text
        let text = try AgentConfig.readText(path, via: "KA_CONFIG")
        let his = try YAMLValue.parse(text, file: path).mapping(allowed: AgentConfig.topLevelKeys)["his"].map(HisConfig.parse)
        return Settings(file: path, agent: try AgentConfig.parse(text, file: path, stateDir: stateDir),
                        pipeline: try PipelineConfig.parse(text, file: path), his: his, env: env)
    }

    /// His as the `his:` section describes it (nil without one). `allowDestructive`: see `MCPHisOps`.
    package func hisClient(allowDestructive: Set<HisTool> = []) throws -> (any HisOps)? {
        try his.map { try MCPHisOps(config: $0, env: env, allowDestructive: allowDestructive) }
    }
}

/// Where a context's `Settings` come from: read once, on first use, and shared by everything made from the same
/// source (the CLI's context and its transports; every context of one `ka serve`).
package final class SettingsSource: Sendable {
    private let memo = Memo<Settings>()
    private let load: @Sendable () throws -> Settings

    package init(_ load: @escaping @Sendable () throws -> Settings) { self.load = load }

    /// Settings already read.
    package convenience init(_ settings: Settings) { self.init({ settings }) }

    /// `KA_CONFIG` from the process environment.
    package static func environment(stateDir: URL) -> SettingsSource {
        SettingsSource { try Settings.load(stateDir: stateDir) }
    }

    package func get() throws -> Settings { try memo.value(load) }
}
