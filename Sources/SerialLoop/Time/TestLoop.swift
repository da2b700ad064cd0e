import Synchronization

// The test-facing side of virtual time: the loop type that has it, stepping the clock by hand,
// holding it, and the settings. The state these act on is `VirtualClock` (VirtualClock.swift), the
// rules they obey are in TestLoop+IdlePolicy.swift.
//
// Why a subclass of `Loop` rather than a wrapper around one: a test loop *is* a loop — the same
// executor, the same identity for `Task(executorPreference:)`, `withTaskExecutorPreference` and
// actors on it, every `Loop` API — so a test uses it exactly as it would use a real loop and reaches
// the controls on the same value (`loop.advance(by:)`). A wrapper would need every `Loop` API
// forwarded (dynamic member lookup reaches neither methods nor `async` members) or a second name in
// every test. `Loop` is `public` but not `open`, so `TestLoop` is its only subclass, and every
// member declared in `Loop`'s body is `final`: the plain path dispatches exactly as before.

/// A loop on virtual time, with the controls only a test needs: step the clock by hand
/// (``advance(by:)``, ``runUntilIdle()``), hold it (``holdTime()``), or tune when it may jump by
/// itself (``autoAdvancesTime``, ``ioQuietPeriod``, ``stallTimeout``).
///
/// A `TestLoop` is a ``Loop``: everything a real loop does, it does, on a clock that starts at zero
/// and moves only when the loop is idle (see <doc:TestingWithVirtualTime>). The controls are members
/// of `TestLoop` alone, so calling them on a real loop does not compile. Get one from
/// ``withTestLoop(_:)-17bdc`` (or its async twin), from the `.testLoop` trait of `SerialLoopTesting`
/// (`TestLoop.current`), or create one on the current thread with ``init()`` and run it as any loop.
public final class TestLoop: Loop, @unchecked Sendable {
    // Safe as `Loop` is (the compiler wants the inherited conformance restated): its one stored
    // property (`runtimeSleepOwners`) and its clock state (the `VirtualClock` its `LoopTime` holds)
    // are touched on the loop's thread only (every control callable elsewhere hops there first).

    /// The test loop the calling code runs on (``Loop/current``, typed `TestLoop`); off any loop,
    /// in a test with the `.testLoop` trait of `SerialLoopTesting` (and the tasks that inherit its
    /// task-locals), that test's loop; else `nil`. In a `.testLoop` test:
    /// `let loop = try #require(TestLoop.current)`.
    public override class var current: TestLoop? {
        (super.current as? TestLoop) ?? TestLoopOfTest.loop
    }

    /// Creates a test loop owned by the calling thread (see ``Loop/init()``).
    /// - Throws: ``LoopError`` if the program does not link virtual time (the `SerialLoopTesting`
    ///   or `SerialLoopVirtualTime` product; the error says which to add), or if the kernel refuses
    ///   the epoll or eventfd descriptor.
    public convenience init() throws(LoopError) {
        try self.init(virtualClock: VirtualClock())
    }

    /// A test loop on `virtualClock`: a new clock of its own, or the one the loops of a test group
    /// share (Group/TestLoopGroup.swift).
    override init(virtualClock: VirtualClock?) throws(LoopError) {
        if !Loop.virtualTimeIsLinked {
            throw LoopError(.virtualTimeNotLinked, operation: "TestLoop()", reason: Loop.virtualTimeNotLinkedReason)
        }
        try super.init(virtualClock: virtualClock)
    }

    /// The task that started each pending runtime sleep (`Task.sleep` & co.) of this loop, by the
    /// loop's own timer IDs (which is why it is the loop's, not the clock's: the loops of a test
    /// group share a clock, not their timer queues). Storing an `UnsafeCurrentTask` retains the
    /// task (its only stored property is a strong reference), and `isCancelled` is among the APIs
    /// the standard library documents as safe from any context. Entries of sleeps that already
    /// fired are swept lazily (see `noteRuntimeSleep`). Loop thread only.
    @exclusivity(unchecked) final var runtimeSleepOwners: [TimerID: UnsafeCurrentTask] = [:]

