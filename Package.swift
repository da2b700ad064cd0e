// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "SerialLoop",
    products: [
        .library(name: "SerialLoop", targets: ["SerialLoop"]),
        // The `.testLoop` Swift Testing trait. Testing ships with the toolchain: no package dependency.
        .library(name: "SerialLoopTesting", targets: ["SerialLoopTesting"]),
        .executable(name: "serial-loop-demo", targets: ["SerialLoopDemo"]),
        .executable(name: "serial-loop-leak-check", targets: ["SerialLoopLeakCheck"]),
        .executable(name: "serial-loop-app", targets: ["SerialLoopApp"]),
    ],
    targets: [
        // epoll / eventfd declarations only: Glibc does not expose them to Swift.
        .target(name: "CSerialLoopShims"),
        // The async-signal-safe handler behind `loop.signals(...)` (a self-pipe writer); no other logic.
        .target(name: "CSerialLoopSignals"),
        .target(name: "SerialLoop", dependencies: ["CSerialLoopShims", "CSerialLoopSignals"]),
        .executableTarget(name: "SerialLoopDemo", dependencies: ["SerialLoop"]),
        // Many loops created, run and torn down, for the leak check in .ci/reliability.sh.
        .executableTarget(name: "SerialLoopLeakCheck", dependencies: ["SerialLoop"]),
        // An example app on one loop thread: HTTP on the socket layer, offload, signals.
        .executableTarget(name: "SerialLoopApp", dependencies: ["SerialLoop"]),
        .target(name: "SerialLoopTesting", dependencies: ["SerialLoop"]),
        .testTarget(name: "SerialLoopTests", dependencies: ["SerialLoop", "SerialLoopTesting"]),
    ],
    swiftLanguageModes: [.v6]
)
