// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "SerialLoop",
    products: [
        .library(name: "SerialLoop", targets: ["SerialLoop"]),
        .executable(name: "serial-loop-demo", targets: ["SerialLoopDemo"]),
    ],
    targets: [
        // epoll / eventfd declarations only: Glibc does not expose them to Swift.
        .target(name: "CSerialLoopShims"),
        .target(name: "SerialLoop", dependencies: ["CSerialLoopShims"]),
        .executableTarget(name: "SerialLoopDemo", dependencies: ["SerialLoop"]),
        .testTarget(name: "SerialLoopTests", dependencies: ["SerialLoop"]),
    ],
    swiftLanguageModes: [.v6]
)
