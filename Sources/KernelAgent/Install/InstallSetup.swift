import Foundation

/// What `ka install <host>`'s plan and steps read.
package struct InstallSetup: Sendable {
    let target: HostName
    let manifest: Manifest
    let pipeline: PipelineConfig
    let signing: PipelineConfig.Signing
    let privilege: [String]
    /// The open installable the plan pins; nil when none is open (the plan refuses; a resumed job reads its note).
    let installable: InstallableRecord?
    var repoDir: String { signing.repoDir }
}
