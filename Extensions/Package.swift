// swift-tools-version: 6.0
import PackageDescription

// Bridges from SerialLoop to the Swift server ecosystem, one library product each. The root package
// stays dependency-free: whoever wants a bridge adds this package and names the product.
let package = Package(
    name: "SerialLoopExtensions",
    products: [
        // The loop's debug-mode reports (slow jobs, late timers, abandoned work) as swift-log records.
        .library(name: "SerialLoopLogging", targets: ["SerialLoopLogging"]),
        // `loop.metrics` published as swift-metrics counters, gauges and timers, with a `loop` dimension.
        .library(name: "SerialLoopMetrics", targets: ["SerialLoopMetrics"]),
        // A swift-service-lifecycle `Service` that runs a loop and its work inside a `ServiceGroup`.
        .library(name: "SerialLoopLifecycle", targets: ["SerialLoopLifecycle"]),
    ],
    dependencies: [
        .package(name: "SerialLoop", path: ".."),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    ],
    targets: [
        .target(
            name: "SerialLoopLogging",
            dependencies: [
                .product(name: "SerialLoop", package: "SerialLoop"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "SerialLoopMetrics",
            dependencies: [
                .product(name: "SerialLoop", package: "SerialLoop"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),
        .target(
            name: "SerialLoopLifecycle",
            dependencies: [
                .product(name: "SerialLoop", package: "SerialLoop"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "SerialLoopExtensionsTests",
            dependencies: [
                "SerialLoopLogging", "SerialLoopMetrics", "SerialLoopLifecycle",
                .product(name: "SerialLoop", package: "SerialLoop"),
                // The tests run loops in virtual time (opt-in: SerialLoopTesting links it).
                .product(name: "SerialLoopTesting", package: "SerialLoop"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
