import Logging
import SerialLoop
import SerialLoopLifecycle
import ServiceLifecycle
import Synchronization
import Testing

@Suite struct LifecycleServiceTests {
    struct Trace: Sendable, Equatable {
        var startedOnLoopThread = false
        var sawGracefulShutdown = false
        var drainedAt: Duration?
        var finishedOnLoopThread = false
    }

    /// The group runs the service; the work reports that it runs (on the loop thread), the test
    /// triggers the group's graceful shutdown, the work sees it through ServiceLifecycle's own
    /// `gracefulShutdown()`, finishes its in-flight work (5 s of virtual time: instant), returns;
    /// the service shuts its loop down and the group's `run()` returns without error.
    @Test func workWindsDownOnTheGroupsGracefulShutdown() async throws {
        let trace = Mutex(Trace())
        let (started, startedContinuation) = AsyncStream.makeStream(of: Void.self)
        let service = try LoopService(name: "loop", time: .virtual) { loop in
            trace.withLock { $0.startedOnLoopThread = loop.isOnLoopThread }
            startedContinuation.yield()
            try await gracefulShutdown()
            trace.withLock { $0.sawGracefulShutdown = true }
            let start = loop.now
            try await loop.sleep(for: .seconds(5))            // the in-flight work finishes
            trace.withLock {
                $0.drainedAt = start.duration(to: loop.now)
                $0.finishedOnLoopThread = loop.isOnLoopThread
            }
        }
        let loop = service.loop
        try await runThenShutDown([service], once: started)
        #expect(trace.withLock { $0 } == Trace(
            startedOnLoopThread: true, sawGracefulShutdown: true,
            drainedAt: .seconds(5), finishedOnLoopThread: true))
        #expect(loop.hasShutDown, "the service shuts down the loop it owns")
    }

    /// `.cancelWork`: the work never looks at graceful shutdown; the group's trigger cancels it
    /// (an hour-long `loop.sleep` throws at once) and the service still ends normally.
    @Test func cancelWorkCancelsTheWorkAndEndsNormally() async throws {
        let cancelled = Mutex(false)
        let (started, startedContinuation) = AsyncStream.makeStream(of: Void.self)
        let service = try LoopService(onGracefulShutdown: .cancelWork) { loop in
            startedContinuation.yield()
            do {
                try await loop.sleep(for: .seconds(3600))
            } catch is CancellationError {
                cancelled.withLock { $0 = true }
                throw CancellationError()
            }
        }
        try await runThenShutDown([service], once: started)
        #expect(cancelled.withLock { $0 })
        #expect(service.loop.hasShutDown)
    }

    /// A loop the service does not own stays up after the service ends; two services share it, and
    /// the group shuts them down in reverse order (ServiceLifecycle's rule), both on the loop thread.
    @Test func servicesOnASharedLoopThreadLeaveItRunning() async throws {
        let thread = try Loop.startThread()
        defer { thread.shutdown() }
        let order = Mutex<[String]>([])
        let (started, startedContinuation) = AsyncStream.makeStream(of: String.self)
        func service(_ name: String) -> LoopService {
            LoopService(thread: thread, name: name) { loop in
                precondition(loop.isOnLoopThread)
                startedContinuation.yield(name)
                try await gracefulShutdown()
                order.withLock { $0.append(name + (loop.isOnLoopThread ? " on loop" : " off loop")) }
            }
        }
        let group = ServiceGroup(services: [service("first"), service("second")], logger: Logger(label: "test-group"))
        try await withWatchdog {
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                var seen = Set<String>()
                for await name in started {
                    seen.insert(name)
                    if seen.count == 2 { break }
                }
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
            }
        }
        #expect(order.withLock { $0 } == ["second on loop", "first on loop"])
        #expect(!thread.loop.hasShutDown)
        let stillRuns = try await Task(executorPreference: thread.loop) { thread.loop.isOnLoopThread }.value
        #expect(stillRuns)
    }
}

/// Runs `services` in a `ServiceGroup`, triggers the group's graceful shutdown once `started`
/// yields, and waits for the group to end (under the watchdog).
private func runThenShutDown(_ services: [any Service], once started: AsyncStream<Void>) async throws {
    let group = ServiceGroup(services: services, logger: Logger(label: "test-group"))
    try await withWatchdog {
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            for await _ in started { break }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }
}
