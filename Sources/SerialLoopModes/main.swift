@preconcurrency import Glibc
import Dispatch
import SerialLoop
import SerialLoopModeScenarios

// Test fixture: top-level code (main.swift) on the main thread, one scenario per run, named by the
// first argument. Run by Tests/SerialLoopTests/ModeTests.swift in a child process; prints a trace
// and exits 0 when every step ran where it should.

ModeTrace.start()
let scenario = CommandLine.arguments.dropFirst().first ?? ""

switch scenario {
case "top-level-with-loop":
    // The example: a sync withLoop at top level awaiting @MainActor work.
    let value = try withLoop { loop in try await mainThreadScenario(loop) }
    ModeTrace.check("withLoop returned 42", value == 42)

case "top-level-run-until":
    // loop.run(until:) with a hand-made loop on the main thread.
    let loop = try Loop()
    let task = Task<Bool, any Error>(executorPreference: loop) { await mainActorStep() }
    ModeTrace.where_("run(until:) → @MainActor", onMain: try loop.run(until: task))
    // loop.run() until a main-queue block stops it.
    DispatchQueue.main.async {
        ModeTrace.where_("DispatchQueue.main.async under loop.run()")
        loop.stop()
    }
    loop.run()
    ModeTrace.record("loop.run()", "returned")

case "busy-loop-serves-main-queue":
    // A loop that never idles (a task yielding in a loop) still serves the main queue: a real-time
    // loop polls the main-queue descriptor on one busy tick in 256, so the block runs within a
    // bounded number of yields.
    final class Flag: @unchecked Sendable { var isSet = false }
    let yields = try withLoop { _ in
        let flag = Flag()
        DispatchQueue.main.async { flag.isSet = true }
        var yields = 0
        while !flag.isSet {
            await Task.yield()
            yields += 1
        }
        return yields
    }
    ModeTrace.check("main-queue block ran while the loop was busy, within 600 yields", yields <= 600)

case "test-loop-main-actor":
    // A test loop on the main thread: main-queue work is loop work, so the clock does not jump
    // over it; run twice, the traces are identical.
    func once() throws -> [String] {
        try withTestLoop { loop in
            var trace: [String] = []
            func note(_ step: String) { trace.append("\(step) @\(loop.now.nanosecondsSinceOrigin / 1_000_000)ms") }
            try await Task.sleep(for: .seconds(3600))
            note("slept an hour")
            let sleeper = Task(executorPreference: loop) { try await Task.sleep(for: .seconds(1)); return loop.now }
            // Main-queue work queued behind the sleeper: it runs before the clock jumps.
            for index in 0..<3 {
                _ = await mainActorStep()
                note("main actor \(index)")
                _ = await dispatchMainStep()
                note("main queue \(index)")
            }
            _ = try await sleeper.value
            note("sleeper woke")
            return trace
        }
    }
    let start = monotonicMilliseconds()
    let first = try once()
    let second = try once()
    for line in first { ModeTrace.record("trace", line) }
    ModeTrace.check("same trace twice", first == second)
    ModeTrace.check("an hour in under 5 s of wall time", monotonicMilliseconds() - start < 5_000)

case "stall-off-main":
    // A sync test loop on another thread whose body waits for the main actor while the main thread
    // is blocked: the test loop declares a stall that names the main actor, and the process traps
    // with that message (nothing hangs silently).
    let thread = startThread {
        _ = try? withTestLoop { loop in
            loop.stallTimeout = .milliseconds(300)
            return await mainActorStep()
        }
    }
    pthread_join(thread, nil)
    ModeTrace.record("joined", "the loop thread returned (unexpected)")

case "whole-program":
    let value = try Loop.runMain { loop in try await wholeProgramScenario(loop, virtual: false) }
    ModeTrace.check("runMain returned the body's value", value == 7)

case "run-main-task-locals":
    // Task-locals bound around runMain reach the body and the tasks it makes.
    enum Context { @TaskLocal static var id = 0 }
    let seen = try Context.$id.withValue(12) {
        try Loop.runMain { loop in
            async let child = Context.id
            let preferring = await Task(executorPreference: loop) { Context.id }.value
            let plain = await Task { Context.id }.value
            return "body \(Context.id), async let \(await child), preferring task \(preferring), plain task \(plain)"
        }
    }
    print(seen)

case "run-main-virtual-leftovers":
    // Unstructured tasks still sleeping when the body returns are leftovers, as in withTestLoop.
    do {
        let value = try Loop.runMain(time: .virtual) { _ in
            Task { try await Task.sleep(for: .seconds(7200)) }
            Task.detached { try await Task.sleep(for: .seconds(7300)) }
            await Task.yield()
            return 1
        }
        ModeTrace.record("runMain returned \(value)", "FAILED: the sleeping tasks were not reported")
    } catch let error as LoopLeftoversError {
        ModeTrace.record("leftover Task.sleeps", "\(error.leftovers.taskSleeps.count)")
        print(error)
    }

case "whole-program-virtual":
    let start = monotonicMilliseconds()
    let value = try Loop.runMain(time: .virtual) { loop in try await wholeProgramScenario(loop, virtual: true) }
    ModeTrace.check("runMain returned the body's value", value == 7)
    ModeTrace.check("hours of sleep in under 5 s of wall time", monotonicMilliseconds() - start < 5_000)

case "install-twice":
    _ = try Loop.runMain { _ in 1 }
    ModeTrace.record("first install", "done")
    _ = try Loop.runMain { _ in 2 }
    ModeTrace.record("second install", "done (unexpected)")

case "install-off-main":
    let thread = startThread { _ = try? Loop.runMain { _ in 1 } }
    pthread_join(thread, nil)
    ModeTrace.record("off-main install", "returned (unexpected)")

case "loop-only-api-from-a-plain-task":
    // A loop-only API called from a plain Task {} (global executor): traps, naming the fix.
    _ = try withLoop { loop in
        await Task { _ = loop.pendingWaiterCount }.value
        ModeTrace.record("loop-only API off the loop", "returned (unexpected)")
    }

default:
    fputs("usage: SerialLoopModes <scenario>\n", stderr)
    exit(64)
}
ModeTrace.finish()

func monotonicMilliseconds() -> Int64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
}

func startThread(_ body: @escaping @Sendable () -> Void) -> pthread_t {
    final class Box { let body: @Sendable () -> Void; init(_ body: @escaping @Sendable () -> Void) { self.body = body } }
    var thread = pthread_t()
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    pthread_create(&thread, nil, { raw in
        Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
        return nil
    }, box)
    return thread
}
