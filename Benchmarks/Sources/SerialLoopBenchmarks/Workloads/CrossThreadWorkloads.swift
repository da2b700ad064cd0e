@preconcurrency import Glibc
import NIOCore
import NIOPosix
import SerialLoop

// Cross-thread enqueue: two producer threads each submit n/2 callbacks to a loop running on a third
// thread; wall ns per callback from the first submission until the last callback ran.

let crossThreadBenchmarks: [Benchmark] = [
    Benchmark(workload: "cross-thread-enqueue", executor: "SerialLoop", unit: "ns/job",
              method: "loop on its own thread (`Loop.startThread`); two producer threads × n/2 `loop.execute`") { n in
        let thread = try Loop.startThread()
        defer { thread.shutdown() }
        let loop = thread.loop
        return crossThreadEnqueue(n) { loop.execute($0) }
    },
    Benchmark(workload: "cross-thread-enqueue", executor: "floor", unit: "ns/job",
              method: "floor on its own thread; two producer threads × n/2 `executeFromAnyThread`") { n in
        let started = Latch<Floor>()
        let runner = startThread {
            let floor = Floor()
            started.fulfil(floor)
            floor.run()
        }
        let floor = started.wait()
        let result = crossThreadEnqueue(n) { floor.executeFromAnyThread($0) }
        floor.executeFromAnyThread { floor.finished = true }
        pthread_join(runner, nil)
        return result
    },
    Benchmark(workload: "cross-thread-enqueue", executor: "NIO", unit: "ns/job",
              method: "NIO's loop thread; two producer threads × n/2 `eventLoop.execute`") { n in
        crossThreadEnqueue(n) { nioLoop.execute($0) }
    },
]

/// Two producers each call `submit` n/2 times with the same counting callback; the callback that
/// completes the count wakes the measuring thread (which sleeps meanwhile, so it takes no core).
func crossThreadEnqueue(_ n: Int, submit: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void) -> Double {
    let total = n / 2 * 2
    let ran = Shared(0)
    let done = Completion()
    let callback: @Sendable () -> Void = {
        ran.value += 1
        if ran.value == total { done.signal() }
    }
    let start = ContinuousClock.now
    let producers = (0..<2).map { _ in
        startThread { for _ in 0..<total / 2 { submit(callback) } }
    }
    for producer in producers { pthread_join(producer, nil) }
    done.wait()
    return nanoseconds(since: start) / Double(total)
}
