import SerialLoop

// Which mode this app runs in
//
// The whole program runs on one loop, on the main thread: `Loop.runMain` (main.swift) installs the
// loop as the process's main executor *and* default executor. So plain `Task { }` (one per
// request), `@MainActor` state (the request counter), the accept loop and the signal listener all
// run on that thread, in FIFO order; only the file hashing leaves it, through `loop.offload`.

/// The app's shared state: how many requests arrived and are being answered. `@MainActor`: in
/// whole-program mode the main actor *is* the loop thread, so this is loop-thread state.
@MainActor
final class RequestStats {
    private(set) var started = 0
    private(set) var inFlight = 0

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
