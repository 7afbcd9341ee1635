// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "kernel-agent",
    platforms: [.macOS(.v14)],
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
            ]
        ),
        .executableTarget(
            name: "ka",
            dependencies: ["KernelAgent", "KAControlPlane"],
            plugins: ["GitCommitStamp"]
        ),
        .plugin(name: "GitCommitStamp", capability: .buildTool()),
        .testTarget(
            name: "KernelAgentTests",
            dependencies: ["KernelAgent"]
        ),
        .testTarget(
            name: "ControlPlaneTests",
            dependencies: [
                "KernelAgent", "KAControlPlane",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            // the stand-in shares mutable state across handlers under one lock; v5 mode keeps it readable
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
    ]
)
