@preconcurrency import Glibc
import Testing
@testable import SerialLoop

@Suite("Executor roles: what runs on the loop thread")
struct ExecutorTests {
    @Test func bodyRunsOnTheLoopThread() async throws {
        let onLoop = try await withLoop { loop in loop.isOnLoopThread }
        #expect(onLoop)
    }

    @Test func taskWithExecutorPreferenceRunsOnTheLoop() async throws {
        let results = try await withLoop { loop in
            let child = Task(executorPreference: loop) { loop.isOnLoopThread }
            let detached = Task.detached { loop.isOnLoopThread }
            return (await child.value, await detached.value)
        }
        #expect(results.0 == true)
        #expect(results.1 == false, "Task.detached must not run on the loop")
    }

    @Test func withTaskExecutorPreferenceRunsOnTheLoop() async throws {
        let thread = try Loop.startThread()
        defer { thread.shutdown() }
        let loop = thread.loop
        let onLoop = await withTaskExecutorPreference(loop) {
            loop.isOnLoopThread
        }
        #expect(onLoop)
        #expect(!loop.isOnLoopThread)
    }

    @Test func asyncLetAndTaskGroupChildrenRunOnTheLoop() async throws {
        let results = try await withLoop { loop in
            async let child = loop.isOnLoopThread
            let groupResults = await withTaskGroup(of: Bool.self) { group in
                for _ in 0..<10 { group.addTask { loop.isOnLoopThread } }
                return await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            let discarding = LoopBox(0)
            await withDiscardingTaskGroup { group in
                for _ in 0..<5 { group.addTask { if loop.isOnLoopThread { discarding.value += 1 } } }
            }
            return (await child, groupResults, discarding.value)
        }
        #expect(results.0)
        #expect(results.1 == Array(repeating: true, count: 10))
        #expect(results.2 == 5)
    }

    @Test func actorWhoseExecutorIsTheLoopRunsOnTheLoop() async throws {
        let thread = try Loop.startThread()
        defer { thread.shutdown() }
        let actor = LoopActor(loop: thread.loop)
        // Called from a task on the global executor: the actor still runs on the loop thread.
        #expect(await actor.record("from outside"))
        let fromLoop = try await withLoop { loop in
            let local = LoopActor(loop: loop)
            return await local.record("from inside")
        }
        #expect(fromLoop)
    }

    @Test func plainTaskInsideALoopTaskEscapesToTheGlobalExecutor() async throws {
        // SE-0417: a plain Task {} does not inherit the task executor preference.
        let escaped = try await withLoop { loop in
            await Task { loop.isOnLoopThread }.value
        }
        #expect(escaped == false)
    }

    @Test func isolationChecksAreCorrectOnAndOffTheLoop() async throws {
        let thread = try Loop.startThread()
        defer { thread.shutdown() }
        let loop = thread.loop
        #expect(loop.isIsolatingCurrentContext() == false)
        let actor = LoopActor(loop: loop)
        let future = await withTaskExecutorPreference(loop) { () -> LoopFuture<Bool> in
            let future = loop.makeFuture(of: Bool.self)
            // A plain callback on the loop thread, outside any job of the actor: assumeIsolated
            // works because the loop implements checkIsolated/isIsolatingCurrentContext.
            loop.callSoon {
                let ok = actor.assumeIsolated { actor in
                    actor.log.append("assumed")
                    return loop.isIsolatingCurrentContext() == true
                }
                future.succeed(ok)
            }
            return future
        }
        let assumed = try await withTaskExecutorPreference(loop) { try await future.value }
        #expect(assumed)
        #expect(await actor.log == ["assumed"])
    }

    @Test func jobsResumeOnTheLoopAfterAForeignThreadResumesThem() async throws {
        let onLoop = try await withLoop { loop in
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let thread = spawnThread { continuation.resume() }
                pthread_detach(thread)
            }
            return loop.isOnLoopThread
        }
        #expect(onLoop)
    }
}
