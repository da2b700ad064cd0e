// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "SerialLoop",
    products: [
        .library(name: "SerialLoop", targets: ["SerialLoop"]),
        .executable(name: "serial-loop-demo", targets: ["SerialLoopDemo"]),
        .executable(name: "serial-loop-leak-check", targets: ["SerialLoopLeakCheck"]),
    ],
    targets: [
        // epoll / eventfd declarations only: Glibc does not expose them to Swift.
        .target(name: "CSerialLoopShims"),
        .target(name: "SerialLoop", dependencies: ["CSerialLoopShims"]),
        .executableTarget(name: "SerialLoopDemo", dependencies: ["SerialLoop"]),
        // Many loops created, run and torn down, for the leak check in .ci/reliability.sh.
        .executableTarget(name: "SerialLoopLeakCheck", dependencies: ["SerialLoop"]),
        .testTarget(name: "SerialLoopTests", dependencies: ["SerialLoop"]),
    ],
    swiftLanguageModes: [.v6]
)
