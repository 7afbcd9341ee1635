import Foundation

/// What `ka build <host>`'s plan and steps read: cheap, local, no network.
package struct BuildSetup: Sendable {
    let target: HostName
    let entry: HostEntry
    let manifest: Manifest
    let lockURL: URL
    let cumulativeURL: URL
    let candidates: [HostName]
    let pipeline: PipelineConfig
    let flavour: PackageRenderer.Flavour
    /// The user's own recipe (`package.template_at`), stamped instead of rendering packaging/.
    let recipe: RecipeTemplate?
    /// KA_CONFIG's `hosts.<target>.stock_kernel`: what a replace-mode package replaces.
    let stockKernel: String?
}
