import ScenarioCheck
@preconcurrency import Glibc
import NIOCore
import NIOPosix
import SerialLoop

struct NIOScenarioError: Error, Equatable {
    var code: Int
}

/// Awaiting SwiftNIO futures (`EventLoopFuture.get()`) from tasks on a SerialLoop: the work runs
/// on NIO's thread, the awaiting task resumes on the loop thread.
func runNIOFutures() throws {
    print("nio-futures: awaiting EventLoopFuture.get() from SerialLoop tasks")
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    defer { try? group.syncShutdownGracefully() }
    let nio = group.next()

    struct Report: Sendable {
        var value = 0
        var ranOnNIOThread = false
        var resumedOnLoopThread = false
        var sameThreadAfterwards = false
        var scheduledElapsed = Duration.zero
        var failure: NIOScenarioError?
        var manyAllOnLoop = false
        var manySum = 0
        var promiseFromLoop = ""
    }
    let report = try withLoop { loop in
        var report = Report()
        let loopThread = pthread_self()

        // 1. A closure submitted to NIO's loop; its result awaited here.
        let (value, ranOnNIO) = try await nio.submit { (42, nio.inEventLoop) }.get()
        report.value = value
        report.ranOnNIOThread = ranOnNIO
        report.resumedOnLoopThread = loop.isOnLoopThread
        report.sameThreadAfterwards = pthread_equal(pthread_self(), loopThread) != 0

        // 2. NIO's timer: scheduleTask(in: 50 ms), timed on the loop's clock.
        let start = loop.now
        try await nio.scheduleTask(in: .milliseconds(50)) {}.futureResult.get()
        report.scheduledElapsed = start.duration(to: loop.now)

        // 3. A failed future rethrows its error on the loop.
        do {
            let failed: EventLoopFuture<Int> = nio.makeFailedFuture(NIOScenarioError(code: 7))
            _ = try await failed.get()
        } catch let error as NIOScenarioError {
            report.failure = error
        }

        // 4. 1000 futures awaited concurrently by a task group on the loop.
        let (sum, allOnLoop) = try await withThrowingTaskGroup(of: (Int, Bool).self) { tasks in
            for index in 0..<1000 {
                tasks.addTask {
                    let value = try await nio.submit { index }.get()
                    return (value, loop.isOnLoopThread)
                }
            }
            return try await tasks.reduce(into: (0, true)) { $0.0 += $1.0; $0.1 = $0.1 && $1.1 }
        }
        report.manySum = sum
        report.manyAllOnLoop = allOnLoop

        // 5. The other direction: a NIO promise completed by a SerialLoop timer callback.
        let promise = nio.makePromise(of: String.self)
        loop.schedule(after: .milliseconds(5)) { promise.succeed("completed from a SerialLoop timer") }
        report.promiseFromLoop = try await promise.futureResult.get()
        return report
    }
    Check.that(report.value == 42 && report.ranOnNIOThread, "nio.submit { } ran on NIO's event-loop thread and its value (42) arrived")
    Check.that(report.resumedOnLoopThread && report.sameThreadAfterwards, "after future.get() the task resumed on the SerialLoop thread (same pthread as before)")
    Check.that(report.scheduledElapsed >= .milliseconds(50), "NIO scheduleTask(in: 50 ms) completed after \(format(milliseconds(report.scheduledElapsed))) ms of loop time")
    Check.that(report.failure == NIOScenarioError(code: 7), "a failed future rethrew its error on the loop")
    Check.that(report.manySum == (0..<1000).reduce(0, +) && report.manyAllOnLoop, "1000 futures awaited concurrently from a task group on the loop, all resumed on the loop thread")
    Check.that(report.promiseFromLoop == "completed from a SerialLoop timer", "a NIO promise completed by loop.schedule(after:) resolved")
}
