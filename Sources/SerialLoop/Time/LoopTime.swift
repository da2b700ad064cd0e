@preconcurrency import Glibc
import CSerialLoopShims
import Synchronization

// The loop's time, behind one seam
//
// `LoopTime` is the only part of the loop that knows which clock it runs on. The tick asks it three
// things and never branches on the mode itself:
// - `nowForTick(hasTimers:)`: the one reading of the clock that phase 2 collects due timers with;
// - `waitWhenIdle(on:)`: phase 5 with nothing ready — a real loop parks until the next deadline
//   (or until woken); a test loop applies its idle policy (TestLoop+IdlePolicy.swift): jump the
//   clock, serve stepping requests, or park while it may not move;
// - `now()`: a fresh reading, for `loop.now` and for deadlines computed inside a job (a job may run
//   long: `schedule(after:)` counts from when it is called, not from when the tick began).
//
// Virtual time is one component (VirtualClock.swift): its state is the `VirtualClock` this holds
// on a test loop (`nil` on a real loop), its rules and controls are members of `TestLoop`.
//
// A final class with a stored mode, not a protocol: the real-time tick calls it with static,
// inlinable dispatch (an existential clock costs a witness-table call per reading).

/// The loop's clock: real (CLOCK_MONOTONIC) or virtual. Immutable mode. Reached only through its
/// loop (not `Sendable` itself: see `VirtualClock`).
final class LoopTime {
    /// A test loop's virtual clock; `nil` on a real loop. The one owner of virtual-time state.
    let virtual: VirtualClock?
    /// Whether this is a test loop's clock (`virtual != nil`), stored: the real-time paths test one
    /// flag and never unwrap the optional.
    let isVirtual: Bool

    /// `virtual`: the test loop's clock (shared by the loops of a test group); `nil` for real time.
    init(virtual: VirtualClock?) {
        self.virtual = virtual
        isVirtual = virtual != nil
    }

    var mode: Loop.TimeMode { isVirtual ? .virtual : .real }

    /// The loop's time now: monotonic on a real loop, virtual on a test loop. Any thread.
    @inline(__always)
    func now() -> Int64 {
        isVirtual ? virtual.unsafelyUnwrapped.now : monotonicNanoseconds()
    }

    /// Phase 1 of a tick: the reading phase 2 collects due timers with. A real loop with no timer
    /// pending skips the system call (nothing could be due).
    @inline(__always)
    func nowForTick(hasTimers: Bool) -> Int64 {
        if isVirtual { return virtual.unsafelyUnwrapped.now }
        return hasTimers ? monotonicNanoseconds() : 0
    }

    /// Phase 5 of a tick when no work is ready: wait for the next deadline, I/O, or a wake-up (a real
    /// loop), or let the test loop's idle policy decide (TestLoop+IdlePolicy.swift).
    func waitWhenIdle(on loop: Loop) {
        // Only a `TestLoop` has a virtual clock (its initializer is the only one that asks for one).
        if isVirtual { return unsafeDowncast(loop, to: TestLoop.self).idleOnVirtualTime() }
        guard let deadline = loop.timers.nextDeadline else {
            loop.parkAndPoll(timeoutNanoseconds: nil)
            return
        }
        let timeout = max(0, deadline.saturatingSubtract(monotonicNanoseconds()))
        if timeout == 0 {
            if loop.reactor.hasKernelInterest { loop.poll(timeoutNanoseconds: 0) }
            return
        }
        loop.parkAndPoll(timeoutNanoseconds: timeout)
    }

    /// Work arrived from another thread (the tick's inbox drain). It does not hold a test loop's
    /// time: it is only counted, for stall reports.
    @inline(__always)
    func noteCrossThreadArrival() {
        if isVirtual { virtual.unsafelyUnwrapped.crossThreadArrivals &+= 1 }
    }
}

/// Reads `CLOCK_MONOTONIC` in nanoseconds: the one place the real clock is read (through `LoopTime`
/// for loop time; directly for real durations — polls, quiet periods, stall budgets, job timings).
/// It bypasses the interposed `clock_gettime` (SerialLoopVirtualTime/clock.c), if linked: on a test loop's thread
/// the runtime's clocks read virtual time, but the loop's own real-time measurements are real.
@inline(__always)
func monotonicNanoseconds() -> Int64 {
    var spec = timespec()
    c_serial_loop_real_clock_gettime(CLOCK_MONOTONIC, &spec)
    return Int64(spec.tv_sec) &* 1_000_000_000 &+ Int64(spec.tv_nsec)
}

extension Loop {
    /// How the loop's clock moves.
    public enum TimeMode: Sendable, Equatable {
        /// Monotonic wall time.
        case real
        /// Virtual time starting at zero: it moves only when the loop is idle. A loop on virtual time
        /// is a ``TestLoop``, which has the controls (see ``withTestLoop(_:)-17bdc``).
        case virtual
    }

    /// Whether the loop runs on real or virtual time.
    public var timeMode: TimeMode { time.mode }
}
