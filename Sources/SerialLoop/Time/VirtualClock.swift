@preconcurrency import Glibc
import CSerialLoopShims
import Synchronization

// Virtual time: one component, three files.
//
// - here: `VirtualClock`, every piece of a test loop's virtual-time state, held by the loop's
//   `LoopTime` and present only on a test loop (the loops of a test group share one: their
//   clock, holds, settings and stepping requests are the group's; Group/TestLoopGroup.swift);
//   how the clock is set, and how the runtime's clocks read it;
// - TestLoop.swift: `TestLoop`, the only loop that has virtual time, and its public, test-only
//   controls (`runUntilIdle`, `advance`, `holdTime`, the settings). They are members of
//   `TestLoop`, not of `Loop`: calling them on a real loop does not compile;
// - TestLoop+IdlePolicy.swift: when the clock may jump (step 5 of a tick on a test loop), stalls,
//   and the runtime sleeps of cancelled tasks that must not count as deadlines.
// The seam the tick calls (real or virtual) is `LoopTime` (LoopTime.swift); the runtime entry
// points and libc symbols involved are listed in RUNTIME-INTERFACE.md.
//
// Virtual time moves only at step 5 of a tick, when nothing is ready, and then straight to a
// deadline: so an hour of sleeps costs as many ticks as there are wake-ups, and the timestamps a
// test observes depend only on the program, not on the machine.
//
// Exact by construction. `Task.sleep(for: d)` (and `ContinuousClock`/`SuspendingClock` sleeps)
// computes `clock.now + d` inside the Swift runtime and hands the loop only that instant. On a test
// loop's thread, while the loop runs, the runtime's clocks read *virtual* time: the C shim
// interposes `clock_gettime` (SerialLoopVirtualTime/clock.c: opt-in, see `virtualTimeIsLinked`),
// and the loop keeps a thread-local copy of its virtual time there (`installThreadClock`,
// `setVirtualNow`). So the instant the loop receives is `origin + virtualNow + d`, and converting
// it back (`deadline(for:clock:)`) gives `virtualNow + d` exactly, to the nanosecond, whatever the
// machine's load. Other threads, real loops, and the loop's own real-time needs (quiet periods,
// stall timeout: `monotonicNanoseconds`) read the real clock.
//
// "Never". A deadline that saturated to `Int64.max` (`loop.sleep(for: .seconds(Int64.max))`,
// `Task.sleep(for: .seconds(Int64.max))`) is never due: the clock never jumps to it, never reaches
// it, and such a sleep stays pending until the loop ends, where it is reported as a leftover.

/// A test loop's virtual clock: its reading and everything that decides when it moves. One per
/// `TestLoop`, held by its `LoopTime` (one for all the loops of a test group, which run on one
/// thread); a real loop has none. `nanoseconds` is readable from any
/// thread; the rest is loop-thread only.
final class VirtualClock {
    // Not `Sendable`: it is reached only through its loop, and the loop's reason for being
    // (unchecked) `Sendable` covers it — `nanoseconds` is atomic, every other property is read and
    // written on the loop's thread only (the controls callable elsewhere hop there first).

    /// Virtual time in nanoseconds since the loop's origin. Written by the loop thread.
    let nanoseconds = Atomic<Int64>(0)
    /// Tasks waiting in `runUntilIdle()`.
    @exclusivity(unchecked) var idleWaiters: [UnsafeContinuation<Void, Never>] = []
    /// A task waiting in `advance(to:)`, and its target time.
    @exclusivity(unchecked) var advanceRequest: (target: Int64, continuation: UnsafeContinuation<Void, Never>)? = nil
    /// Whether the clock jumps to the next deadline by itself when the loop is idle.
    @exclusivity(unchecked) var autoAdvance = true
    /// Active `TimeHold`s; while positive the clock does not jump by itself. (It may dip below zero
    /// for a moment when a hold taken on another thread is released on the loop thread first.)
    @exclusivity(unchecked) var holdCount = 0
    /// Real time the loop waits, while I/O is in flight, for the I/O to go quiet before it lets
    /// virtual time jump.
    @exclusivity(unchecked) var ioQuietPeriodNanoseconds: Int64 = 250_000_000
    /// Real time (CLOCK_MONOTONIC) at which the current I/O quiet period began; `nil` when the loop
    /// is not waiting for one. Readiness restarts it; cross-thread arrivals do not.
    @exclusivity(unchecked) var quietPeriodStart: Int64? = nil
    /// Real time the loop may spend waiting without virtual time moving before it declares a
    /// stall (instead of hanging the test forever).
    @exclusivity(unchecked) var stallTimeoutNanoseconds: Int64 = 30_000_000_000
    /// Real time spent parked, waiting, since virtual time last moved (or a stepping request was
    /// served). Work that runs in between does not reset it: so neither a periodic cross-thread
    /// source nor chatty I/O can keep a stuck test alive forever.
    @exclusivity(unchecked) var waitedWithoutMoving: Int64 = 0
    /// Work items that arrived from other threads since virtual time last moved (for stall reports).
    @exclusivity(unchecked) var crossThreadArrivals = 0

