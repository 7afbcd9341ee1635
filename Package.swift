// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "kernel-agent",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "ka", targets: ["ka"]),
        .library(name: "KernelAgent", targets: ["KernelAgent"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2"),
        // His's ops over MCP (Sources/KernelAgent/His)
        .package(url: "https://github.com/modelcontextprotocol/swift-sdk", exact: "0.12.1"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),   // the SDK's StdioTransport takes FileDescriptors
        // the dashboard page's templates (Sources/KAControlPlane/Dashboard)
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
        // imported by the control plane directly (they came through Hummingbird undeclared)
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        // the bot's Gitea client (Sources/KAControlPlane/Gitea), on the same event loops as the server
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
    ],
    targets: [
        // renameat2(RENAME_EXCHANGE), which Swift's Glibc module does not export
        .target(name: "CKernelAgentShims"),
        .target(
            name: "KernelAgent",
            dependencies: [
                "CKernelAgentShims",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "MCP", package: "swift-sdk"),
                .product(name: "SystemPackage", package: "swift-system"),
                // the one lock type: NIOLockedValueBox, a pthread mutex ThreadSanitizer sees (it misses Mutex's futex)
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        .target(
            name: "KAControlPlane",
            dependencies: [
                "KernelAgent",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]
        ),
        .executableTarget(
            name: "ka",
            dependencies: ["KernelAgent", "KAControlPlane", .product(name: "Logging", package: "swift-log")],
            plugins: ["GitCommitStamp"]
        ),
        // scripts/bench-transport's harness: N remote calls through the transport, timed.
        .executableTarget(name: "ka-bench-transport", dependencies: ["KernelAgent"]),
        // scripts/bench-dashboard's harness: GET / against GET /healthz, and the dashboard issue during a burst.
        .executableTarget(name: "ka-bench-dashboard", dependencies: [
            "KernelAgent", "KAControlPlane", .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"), .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ]),
        .plugin(name: "GitCommitStamp", capability: .buildTool()),
        // What both test targets share: the blocking runner of external tools, offPool, and the fakes (a scripted
        // transport, probe host and His), which stay out of what ships.
        .target(name: "KATestSupport", dependencies: ["KernelAgent", .product(name: "NIOConcurrencyHelpers", package: "swift-nio")],
                path: "Tests/TestSupport"),
        .testTarget(
            name: "KernelAgentTests",
            dependencies: ["KernelAgent", "KATestSupport", .product(name: "GRDB", package: "GRDB.swift"),
                           .product(name: "NIOConcurrencyHelpers", package: "swift-nio")]
        ),
        .testTarget(
            name: "ControlPlaneTests",
            dependencies: [
                "KernelAgent", "KAControlPlane", "KATestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
        ),
    ]
)

// libFuzzer targets (scripts/fuzz), one per input reader. They exist only with KA_FUZZ=1, built in their own
// scratch path (.build-fuzz), so the normal build and `swift test` never see them. Our two modules get
// coverage and ASan instrumentation; the dependencies are built as usual. Both SwiftPM and libFuzzer bring a
// main(): each fuzz target's main.swift starts libFuzzer's driver, so either one runs the fuzzer (lld links
// the pair; gold fails on it). `ka` cannot link against instrumented modules, so this build leaves it out.
if Context.environment["KA_FUZZ"] == "1" {
    package.products.removeAll { $0.name == "ka" }
    package.targets.removeAll { $0.name == "ka" || $0.name == "ka-bench-transport" || $0.name == "ka-bench-dashboard" }
    let instrumented: [SwiftSetting] = [.unsafeFlags(["-sanitize=fuzzer,address", "-O"])]
    for target in package.targets where target.name == "KernelAgent" || target.name == "KAControlPlane" {
        target.swiftSettings = (target.swiftSettings ?? []) + instrumented
    }
    package.targets.append(.systemLibrary(name: "CLibFuzzer", path: "Sources/Fuzz/CLibFuzzer"))
    package.targets.append(.target(name: "FuzzSupport", dependencies: ["KernelAgent", "CLibFuzzer"],
                                   path: "Sources/Fuzz/FuzzSupport", swiftSettings: instrumented))
    let fuzzers: [(name: String, reads: Target.Dependency)] = [
        ("FuzzCommand", "KAControlPlane"), ("FuzzWebhook", "KAControlPlane"), ("FuzzManifest", "KernelAgent"),
        ("FuzzHosts", "KernelAgent"), ("FuzzPatch", "KernelAgent"), ("FuzzTrailer", "KernelAgent"), ("FuzzProbe", "KernelAgent"),
    ]
    for fuzzer in fuzzers {
        package.targets.append(.executableTarget(
            name: fuzzer.name, dependencies: [fuzzer.reads, "FuzzSupport"], path: "Sources/Fuzz/\(fuzzer.name)",
            swiftSettings: instrumented,
            linkerSettings: [.unsafeFlags(["-sanitize=fuzzer,address", "-use-ld=lld"])]))
        package.products.append(.executable(name: fuzzer.name, targets: [fuzzer.name]))
    }
}
