import Dispatch

// Jobs that arrive after shutdown
//
// A task can outlive its loop: it prefers a loop that has shut down (created after the shutdown,
// or resumed by something else afterwards), or it runs on an actor whose executor is that loop.
// Its jobs still arrive at `enqueue`. Dropping them would leave the task suspended forever, and
// whoever awaits it would hang. So a shut-down loop hands such jobs to its *afterlife*: one serial
// Dispatch queue, where they run one at a time, in arrival order — the same mutual exclusion the
// loop gave them, so actors on the loop stay data-race free. There every loop API the task calls
// fails at once (`LoopError.loopHasShutDown`), so the task winds down. What does not hold there:
// the jobs do not run on the loop's thread, so `assumeIsolated`/`preconditionIsolated` on the
// loop, and loop-thread-only APIs, trap. Callbacks sent with `execute` after shutdown are not jobs
// of any task: they are dropped with a warning.

extension Loop {
    /// Runs a job that reached the loop after its shutdown (see above). Any thread.
    func runAfterShutdown(_ job: UnownedJob) {
        afterlife.async {
            job.runSynchronously(on: globalConcurrentExecutor.asUnownedTaskExecutor())
        }
    }

    /// A runtime sleep (`Task.sleep` & co.) of a task on a loop that has shut down: it wakes at
    /// its deadline on a real loop (the deadline is CLOCK_MONOTONIC, Dispatch's uptime clock), at
    /// once on a test loop, whose virtual clock no longer moves.
    func runAfterShutdown(_ job: UnownedJob, deadline: Int64) {
        guard timeMode == .real, deadline > 0 else { return runAfterShutdown(job) }
        afterlife.asyncAfter(deadline: DispatchTime(uptimeNanoseconds: UInt64(deadline))) {
            job.runSynchronously(on: globalConcurrentExecutor.asUnownedTaskExecutor())
        }
    }
}

/// The serial queue behind a shut-down loop, created on first use (most loops never need it).
final class Afterlife: Sendable {
    private let queue = Lock<DispatchQueue?>(nil)

    private var serialQueue: DispatchQueue {
        queue.withLock { queue in
            if let queue { return queue }
            let created = DispatchQueue(label: "SerialLoop.afterlife")
            queue = created
            return created
        }
    }

    func async(_ body: @escaping @Sendable () -> Void) {
        serialQueue.async(execute: body)
    }

    func asyncAfter(deadline: DispatchTime, _ body: @escaping @Sendable () -> Void) {
        serialQueue.asyncAfter(deadline: deadline, execute: body)
    }
}