    /// The clock's reading. Any thread.
    @inline(__always)
    var now: Int64 { nanoseconds.load(ordering: .relaxed) }

    /// Virtual time moved, or a stepping request was served: the stall budget starts over.
    func noteProgress() {
        waitedWithoutMoving = 0
        quietPeriodStart = nil
        crossThreadArrivals = 0
    }

    /// Resumes every task waiting in `runUntilIdle()` or `advance(to:)`: the loop is shutting down
    /// and will never be idle or move again. Returns how many it resumed.
    func resumeSteppingWaitersForShutdown() -> Int {
        let waiters = idleWaiters
        idleWaiters.removeAll()
        for waiter in waiters { waiter.resume() }
        guard let request = advanceRequest else { return waiters.count }
        advanceRequest = nil
        request.continuation.resume()
        return waiters.count + 1
    }
}

/// The deadline that means "never": saturated arithmetic lands here, and the clock never does.
let neverDeadline = Int64.max

extension Loop {
    /// Makes the runtime's clocks (`ContinuousClock.now`, `SuspendingClock.now`, and everything
    /// else that reads the monotonic clocks through libc) on the calling thread read `loop`'s
    /// virtual time if it is a test loop, and real time otherwise. Called when a loop enters or
    /// leaves its thread.
    static func installThreadClock(for loop: Loop?) {
        // Tests the stored flag, as the tick does: unwrapping `time.virtual` here, inlined at the
        // top of `runTicks`, changed its register allocation (callgrind, yield: +10 instructions).
        if let loop, loop.time.isVirtual {
            _ = runtimeClocksCanBeVirtual
            c_serial_loop_set_thread_virtual_clock(true, loop.time.virtual.unsafelyUnwrapped.now)
        } else {
            c_serial_loop_set_thread_virtual_clock(false, 0)
        }
    }

    /// Whether the program links the opt-in half of virtual time (the `SerialLoopVirtualTime`
    /// product, which `SerialLoopTesting` depends on). It replaces `clock_gettime` and
    /// `swift_task_create` process-wide, so only programs that ask for virtual time carry it
    /// (RUNTIME-INTERFACE.md); without it `TestLoop()` throws, naming what to link.
    static let virtualTimeIsLinked: Bool = c_serial_loop_virtual_time_is_linked()

    /// What `TestLoop()` says in a program that does not link virtual time.
    static let virtualTimeNotLinkedReason =
        "virtual time is not linked into this program: a test target gets it by depending on the "
        + "SerialLoopTesting product (.product(name: \"SerialLoopTesting\", package: \"SerialLoop\")), any "
        + "other program by depending on SerialLoopVirtualTime (it replaces clock_gettime and "
        + "swift_task_create process-wide, so it is opt-in; it cannot be linked with --static-swift-stdlib)"

    /// Whether the interposed `clock_gettime` is the one the process uses. It is when SerialLoop is
    /// linked statically (SwiftPM's default) or as a shared library loaded before libc; if
    /// something else won the symbol lookup, plain `Task.sleep` on a test loop would sleep on
    /// real-clock deadlines, so say so once instead of producing wrong virtual times silently.
    static let runtimeClocksCanBeVirtual: Bool = {
        let interposed = c_serial_loop_clock_is_interposed()
        if !interposed {
            fputs("SerialLoop: clock_gettime is not interposed in this process (another definition won the symbol lookup): on test loops, ContinuousClock/SuspendingClock and plain Task.sleep read real time; use loop.sleep / loop.clock\n", stderr)
        }
        return interposed
    }()
}
