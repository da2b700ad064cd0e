// swift-tools-version: 6.0
import PackageDescription

// Integration scenarios: real servers, real clients and real libraries running on a SerialLoop.
// Everything here is driven by ./run.sh (curl, wrk, nginx, Python asyncio/uvloop).
let package = Package(
    name: "SerialLoopIntegrationTests",
    products: [
        .executable(name: "serial-loop-http-server", targets: ["SerialLoopHTTPServer"]),
        .executable(name: "nio-http-server", targets: ["NIOHTTPServer"]),
        .executable(name: "scenarios", targets: ["Scenarios"]),
        .executable(name: "simulation-scenarios", targets: ["SimulationScenarios"]),
    ],
    dependencies: [
        .package(name: "SerialLoop", path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-async-algorithms.git", from: "1.1.0"),
    ],
    targets: [
        // HTTP/1.1 on SerialLoop's socket layer: the request parser, the server, a small client.
        .target(
            name: "LoopHTTP",
            dependencies: [.product(name: "SerialLoop", package: "SerialLoop"), .product(name: "SerialLoopNet", package: "SerialLoop")]
        ),
        // The CPU work per request of the scaling figures, the same code in both servers.
        .target(name: "CPUWork"),
        // The HTTP server on a SerialLoop, as a program (curl, wrk and Python drive it); on one
        // loop, or on a `LoopGroup` with a listener per loop (`--loops N`).
        .executableTarget(
            name: "SerialLoopHTTPServer",
            dependencies: ["LoopHTTP", "CPUWork", .product(name: "SerialLoop", package: "SerialLoop"), .product(name: "SerialLoopNet", package: "SerialLoop")]
        ),
        // The same routes on SwiftNIO, one event-loop thread (or `--threads N`): the wrk baseline.
        .executableTarget(
            name: "NIOHTTPServer",
            dependencies: [
                "CPUWork",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        // How a scenario program reports its checks ("ok"/"FAIL", exit status).
        .target(name: "ScenarioCheck"),
        // LoopHTTP over SerialLoopNetSimulation's simulated network on virtual time (and, with the
        // same code, over real loopback sockets): no SwiftNIO, so it builds quickly on its own.
        .executableTarget(
            name: "SimulationScenarios",
            dependencies: [
                "LoopHTTP", "ScenarioCheck",
                .product(name: "SerialLoop", package: "SerialLoop"),
                .product(name: "SerialLoopNet", package: "SerialLoop"),
                .product(name: "SerialLoopNetSimulation", package: "SerialLoop"),
            ]
        ),
        // Scenarios that run inside one program: fan-out client, async-algorithms on loop time,
        // awaiting NIO futures from the loop, a child process's stdout read through the loop.
        .executableTarget(
            name: "Scenarios",
            dependencies: [
                "LoopHTTP", "ScenarioCheck",
                .product(name: "SerialLoop", package: "SerialLoop"),
                .product(name: "SerialLoopNet", package: "SerialLoop"),
                // Some scenarios run on virtual time, which a program opts into.
                .product(name: "SerialLoopVirtualTime", package: "SerialLoop"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "AsyncAlgorithms", package: "swift-async-algorithms"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
