import SerialLoop

// Which mode this app runs in
//
// The whole app runs on one loop, on the main thread, entered with the sync `withLoop` (see
// main.swift): the accept loop, every request task, the request counter and the signal listener
// all run on that thread; only the file hashing leaves it, through `loop.offload`.
//
// Two small stand-ins keep that true in this mode, and they are the only places a switch to
// whole-program mode (the loop installed as the program's main and default executor) touches:
// - `RequestStats` is an actor whose executor is the loop. In whole-program mode it is plain
//   `@MainActor` state: the main actor is then the loop thread, so the state stays where it is.
// - `spawn { }` is `Task(executorPreference: loop) { }`. In whole-program mode it is a plain
//   `Task { }`; in this mode a plain `Task { }` would escape to Swift's global executor (SE-0417)
//   and run its request on another thread.

/// The app's shared state: how many requests arrived and are being answered.
actor RequestStats {
    let loop: Loop
    private(set) var started = 0
    private(set) var inFlight = 0

    init(loop: Loop) { self.loop = loop }

    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }

    /// Counts a request in; returns its number (1, 2, …).
    func begin() -> Int {
        started += 1
        inFlight += 1
        return started
    }

    func end() {
        inFlight -= 1
    }
}

/// Starts a task for one request, on the loop.
@discardableResult
func spawn(on loop: Loop, _ body: @escaping @Sendable () async -> Void) -> Task<Void, Never> {
    Task(executorPreference: loop, operation: body)
}
