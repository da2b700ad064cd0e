@preconcurrency import Glibc
import CSerialLoopShims
// Links libdispatch, which exports the main-queue hooks declared in the C shim.
import Dispatch

// A loop on the main thread serves the main actor
//
// On Linux the main actor's executor is Dispatch's main queue: `@MainActor` jobs and
// `DispatchQueue.main.async` blocks wait there until something drains it on the main thread —
// `dispatch_main()`, Foundation's `RunLoop`, or nothing at all while the main thread sits inside a
// sync `withLoop` (the program then hangs without a word). libdispatch has a hook for foreign run
// loops, the one swift-corelibs-foundation's RunLoop uses: `_dispatch_get_main_queue_handle_4CF()`
// is an eventfd that becomes readable when the main queue has work, and
// `_dispatch_main_queue_callback_4CF()` drains the queue on the main thread.
//
// So a loop that starts turning on the main thread registers that eventfd as a reader callback
// with its own reactor. Its readiness is delivered at step 6 of a tick like any descriptor's, and
// the drain runs as an ordinary callback on the ready queue: main-actor work runs on the loop
// thread, in FIFO order with the loop's other work. On a test loop the eventfd is polled before
// every clock jump (step 1 of `idleOnVirtualTime`), so the clock never jumps over pending
// main-queue work, and since only the loop thread enqueues it in a deterministic program, traces
// stay the same run to run.
//
// Invariants and hazards:
// - Only the process's initial thread may drain the main queue, and only before `dispatch_main()`
//   (libdispatch crashes otherwise: the main queue is no longer bound to the thread). A thread whose
//   Linux thread id is the process id is that thread, and if it runs a loop, `dispatch_main()`
//   was never entered: that function never returns (it parks the thread for good).
// - The drain is not reentrant; libdispatch itself ignores a nested call. A main-queue block that
//   starts another sync loop is refused anyway (no nested loops on one thread).
// - The registration lives as long as the loop's epoll set: it is made once, the first time the
//   loop turns on the main thread, and ends when the loop shuts down (closing the set drops it).
//   Shutdown's drain therefore still serves main-actor work, so cancelled tasks can unwind through it.
// - It is the loop's own descriptor, not I/O in flight: it does not count for the test loop's
//   quiet period, nor as a leftover.
//
// - Cost: a descriptor in the epoll set means a non-blocking `epoll_wait` on every busy tick (step 5
//   polls I/O even when work is ready). Measured on this VM that is ~1 µs, four times a whole
//   `Task.yield()` — so when the main queue's descriptor is the only one watched, a real-time loop
//   polls it on one busy tick in `mainQueueBusyPollInterval` (main-queue work then waits at most
//   that many ticks, tens of microseconds, under constant load) and on every tick where it would
//   park. (One in 64 still cost ~30 ns per `Task.yield()`, about 10 %; one in 256 is in the noise.)
//   A test loop polls every tick, so main-queue work keeps its exact place in the FIFO order.
//
// Where the main actor cannot be served (a sync loop on another thread while the main thread is
// blocked), a test loop's stall report says so when the main queue has work waiting.

extension Loop {
    /// Registers Dispatch's main-queue descriptor with the reactor if this loop turns on the main
    /// thread (once per loop). Called as the loop starts turning; loop thread only.
    func serveMainQueueIfOnMainThread() {
        guard !servesMainQueue, c_serial_loop_is_main_thread() else { return }
        let fd = _dispatch_get_main_queue_handle_4CF()
        guard fd >= 0 else { return }
        // The callback reads the eventfd before draining; never block there.
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 && flags & O_NONBLOCK == 0 { _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
        do {
            try reactor.setCallback({ drainMainQueue(fd) }, fd: fd, for: .read, operation: "serving Dispatch's main queue (eventfd \(fd))")
            servesMainQueue = true
        } catch {
            fputs("SerialLoop: could not watch Dispatch's main queue (\(error)); @MainActor work will not run while this loop runs on the main thread\n", stderr)
        }
    }

    /// Busy ticks (work ready) between two non-blocking polls of the main-queue descriptor, when it is
    /// the only descriptor watched on a real-time loop.
    static let mainQueueBusyPollInterval = 256

    /// Whether this busy tick may skip its non-blocking poll: only when the main queue's descriptor
    /// is all the kernel watches, on a real-time loop, and not for the `mainQueueBusyPollInterval`-th
    /// tick in a row. Loop thread only.
    @inline(__always)
    func defersBusyPoll() -> Bool {
        guard servesMainQueue, timeMode == .real, reactor.kernelRegistrationCount == 1 else { return false }
        busyTicksSinceMainQueuePoll &+= 1
        if busyTicksSinceMainQueuePoll < Self.mainQueueBusyPollInterval { return true }
        busyTicksSinceMainQueuePoll = 0
        return false
    }

    /// Whether Dispatch's main queue has work that nothing is draining right now, for stall reports
    /// of loops that do not serve it. Best effort: the descriptor is only looked at (a zero-timeout
    /// `poll`), never read.
    var mainQueueHasUnservedWork: Bool {
        guard !servesMainQueue else { return false }
        let fd = _dispatch_get_main_queue_handle_4CF()
        guard fd >= 0 else { return false }
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return Glibc.poll(&entry, 1, 0) == 1 && entry.revents & Int16(POLLIN) != 0
    }

    /// The sentence a test loop's stall report adds when the main actor may be what it waits for.
    var mainActorStallHint: String {
        guard mainQueueHasUnservedWork else { return "" }
        return "; Dispatch's main queue has work that nothing drains: a task may be waiting for the main actor (a @MainActor function, MainActor.run, DispatchQueue.main) while the main thread is blocked — run the loop on the main thread (sync withLoop/withTestLoop there, or Loop.runMain), or keep the body off the main actor"
    }
}

/// Resets the eventfd, then drains the main queue. Reading first means a block enqueued during
/// the drain writes the eventfd again, so no wake-up is lost.
private func drainMainQueue(_ fd: Int32) {
    var counter: UInt64 = 0
    _ = read(fd, &counter, MemoryLayout<UInt64>.size)
    _dispatch_main_queue_callback_4CF(nil)
}
