import Synchronization

// The test-facing side of virtual time: stepping the clock by hand, holding it, and the settings.
// The rules these obey are in Loop+VirtualTime.swift and Loop+IdlePolicy.swift.

extension Loop {
    // MARK: Stepping

    /// Suspends until the loop is idle: no ready work, no due timer, no ready I/O — without moving
    /// the clock. Exact quiescence, no yield counting. Test loops only. On a loop that has shut
    /// down it returns at once (so does ``advance(to:)``).
    /// Callable from any task (a task on the loop, or the test itself from outside it).
    public func runUntilIdle() async {
        preconditionVirtual("runUntilIdle()")
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            onLiveLoop({ self.time.virtual.idleWaiters.append(continuation) }, orElse: { continuation.resume() })
        }
    }

    /// Moves virtual time forward by `duration`, firing every timer due on the way in
    /// `(deadline, sequence)` order and letting the work they wake run before the next one fires.
    /// Returns when the clock reads the target and the loop is idle. Test loops only.
    /// Callable from any task; one advance at a time (two at once trap).
    /// - Parameter duration: how far to move the clock; `.seconds(Int64.max)` fires every finite timer.
    public func advance(by duration: Duration) async {
        await advance(to: now.advanced(by: duration))
    }

    /// Moves virtual time forward to `deadline` (see ``advance(by:)``). A deadline in the past
    /// only runs the loop until idle. Time holds and quiet periods do not delay an explicit advance.
    /// A deadline of "never" (one that saturated, as `advance(by: .seconds(Int64.max))` does) fires
    /// every finite timer and leaves the clock at the last one: the clock never reaches "never".
    /// Callable from any task; one advance at a time (two at once trap).
    /// - Parameter deadline: the loop time to move the clock to.
    public func advance(to deadline: LoopClock.Instant) async {
        preconditionVirtual("advance(to:)")
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            onLiveLoop({
                misuseCheck(self.time.virtual.advanceRequest == nil, "Loop.advance(to:) called while another advance is in progress")
                self.time.virtual.advanceRequest = (deadline.nanosecondsSinceOrigin, continuation)
            }, orElse: { continuation.resume() })
        }
    }

    // MARK: Holding time

    /// Stops the clock from jumping by itself until the returned hold is released — for a test that
    /// started work the loop cannot see (a helper thread, a child process, Dispatch) and that will
    /// come back. Work arriving from other threads does not hold time by itself: this is how a test
    /// says "wait for it". ``advance(by:)`` still moves time. Holds nest (a count).
    ///
    /// On the loop thread the hold takes effect at once; from another thread, on the loop's next
    /// tick. Release it with ``TimeHold/release()`` (any thread, idempotent) or use
    /// ``holdingTime(isolation:_:)``. A loop that waits for ``stallTimeout`` while held declares a
    /// stall. Test loops only.
    public func holdTime() -> TimeHold {
        preconditionVirtual("holdTime()")
        onLoopThread { self.time.virtual.holdCount += 1 }
        return TimeHold(loop: self)
    }

    /// Runs `body` with the clock held (see ``holdTime()``): no automatic jump happens until it
    /// returns or throws.
    /// Callable from any task.
    /// - Parameters:
    ///   - isolation: the caller's isolation (leave the default).
    ///   - body: the work the test waits for.
    /// - Returns: what `body` returned.
    /// - Throws: what `body` throws.
    public func holdingTime<T, E: Error>(
        isolation: isolated (any Actor)? = #isolation,
        _ body: () async throws(E) -> T
    ) async throws(E) -> T {
        let hold = holdTime()
        defer { hold.release() }
        return try await body()
    }

    /// Whether a ``TimeHold`` is active. Loop thread only.
    public var isTimeHeld: Bool {
        preconditionOnLoopThread("Loop.isTimeHeld")
        return time.virtual.holdCount > 0
    }

    // MARK: Settings

    /// Whether a test loop's clock jumps to the next deadline by itself when idle (default `true`).
    /// Turn it off to drive time only with ``advance(by:)`` / ``advance(to:)``. Loop thread only.
    public var autoAdvancesTime: Bool {
        get { preconditionOnLoopThread("Loop.autoAdvancesTime"); return time.virtual.autoAdvance }
        set { preconditionOnLoopThread("Loop.autoAdvancesTime"); time.virtual.autoAdvance = newValue }
    }

    /// How much real time a test loop may spend waiting while its virtual time cannot move — nothing
    /// scheduled, a hold nobody releases, I/O that never goes quiet — before it declares a stall and
    /// `withTestLoop` throws, naming what kept it (default 30 s). The waits add up until virtual
    /// time moves again, whatever ran in between. Loop thread only.
    public var stallTimeout: Duration {
        get { preconditionOnLoopThread("Loop.stallTimeout"); return .nanoseconds(time.virtual.stallTimeoutNanoseconds) }
        set { preconditionOnLoopThread("Loop.stallTimeout"); time.virtual.stallTimeoutNanoseconds = max(0, newValue.saturatingNanoseconds) }
    }

    /// How long (real time) the descriptors must stay quiet before a test loop lets virtual time
    /// jump while I/O is in flight (a task waits on a descriptor, or a reader/writer callback is
    /// installed); readiness restarts it (default 250 ms). Raise it when the other side is slow (a
    /// child process, a loaded CI machine); `.zero` turns the wait off. Work arriving from other
    /// threads does not delay jumps: hold time for that (``holdTime()``). Loop thread only.
    public var ioQuietPeriod: Duration {
        get { preconditionOnLoopThread("Loop.ioQuietPeriod"); return .nanoseconds(time.virtual.ioQuietPeriodNanoseconds) }
        set { preconditionOnLoopThread("Loop.ioQuietPeriod"); time.virtual.ioQuietPeriodNanoseconds = max(0, newValue.saturatingNanoseconds) }
    }
}

/// Keeps a test loop's clock from jumping by itself until released (see ``Loop/holdTime()``).
public final class TimeHold: Sendable {
    private let loop: Loop
    private let isReleased = Atomic<Bool>(false)

    init(loop: Loop) {
        self.loop = loop
    }

    /// Ends the hold. Any thread; releasing twice is harmless.
    public func release() {
        guard !isReleased.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let loop = self.loop
        loop.onLoopThread { loop.time.virtual.holdCount -= 1 }
    }
}