    /// The virtual clock (a test loop always has one).
    var virtualClock: VirtualClock { time.virtual.unsafelyUnwrapped }

    // MARK: Stepping

    /// Suspends until the loop is idle: no ready work, no due timer, no ready I/O — without moving
    /// the clock. Exact quiescence, no yield counting. On a loop that has shut down it returns at
    /// once (so does ``advance(to:)``).
    /// Callable from any task (a task on the loop, or the test itself from outside it).
    public func runUntilIdle() async {
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            onLiveLoop({ self.virtualClock.idleWaiters.append(continuation) }, orElse: { continuation.resume() })
        }
    }

    /// Moves virtual time forward by `duration`, firing every timer due on the way in
    /// `(deadline, sequence)` order and letting the work they wake run before the next one fires.
    /// Returns when the clock reads the target and the loop is idle.
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
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            onLiveLoop({
                misuseCheck(self.virtualClock.advanceRequest == nil, "TestLoop.advance(to:) called while another advance is in progress")
                self.virtualClock.advanceRequest = (deadline.nanosecondsSinceOrigin, continuation)
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
    /// stall.
    public func holdTime() -> TimeHold {
        onLoopThread { self.virtualClock.holdCount += 1 }
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
        preconditionOnLoopThread("TestLoop.isTimeHeld")
        return virtualClock.holdCount > 0
    }

    // MARK: Settings

    /// Whether the clock jumps to the next deadline by itself when idle (default `true`).
    /// Turn it off to drive time only with ``advance(by:)`` / ``advance(to:)``. Loop thread only.
    public var autoAdvancesTime: Bool {
        get { preconditionOnLoopThread("TestLoop.autoAdvancesTime"); return virtualClock.autoAdvance }
        set { preconditionOnLoopThread("TestLoop.autoAdvancesTime"); virtualClock.autoAdvance = newValue }
    }

    /// How much real time the loop may spend waiting while its virtual time cannot move — nothing
    /// scheduled, a hold nobody releases, I/O that never goes quiet — before it declares a stall and
    /// `withTestLoop` throws, naming what kept it (default 30 s). The waits add up until virtual
    /// time moves again, whatever ran in between. Loop thread only.
    public var stallTimeout: Duration {
        get { preconditionOnLoopThread("TestLoop.stallTimeout"); return .nanoseconds(virtualClock.stallTimeoutNanoseconds) }
        set { preconditionOnLoopThread("TestLoop.stallTimeout"); virtualClock.stallTimeoutNanoseconds = max(0, newValue.saturatingNanoseconds) }
    }

    /// How long (real time) the descriptors must stay quiet before the loop lets virtual time
    /// jump while I/O is in flight (a task waits on a descriptor, or a reader/writer callback is
    /// installed); readiness restarts it (default 250 ms). Raise it when the other side is slow (a
    /// child process, a loaded CI machine); `.zero` turns the wait off. Work arriving from other
    /// threads does not delay jumps: hold time for that (``holdTime()``). Loop thread only.
    public var ioQuietPeriod: Duration {
        get { preconditionOnLoopThread("TestLoop.ioQuietPeriod"); return .nanoseconds(virtualClock.ioQuietPeriodNanoseconds) }
        set { preconditionOnLoopThread("TestLoop.ioQuietPeriod"); virtualClock.ioQuietPeriodNanoseconds = max(0, newValue.saturatingNanoseconds) }
    }
}

/// Keeps a test loop's clock from jumping by itself until released (see ``TestLoop/holdTime()``).
public final class TimeHold: Sendable {
    private let loop: TestLoop
    private let isReleased = Atomic<Bool>(false)

    init(loop: TestLoop) {
        self.loop = loop
    }

    /// Ends the hold. Any thread; releasing twice is harmless.
    public func release() {
        guard !isReleased.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let loop = self.loop
        loop.onLoopThread { loop.virtualClock.holdCount -= 1 }
    }
}

/// The `.testLoop` trait's loop, bound by the trait (SerialLoopTesting) for the test and the tasks
/// that inherit its task-locals: what `TestLoop.current` falls back to off the loop's thread.
package enum TestLoopOfTest {
    @TaskLocal package static var loop: TestLoop?
}
