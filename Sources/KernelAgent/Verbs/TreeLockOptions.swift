import ArgumentParser

/// `--no-wait`, shared by the verbs that read or change the tree.
public struct TreeLockOptions: ParsableArguments, Sendable {
    @Flag(help: "Refuse at once, instead of waiting, when another kernel-agent process holds the patch tree.")
    public var noWait = false
    public init() {}
}

/// A verb that offers `--no-wait`.
public protocol WaitsForTree {
    var lockOptions: TreeLockOptions { get }
}
