// swift-tools-version: 6.0
import PackageDescription

// Ecosystem scenarios (issue 14): SerialLoop beside the libraries a Swift server already uses —
// AsyncHTTPClient, swift-subprocess, Hummingbird 2, swift-prometheus (through the SerialLoopMetrics
// bridge), swift-clocks, swift-service-lifecycle (through SerialLoopLifecycle). A package of its own
// so that the other integration scenarios do not build these; driven by ../run.sh (debug build).
let package = Package(
    name: "SerialLoopEcosystemScenarios",
    products: [
        .executable(name: "ecosystem-scenarios", targets: ["EcosystemScenarios"]),
    ],
    dependencies: [
        .package(name: "SerialLoop", path: "../.."),
        .package(name: "SerialLoopExtensions", path: "../../Extensions"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/swiftlang/swift-subprocess.git", from: "1.0.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/pointfreeco/swift-clocks.git", from: "1.1.1"),
    ],
    targets: [
        .executableTarget(
            name: "EcosystemScenarios",
            dependencies: [
                .product(name: "SerialLoop", package: "SerialLoop"),
                .product(name: "SerialLoopNet", package: "SerialLoop"),
                // The clocks scenario runs on virtual time, which a program opts into.
                .product(name: "SerialLoopVirtualTime", package: "SerialLoop"),
                .product(name: "SerialLoopLogging", package: "SerialLoopExtensions"),
                .product(name: "SerialLoopMetrics", package: "SerialLoopExtensions"),
                .product(name: "SerialLoopLifecycle", package: "SerialLoopExtensions"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Clocks", package: "swift-clocks"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
