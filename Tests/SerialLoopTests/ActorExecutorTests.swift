import Testing
import SerialLoop

/// Actors on the loop's opt-in actor executor (`loop.actorExecutor`): they run on the loop's
/// thread, call each other in place (no job per call), and behave like the loop's other work at
/// shutdown.
@Suite("The loop's actor executor")
struct ActorExecutorTests {
    actor Counter {
        nonisolated let unownedExecutor: UnownedSerialExecutor
        let loop: Loop
        var value = 0

        init(loop: Loop, onActorExecutor: Bool) {
            self.loop = loop
            unownedExecutor = onActorExecutor ? loop.actorExecutor.asUnownedSerialExecutor() : loop.asUnownedSerialExecutor()
        }

        func increment() -> (Int, Bool) {
            value += 1
            return (value, loop.isOnLoopThread)
        }
    }

    actor Caller {
        nonisolated let unownedExecutor: UnownedSerialExecutor
        let loop: Loop

        init(loop: Loop, onActorExecutor: Bool) {
            self.loop = loop
            unownedExecutor = onActorExecutor ? loop.actorExecutor.asUnownedSerialExecutor() : loop.asUnownedSerialExecutor()
        }

        /// Calls `counter` `n` times; returns the jobs the loop ran meanwhile and whether every
        /// call returned on the loop's thread.
        func call(_ counter: Counter, _ n: Int) async -> (jobs: Int, allOnLoop: Bool) {
            let before = loop.metrics.jobs
            var allOnLoop = true
            for _ in 0..<n {
                let (_, onLoop) = await counter.increment()
                allOnLoop = allOnLoop && onLoop && loop.isOnLoopThread
            }
            return (loop.metrics.jobs - before, allOnLoop)
        }
    }

    @Test(arguments: bothClocks) func actorsOnTheActorExecutorCallEachOtherInPlace(time: Loop.TimeMode) async throws {
        let (inPlace, viaJobs, value) = try await withLoop(time: time) { loop in
            let counter = Counter(loop: loop, onActorExecutor: true)
            let caller = Caller(loop: loop, onActorExecutor: true)
            let inPlace = await caller.call(counter, 1000)
            let defaultCounter = Counter(loop: loop, onActorExecutor: false)
            let defaultCaller = Caller(loop: loop, onActorExecutor: false)
            let viaJobs = await defaultCaller.call(defaultCounter, 1000)
            return (inPlace, viaJobs, await counter.value)
        }
        #expect(value == 1000)
        #expect(inPlace.allOnLoop && viaJobs.allOnLoop)
        // The metrics count the loop's jobs: in place, the 1000 calls are part of one job.
        #expect(inPlace.jobs <= 2, "actor → actor on the actor executor ran \(inPlace.jobs) jobs for 1000 calls")
        #expect(viaJobs.jobs >= 1000, "actor → actor on the loop itself: \(viaJobs.jobs) jobs for 1000 calls")
    }

    @Test func aTaskPreferringTheLoopCallsThemOnTheLoopThread() async throws {
        let results = try await withLoop { loop in
            let counter = Counter(loop: loop, onActorExecutor: true)
            var results: [Bool] = []
            for _ in 0..<10 { results.append(await counter.increment().1) }
            // A plain callback on the loop may assume the actor's isolation: both executor objects
            // are the loop's thread.
            let done = loop.makeFuture(of: Int.self)
            loop.callSoon {
                loop.actorExecutor.checkIsolated()
                done.succeed(counter.assumeIsolated { $0.value })
            }
            results.append(try await done.value == 10)
            return results
        }
        #expect(results == Array(repeating: true, count: 11))
    }

    @Test func afterShutdownTheirJobsRunInTheAfterlife() async throws {
        let (loop, counter) = try await withLoop { loop in
            (loop, Counter(loop: loop, onActorExecutor: true))
        }
        #expect(loop.hasShutDown)
        // A foreign task calls the actor after its loop shut down: the call completes (in the
        // loop's afterlife, off the loop thread) instead of hanging.
        let (value, onLoop) = await counter.increment()
        #expect(value == 1)
        #expect(!onLoop)
    }
}
