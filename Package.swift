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
    ],
    targets: [
        .target(
            name: "KernelAgent",
            dependencies: [
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .executableTarget(
            name: "ka",
            dependencies: ["KernelAgent"]
        ),
        .testTarget(
            name: "KernelAgentTests",
            dependencies: ["KernelAgent"]
        ),
    ]
)
