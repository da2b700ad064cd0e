import CBenchmarkShims
import NIOCore
import NIOPosix
import SerialLoop

// Memory: RSS per sleeping task, and heap allocations per operation (malloc & co. are interposed in
// this executable, see CBenchmarkShims/malloc_counter.c; counting covers every thread).

let memoryBenchmarks: [Benchmark] = [
    // MARK: memory per sleeping task (RSS growth / n)
    Benchmark(workload: "memory-per-sleeper", executor: "SerialLoop loop.sleep", unit: "bytes/task",
              method: "RSS growth / n for n tasks preferring the loop in `loop.sleep(for: 1 h)`") { n in
        try withLoop { loop in
            let before = residentBytes()
            let tasks = (0..<n).map { _ in Task(executorPreference: loop) { try await loop.sleep(for: .seconds(3600)) } }
            try await loop.sleep(for: .milliseconds(1))        // every task is now asleep
            let perTask = (residentBytes() - before) / Double(n)
            for task in tasks { task.cancel() }
            return perTask
        }
    },
    Benchmark(workload: "memory-per-sleeper", executor: "SerialLoop Task.sleep", unit: "bytes/task",
              method: "RSS growth / n for n tasks preferring the loop in `Task.sleep(for: 1 h)`") { n in
        try withLoop { loop in
            let before = residentBytes()
            let tasks = (0..<n).map { _ in Task(executorPreference: loop) { try await Task.sleep(for: .seconds(3600)) } }
            try await loop.sleep(for: .milliseconds(1))
            let perTask = (residentBytes() - before) / Double(n)
            for task in tasks { task.cancel() }
            return perTask
        }
    },
    Benchmark(workload: "memory-per-sleeper", executor: "default Task.sleep", unit: "bytes/task",
              method: "RSS growth / n for n plain tasks in `Task.sleep(for: 1 h)` on the global executor") { n in
        try onDefaultExecutor {
            let before = residentBytes()
            let tasks = (0..<n).map { _ in Task { try await Task.sleep(for: .seconds(3600)) } }
            try await Task.sleep(for: .milliseconds(200))
            let perTask = (residentBytes() - before) / Double(n)
            for task in tasks { task.cancel() }
            return perTask
        }
    },

    // MARK: heap allocations per same-thread enqueue (one preallocated closure, n executes)
    Benchmark(workload: "allocations-per-enqueue", executor: "SerialLoop", unit: "allocs/enqueue",
              method: "mallocs during n same-thread `loop.execute` of one preallocated closure (queue grown first)") { n in
        try withLoop { loop in
            let done = loop.makeFuture(of: Void.self)
            let count = Shared(0)
            let callback: @Sendable () -> Void = { count.value += 1; if count.value == n { done.succeed(()) } }
            // Warm up: let the ready queue grow to size first (growth is amortised, not per enqueue).
            for _ in 0..<n { loop.execute {} }
            try await loop.sleep(for: .zero)
            bench_reset_allocation_count()
            bench_count_allocations(1)
            for _ in 0..<n { loop.execute(callback) }
            bench_count_allocations(0)
            let allocations = Double(bench_allocation_count())
            try await done.value
            return allocations / Double(n)
        }
    },
    Benchmark(workload: "allocations-per-enqueue", executor: "NIO", unit: "allocs/enqueue",
              method: "mallocs during n same-thread `eventLoop.execute` of one preallocated closure (queue grown first)") { n in
        let result = Shared(0.0)
        try onNIOThread { promise in
            let callback: @Sendable () -> Void = {}
            for _ in 0..<n { nioLoop.execute {} }
            bench_reset_allocation_count()
            bench_count_allocations(1)
            for _ in 0..<n { nioLoop.execute(callback) }
            bench_count_allocations(0)
            result.value = Double(bench_allocation_count()) / Double(n)
            nioLoop.execute { promise.succeed(()) }
        }
        return result.value
    },

    // MARK: heap allocations per `await Task.yield()` (2 jobs through the executor's enqueue each):
    // the floor's figure is the runtime's own; anything above it is the executor's.
    Benchmark(workload: "allocations-per-yield", executor: "SerialLoop", unit: "allocs/yield",
              method: "mallocs per `Task.yield()` in a task preferring the loop") { n in
        try withLoop { _ in await allocationsPerYield(n) }
    },
    Benchmark(workload: "allocations-per-yield", executor: "floor", unit: "allocs/yield",
              method: "mallocs per `Task.yield()` on the one-object floor (the runtime's own allocation)") { n in
        try Floor.run { _ in await allocationsPerYield(n) }
    },
    Benchmark(workload: "allocations-per-yield", executor: "default", unit: "allocs/yield",
              method: "mallocs per `Task.yield()` on the global executor") { n in
        try onDefaultExecutor { await allocationsPerYield(n) }
    },
    // MARK: heap allocations per socketpair round trip (2 × `readable` + resume); raw epoll makes none
    Benchmark(workload: "allocations-per-round-trip", executor: "SerialLoop", unit: "allocs/round-trip",
              method: "mallocs per `readable` socketpair round trip") { n in
        try withLoop { loop in try await serialLoopPingPong(loop, n, measure: allocationsPerRound) }
    },
    Benchmark(workload: "allocations-per-round-trip", executor: "SerialLoop readiness stream", unit: "allocs/round-trip",
              method: "mallocs per readiness-stream socketpair round trip") { n in
        try withLoop { loop in try await serialLoopStreamPingPong(loop, n, measure: allocationsPerRound) }
    },
]

func allocationsPerRound(_ n: Int, _ body: () async throws -> Void) async throws -> Double {
    bench_reset_allocation_count()
    bench_count_allocations(1)
    try await body()
    bench_count_allocations(0)
    return Double(bench_allocation_count()) / Double(n)
}

func allocationsPerYield(_ n: Int) async -> Double {
    for _ in 0..<1000 { await Task.yield() }    // warm-up: queues at their working size
    bench_reset_allocation_count()
    bench_count_allocations(1)
    for _ in 0..<n { await Task.yield() }
    bench_count_allocations(0)
    return Double(bench_allocation_count()) / Double(n)
}
