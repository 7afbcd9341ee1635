import Foundation
import PackagePlugin

/// Stamps the git commit the binary is built from into `GitCommit.swift` (`ka --version` prints it). Runs before
/// every build; the file is rewritten only when the commit changes, so an unchanged tree rebuilds nothing.
@main
struct GitCommitStamp: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let out = context.pluginWorkDirectoryURL.appendingPathComponent("generated")
        // A fixed script; the package dir and the output dir come in as its arguments, never inside the text.
        let script = """
        c=$(git -C "$1" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
        git -C "$1" diff --quiet HEAD -- Sources Package.swift 2>/dev/null || c="$c-dirty"
        mkdir -p "$2"
        new="let kaGitCommit = \\"$c\\""
        [ "$(cat "$2/GitCommit.swift" 2>/dev/null)" = "$new" ] || printf '%s\\n' "$new" > "$2/GitCommit.swift"
        """
        return [.prebuildCommand(displayName: "Stamp the git commit", executable: URL(fileURLWithPath: "/bin/sh"),
                                 arguments: ["-c", script, "sh", context.package.directoryURL.path, out.path],
                                 outputFilesDirectory: out)]
    }
}
