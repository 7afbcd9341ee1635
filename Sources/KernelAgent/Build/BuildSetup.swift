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
    /// The toolchain prefix of each candidate build host of another arch than the target's (it cross-builds).
    var crossPrefixes: [HostName: String] = [:]

    /// What the build on `host` exports besides the job's own variables (`.ka-env`): for a cross-build, Kbuild's
    /// ARCH and CROSS_COMPILE, and the package's arch for makepkg.
    func buildEnvironment(on host: HostName) -> String {
        guard let prefix = crossPrefixes[host] else { return "" }
        return "ARCH=\(entry.arch.kernelArch)\nCROSS_COMPILE=\(prefix)\nKA_CARCH=\(entry.arch.rawValue)\n"
    }

    /// Bar 0 for this build: the manifest's `verify.bar0`; skipped when it says so, when KA_CONFIG's
    /// `build.bar0.skip` does, or when the target's arch has no qemu machine Bar 0 knows.
    var bar0: (spec: Bar0Spec, origin: String) {
        let file = manifest.file
        if case .skip = manifest.bar0 { return (manifest.bar0, file) }
        if let reason = pipeline.build.bar0Skip { return (.skip(reason: reason), "KA_CONFIG build.bar0") }
        guard entry.arch == .aarch64 else { return (.skip(reason: "Bar 0 boots aarch64 kernels only, and \(target) is \(entry.arch.rawValue)"), "kernel-agent") }
        return (manifest.bar0, file)
    }
}
