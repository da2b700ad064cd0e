// swift-tools-version: 6.0
import PackageDescription

// Side-by-side benchmarks: SerialLoop against SwiftNIO's event loop, Swift's default executor, a
// bare "floor" executor and raw epoll. Run everything with ./run.sh (see README.md).
let package = Package(
    name: "SerialLoopBenchmarks",
    dependencies: [
        .package(name: "SerialLoop", path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
    ],
    targets: [
        // epoll for the raw-epoll floor, and a malloc counter (interposes malloc in this executable).
        .target(name: "CBenchmarkShims"),
        .executableTarget(
            name: "SerialLoopBenchmarks",
            dependencies: [
                "CBenchmarkShims",
                .product(name: "SerialLoop", package: "SerialLoop"),
                .product(name: "SerialLoopNet", package: "SerialLoop"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
