@preconcurrency import Glibc
import Dispatch
import SerialLoop

// Scenarios for the child-process tests of the loop's process-wide modes (Tests/SerialLoopTests/
// ModeTests.swift). Each prints a trace, one `name: value` line per step, and exits 0 only if every
// step ran where it should. Thread identity is `pthread_self()` compared with the main thread's.

/// The main thread, captured when the program starts (`ModeTrace.start()` on the main thread).
nonisolated(unsafe) private var mainThread = pthread_self()

/// Collects a scenario's trace and prints it; `finish()` exits 1 if a step failed.
public enum ModeTrace {
    nonisolated(unsafe) private static var failed = false

    /// Call first, on the main thread.
    public static func start() {
        mainThread = pthread_self()
        setvbuf(stdout, nil, _IOLBF, 0)
    }

    public static var onMainThread: Bool { pthread_equal(pthread_self(), mainThread) != 0 }

    /// Prints `name: value`.
    public static func record(_ name: String, _ value: String) {
        print("\(name): \(value)")
    }

    /// Prints `name: main-thread` or `name: OTHER-THREAD` (and marks the run failed).
    public static func where_(_ name: String, onMain: Bool = ModeTrace.onMainThread) {
        if !onMain { failed = true }
        print("\(name): \(onMain ? "main-thread" : "OTHER-THREAD")")
    }

    public static func check(_ name: String, _ ok: Bool) {
        if !ok { failed = true }
        print("\(name): \(ok ? "ok" : "FAILED")")
    }

    public static func finish() -> Never {
        fflush(stdout)
        exit(failed ? 1 : 0)
    }
}

/// Any `@MainActor` function: where does it run?
@MainActor public func mainActorStep() -> Bool {
    ModeTrace.onMainThread
}

/// Synchronous code that claims the main actor (traps if the runtime disagrees).
public func assumeMainActor() -> Bool {
    MainActor.assumeIsolated { mainActorStep() }
}

/// A block on Dispatch's main queue, awaited.
public func dispatchMainStep() async -> Bool {
    await withCheckedContinuation { continuation in
        DispatchQueue.main.async { continuation.resume(returning: ModeTrace.onMainThread) }
    }
}

public actor Counter {
    var value = 0
    public init() {}
    public func increment() -> (Int, Bool) {
        value += 1
        return (value, ModeTrace.onMainThread)
    }
}

/// The main-thread scenario (a loop on the main thread serves the main actor): the issue's example,
/// plus `DispatchQueue.main`, `MainActor.run`, and `MainActor.assumeIsolated` in a loop callback.
public func mainThreadScenario(_ loop: Loop) async throws -> Int {
    try await Task.sleep(for: .milliseconds(20))
    ModeTrace.where_("after Task.sleep")
    ModeTrace.where_("@MainActor function", onMain: await mainActorStep())
    ModeTrace.where_("DispatchQueue.main.async", onMain: await dispatchMainStep())
    ModeTrace.where_("MainActor.run", onMain: await MainActor.run { ModeTrace.onMainThread })
    // From Swift's global pool while the loop is parked: the eventfd wakes it.
    ModeTrace.where_("MainActor.run from Task.detached", onMain: await Task.detached { await MainActor.run { ModeTrace.onMainThread } }.value)
    let assumed: Bool = await withCheckedContinuation { continuation in
        loop.execute {
            continuation.resume(returning: assumeMainActor())
        }
    }
    ModeTrace.where_("MainActor.assumeIsolated in loop.execute", onMain: assumed)
    return 42
}

/// The whole-program scenario: everything async runs on the loop, which is the main thread.
/// With `virtual`, the sleeps are long (an hour) and the trace includes loop time.
public func wholeProgramScenario(_ loop: Loop, virtual: Bool) async throws -> Int {
    ModeTrace.check("loop is the program's executor", loop.isProgramExecutor)
    ModeTrace.where_("body")
    let sleep: Duration = virtual ? .seconds(3600) : .milliseconds(5)
    func stamp() -> String { virtual ? " @\(loop.now.nanosecondsSinceOrigin / 1_000_000)ms" : "" }

    let plain = await Task { () -> Bool in
        ModeTrace.record("Task {} ran", "yes\(stamp())")
        return ModeTrace.onMainThread
    }.value
    ModeTrace.where_("Task {}", onMain: plain)

    let detached = await Task.detached { () -> Bool in
        ModeTrace.where_("Task.detached {} before sleep")
        try? await Task.sleep(for: sleep)
        ModeTrace.record("Task.detached {} woke", "yes\(stamp())")
        let mainActor = await mainActorStep()
        ModeTrace.where_("@MainActor from a detached task", onMain: mainActor)
        return ModeTrace.onMainThread
    }.value
    ModeTrace.where_("Task.sleep in Task.detached {}", onMain: detached)

    let counter = Counter()
    let (count, actorOnMain) = await Task.detached { await counter.increment() }.value
    ModeTrace.where_("default actor (from a detached task)", onMain: actorOnMain)
    ModeTrace.check("default actor count", count == 1)

    ModeTrace.where_("@MainActor function", onMain: await mainActorStep())
    ModeTrace.where_("DispatchQueue.main.async", onMain: await dispatchMainStep())
    ModeTrace.where_("MainActor.assumeIsolated", onMain: assumeMainActor())

    // A thread the program creates itself: its synchronous code escapes, its Task {} does not.
    // (Real time only: work from another thread makes a test loop wait its quiet period.)
    if !virtual {
        let fromThread: (Bool, Bool) = await withCheckedContinuation { continuation in
            startProgramThread {
                let threadOnMain = ModeTrace.onMainThread
                Task { continuation.resume(returning: (threadOnMain, ModeTrace.onMainThread)) }
            }
        }
        ModeTrace.check("a program's own thread is another thread", !fromThread.0)
        ModeTrace.where_("Task {} from a program's own thread", onMain: fromThread.1)
    }

    // Interleaving: unstructured tasks sleeping different amounts wake in deadline order.
    let log = OrderLog()
    var sleepers: [Task<Void, Never>] = []
    // On real time the deadlines are absolute, from one instant, so that a preempted process
    // (a loaded CI machine) cannot reorder them; on virtual time `for:` is exact.
    let start = ContinuousClock.now
    for index in [3, 1, 2] {
        sleepers.append(Task.detached {
            if virtual {
                try? await Task.sleep(for: sleep * index)
            } else {
                try? await Task.sleep(until: start + sleep * index, clock: .continuous)
            }
            await log.append(index)
        })
    }
    // Awaited in deadline order: awaiting a task escalates its priority, and a default actor's
    // queue is ordered by priority, so awaiting the last sleeper first could let it into the
    // actor ahead of an earlier one when a loaded machine wakes them in the same tick.
    for position in [1, 2, 0] { await sleepers[position].value }
    let order = await log.values
    ModeTrace.record("detached sleepers woke in order", "\(order)\(stamp())")
    ModeTrace.check("sleepers woke in deadline order", order == [1, 2, 3])
    return 7
}

public actor OrderLog {
    public private(set) var values: [Int] = []
    public var count: Int { values.count }
    public init() {}
    public func append(_ value: Int) { values.append(value) }
}

/// A detached POSIX thread, standing for threads a program creates itself.
public func startProgramThread(_ body: @escaping @Sendable () -> Void) {
    final class Box { let body: @Sendable () -> Void; init(_ body: @escaping @Sendable () -> Void) { self.body = body } }
    var thread = pthread_t()
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    precondition(pthread_create(&thread, nil, { raw in
        Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
        return nil
    }, box) == 0)
    pthread_detach(thread)
}
