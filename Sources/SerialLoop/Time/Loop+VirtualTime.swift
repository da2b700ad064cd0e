@preconcurrency import Glibc
import CSerialLoopShims

// The test loop's clock, in one place. The rules are split over four files:
//
// - here: the clock's state, how it is set, and how the runtime's clocks read it;
// - Loop+IdlePolicy.swift: when the clock may jump (step 5 of a tick on a test loop), stalls;
// - Loop+Stepping.swift: the test-facing API (`runUntilIdle`, `advance`, `holdTime`, settings);
// - Loop+RuntimeSleeps.swift: plain `Task.sleep` on the loop, and its dead sleeps.
// The seam the tick calls (real or virtual) is `LoopTime` (LoopTime.swift).
//
// Virtual time moves only at step 5 of a tick, when nothing is ready, and then straight to a
// deadline: so an hour of sleeps costs as many ticks as there are wake-ups, and the timestamps a
// test observes depend only on the program, not on the machine.
//
// Exact by construction. `Task.sleep(for: d)` (and `ContinuousClock`/`SuspendingClock` sleeps)
// computes `clock.now + d` inside the Swift runtime and hands the loop only that instant. On a test
// loop's thread, while the loop runs, the runtime's clocks read *virtual* time: the C shim
// interposes `clock_gettime` (SerialLoopVirtualTime/clock.c: opt-in, see `virtualTimeIsLinked`), and the loop keeps a thread-local copy of
// its virtual time there (`installThreadClock`, `setVirtualNow`). So the instant the loop receives
// is `origin + virtualNow + d`, and converting it back (`deadline(for:clock:)`) gives
// `virtualNow + d` exactly, to the nanosecond, whatever the machine's load. Other threads, real
// loops, and the loop's own real-time needs (quiet periods, stall timeout: `monotonicNanoseconds`)
// read the real clock.
//
// "Never". A deadline that saturated to `Int64.max` (`loop.sleep(for: .seconds(Int64.max))`,
// `Task.sleep(for: .seconds(Int64.max))`) is never due: the clock never jumps to it, never reaches
// it, and such a sleep stays pending until the loop ends, where it is reported as a leftover.
//
// Runtime sleeps of cancelled tasks are set aside before a jump: Loop+RuntimeSleeps.swift.

/// Virtual-time control for test loops. Loop thread only.
struct VirtualClockState {
    /// Tasks waiting in `runUntilIdle()`.
    var idleWaiters: [UnsafeContinuation<Void, Never>] = []
    /// A task waiting in `advance(to:)`, and its target time.
    var advanceRequest: (target: Int64, continuation: UnsafeContinuation<Void, Never>)? = nil
    /// Whether the clock jumps to the next deadline by itself when the loop is idle.
    var autoAdvance = true
    /// Active `TimeHold`s; while positive the clock does not jump by itself. (It may dip below zero
    /// for a moment when a hold taken on another thread is released on the loop thread first.)
    var holdCount = 0
    /// Real time the loop waits, while I/O is in flight, for the I/O to go quiet before it lets
    /// virtual time jump.
    var ioQuietPeriodNanoseconds: Int64 = 250_000_000
    /// Real time (CLOCK_MONOTONIC) at which the current I/O quiet period began; `nil` when the loop
    /// is not waiting for one. Readiness restarts it; cross-thread arrivals do not.
    var quietPeriodStart: Int64? = nil
    /// Real time the loop may spend waiting without virtual time moving before it declares a
    /// stall (instead of hanging the test forever).
    var stallTimeoutNanoseconds: Int64 = 30_000_000_000
    /// Real time spent parked, waiting, since virtual time last moved (or a stepping request was
    /// served). Work that runs in between does not reset it: so neither a periodic cross-thread
    /// source nor chatty I/O can keep a stuck test alive forever.
    var waitedWithoutMoving: Int64 = 0
    /// Work items that arrived from other threads since virtual time last moved (for stall reports).
    var crossThreadArrivals = 0
    /// The task that started each pending runtime sleep (`Task.sleep` & co.). Storing an
    /// `UnsafeCurrentTask` retains the task (its only stored property is a strong reference), and
    /// `isCancelled` is among the APIs the standard library documents as safe from any context.
    /// Entries of sleeps that already fired are swept lazily (see `noteRuntimeSleep`).
    var runtimeSleepOwners: [TimerID: UnsafeCurrentTask] = [:]
}

/// The deadline that means "never": saturated arithmetic lands here, and the clock never does.
let neverDeadline = Int64.max

extension Loop {
    /// Moves virtual time. Loop thread only, while the loop runs on it (the thread-local copy the
    /// runtime's clocks read is this thread's).
    /// - Precondition: `nanoseconds` is not "never" and not in the past.
    func setVirtualNow(_ nanoseconds: Int64) {
        assert(nanoseconds < neverDeadline && nanoseconds >= time.virtualNanoseconds.load(ordering: .relaxed), "virtual time must move forward and never reach 'never'")
        assert(c_serial_loop_current_loop() == Unmanaged.passUnretained(self).toOpaque(), "virtual time set off the thread the loop runs on: the runtime's clocks there would not follow")
        time.virtualNanoseconds.store(nanoseconds, ordering: .relaxed)
        c_serial_loop_set_thread_virtual_nanoseconds(nanoseconds)
        noteVirtualProgress()
    }

    /// Makes the runtime's clocks (`ContinuousClock.now`, `SuspendingClock.now`, and everything
    /// else that reads the monotonic clocks through libc) on the calling thread read `loop`'s
    /// virtual time if it is a test loop, and real time otherwise. Called when a loop enters or
    /// leaves its thread.
    static func installThreadClock(for loop: Loop?) {
        if let loop, loop.time.isVirtual {
            _ = runtimeClocksCanBeVirtual
            c_serial_loop_set_thread_virtual_clock(true, loop.time.virtualNanoseconds.load(ordering: .relaxed))
        } else {
            c_serial_loop_set_thread_virtual_clock(false, 0)
        }
    }

    /// Whether the program links the opt-in half of virtual time (the `SerialLoopVirtualTime`
    /// product, which `SerialLoopTesting` depends on). It replaces `clock_gettime` and
    /// `swift_task_create` process-wide, so only programs that ask for virtual time carry it
    /// (RUNTIME-INTERFACE.md); without it `Loop(time: .virtual)` throws, naming what to link.
    static let virtualTimeIsLinked: Bool = c_serial_loop_virtual_time_is_linked()

    /// What `Loop(time: .virtual)` says in a program that does not link virtual time.
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

    func preconditionVirtual(_ operation: String) {
        misuseCheck(time.isVirtual, "Loop.\(operation) needs a test loop (virtual time); this loop runs on real time")
    }
}
