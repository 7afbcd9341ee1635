import ArgumentParser

/// `--no-wait`, shared by the verbs that read or change the tree.
package struct TreeLockOptions: ParsableArguments, Sendable {
    @Flag(help: "Refuse at once, instead of waiting, when another kernel-agent process holds the patch tree.")
    package var noWait = false
    package init() {}
}

/// A verb that offers `--no-wait`.
package protocol WaitsForTree {
    var lockOptions: TreeLockOptions { get }
}
