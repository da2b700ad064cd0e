// swift-tools-version: 6.2
import PackageDescription

let package = Package(
    name: "SerialLoop",
    products: [
        .library(name: "SerialLoop", targets: ["SerialLoop"]),
        // TCP sockets over the loop's public readiness API (`TCPListener`, `TCPConnection`).
        .library(name: "SerialLoopNet", targets: ["SerialLoopNet"]),
        // A deterministic simulated network under the unchanged SerialLoopNet API, on a test
        // loop's virtual time (hosts, latency, partitions, crashes). Links virtual time.
        .library(name: "SerialLoopNetSimulation", targets: ["SerialLoopNetSimulation"]),
        // The `.testLoop` Swift Testing trait, and virtual time (it depends on SerialLoopVirtualTime).
        // Testing ships with the toolchain: no package dependency.
        .library(name: "SerialLoopTesting", targets: ["SerialLoopTesting"]),
        // Virtual time (test loops, `withTestLoop`, `Loop.runMain(time: .virtual)`) for a program
        // that is not a Swift Testing target. Linking it replaces `clock_gettime` and
        // `swift_task_create` process-wide (RUNTIME-INTERFACE.md); programs that do not link it
        // replace nothing.
        .library(name: "SerialLoopVirtualTime", targets: ["SerialLoopVirtualTime"]),
        // The only executables a user sees. The test fixtures and CI tools (SerialLoopModes*,
        // SerialLoopLeakCheck, SerialLoopTorture) are executable targets without a product: in this
        // package SwiftPM still builds each as a program named after its target
        // (`swift build --product SerialLoopTorture` → .build/debug/SerialLoopTorture), but a package
        // that depends on SerialLoop cannot see them.
        .executable(name: "serial-loop-demo", targets: ["SerialLoopDemo"]),
        .executable(name: "serial-loop-app", targets: ["SerialLoopApp"]),
    ],
    targets: [
        // epoll / eventfd declarations (Glibc does not expose them to Swift), the global-enqueue
        // hook, and weak references to the opt-in half of virtual time. Defines no libc or
        // runtime symbol.
        .target(name: "CSerialLoopShims"),
        // The opt-in half of virtual time: the interposed clock_gettime (the runtime's clocks read
        // virtual time on a test loop's thread) and swift_task_create (marks task creation).
        .target(name: "SerialLoopVirtualTime"),
        // The async-signal-safe handler behind `loop.signals(...)` (a self-pipe writer); no other logic.
        .target(name: "CSerialLoopSignals"),
        .target(name: "SerialLoop", dependencies: ["CSerialLoopShims", "CSerialLoopSignals"]),
        .target(name: "SerialLoopNet", dependencies: ["SerialLoop", "CSerialLoopShims"]),
        .target(name: "SerialLoopNetSimulation", dependencies: ["SerialLoop", "SerialLoopNet", "SerialLoopVirtualTime"]),
        .executableTarget(name: "SerialLoopDemo", dependencies: ["SerialLoop"]),
        // Many loops created, run and torn down, for the leak check in .ci/reliability.sh.
        .executableTarget(name: "SerialLoopLeakCheck", dependencies: ["SerialLoop", "SerialLoopVirtualTime"]),
        // The randomized API torture test (issue 9): run by .ci/run, seeded and replayable.
        .executableTarget(name: "SerialLoopTorture", dependencies: ["SerialLoop", "SerialLoopVirtualTime"]),
        // An example app on one loop thread: HTTP on the socket layer, offload, signals.
        .executableTarget(name: "SerialLoopApp", dependencies: ["SerialLoop", "SerialLoopNet"]),
        .target(name: "SerialLoopTesting", dependencies: ["SerialLoop", "SerialLoopVirtualTime"]),
        // Test fixtures for the process-wide modes (a loop on the main thread, the whole program on
        // one loop): programs run in child processes by ModeTests, since an install cannot be undone
        // inside the test process. Top-level code, a sync @main, an async @main.
        .target(name: "SerialLoopModeScenarios", dependencies: ["SerialLoop"]),
        .executableTarget(name: "SerialLoopModes", dependencies: ["SerialLoop", "SerialLoopVirtualTime", "SerialLoopModeScenarios"]),
        // Links no virtual time: it also checks what a program that did not opt in gets.
        .executableTarget(name: "SerialLoopModesMain", dependencies: ["SerialLoop", "SerialLoopModeScenarios"]),
        .executableTarget(name: "SerialLoopModesAsyncMain", dependencies: ["SerialLoop", "SerialLoopVirtualTime", "SerialLoopModeScenarios"]),
        .testTarget(name: "SerialLoopTests", dependencies: [
            "SerialLoop", "SerialLoopNet", "SerialLoopNetSimulation", "SerialLoopTesting",
            // Declared so that building the tests builds the fixtures they spawn.
            "SerialLoopModes", "SerialLoopModesMain", "SerialLoopModesAsyncMain",
        ]),
    ],
    swiftLanguageModes: [.v6]
)
