@preconcurrency import Glibc
import Synchronization

// The threads behind `loop.offload { … }`
//
// A small bounded pool, one per loop, in the shape of asyncio's default executor and tokio's
// blocking pool: a FIFO queue of jobs under one mutex, worker threads that wait on a condition
// variable, and at most `limit` threads. The rules:
//
// - Threads start lazily: a submit starts a thread only when more jobs are queued than threads are
//   idle, and the limit allows. A loop that never offloads never starts one.
// - Threads are never stopped one by one (no idle timeout): they stay until `close()`, which the
//   loop calls at shutdown and which joins every one of them. Lowering the limit only stops new ones
//   from starting. Dropping the pool (the loop's deinit, for a loop that was never shut down) closes
//   it too.
// - A queued job can be withdrawn (its task was cancelled, or the loop shuts down) as long as no
//   thread has taken it: it then never runs. A job that a thread has taken runs to the end: nothing
//   interrupts a blocking call.
// - Workers hold the queue, never the pool, so the pool's owner (the loop) can go away; a job holds
//   the loop it reports to until it has reported.
//
// - A worker that has just finished a job spins (yielding the core each turn) for 50 µs before it
//   sleeps on the condition variable: an `await offload` in a loop submits its next job about one
//   loop wake-up (~15 µs here) after the last one reported, and catching the worker spinning saves
//   waking a sleeping thread (another ~15–20 µs; Benchmarks, "offload-round-trip"). A submit that
//   sees a spinning worker neither wakes nor starts one; a worker that stopped spinning meanwhile
//   finds the job under the mutex before it sleeps, so no job waits for a wake-up nobody sends.
//
// Workers inherit the signal mask of the thread that started them (a loop thread).

/// One offloaded closure and how to report its outcome. Its state is guarded by the pool's mutex.
final class OffloadJob: @unchecked Sendable {
    // Unchecked Sendable: `state` and `run` are read and written only under the pool's mutex.
    enum State {
        /// Created; not yet handed to the pool.
        case created
        /// In the queue, waiting for a thread.
        case queued
        /// A thread took it: it will run to the end and report.
        case running
        /// Withdrawn before any thread took it (cancellation, shutdown): it will never run.
        case withdrawn
    }

    var state = State.created
    /// Runs the closure and returns how to report its outcome. Taken (set to `nil`) by the thread
    /// that runs it or by the withdrawal, and released *before* the report: the offloaded closure
    /// is borrowed from a caller that may return as soon as it hears the job is over.
    var run: (() -> () -> Void)?
    /// Reports that the job will never run.
    let reportWithdrawn: () -> Void

    init(run: @escaping () -> () -> Void, reportWithdrawn: @escaping () -> Void) {
        self.run = run
        self.reportWithdrawn = reportWithdrawn
    }
}

/// The loop's pool of offload threads. Any thread.
final class OffloadPool: Sendable {
    private let queue = OffloadQueue()

    deinit {
        _ = queue.close()
    }

    /// How many threads may run jobs at once (default: the number of online processors).
    var limit: Int {
        get { queue.locked { $0.limit } }
        set { queue.locked { $0.limit = max(1, newValue) } }
    }

    /// Threads started so far (they stay until `close()`).
    var threadCount: Int { queue.locked { $0.threads.count } }

    /// Jobs waiting for a thread.
    var queuedCount: Int { queue.locked { $0.queuedCount } }

    /// Whether `close()` ran: no more jobs are accepted.
    var isClosed: Bool { queue.isClosed }

    /// Queues `job`, starting a thread if none is idle and the limit allows.
    /// - Returns: `false` (and leaves the job alone) if the pool is closed, or if the job was
    ///   withdrawn before it was submitted.
    func submit(_ job: OffloadJob) -> Bool { queue.submit(job) }

    /// Withdraws `job` if no thread took it yet. Returns whether it did (the caller reports).
    func withdraw(_ job: OffloadJob) -> Bool { queue.withdraw(job) }

    /// Drops a job that was never queued (its closure with it).
    func discard(_ job: OffloadJob) {
        queue.locked { _ in job.run = nil }
    }

    /// Whether `job` was withdrawn.
    func isWithdrawn(_ job: OffloadJob) -> Bool {
        queue.locked { _ in if case .withdrawn = job.state { true } else { false } }
    }

    /// Closes the pool: queued jobs are withdrawn (each reports that it will never run), jobs that
    /// are running finish and report (through the loop's inbox), and every thread is joined.
    /// Idempotent.
    /// - Returns: how many jobs were withdrawn (reported inline or through the inbox).
    @discardableResult
    func close() -> Int { queue.close() }
}

/// The shared state behind an `OffloadPool`, held by its workers.
private final class OffloadQueue: @unchecked Sendable {
    // Unchecked Sendable: `state` is read and written only under `mutex` (waiting on `workAvailable`);
    // what is read without it is atomic.
    struct State {
        /// Taken jobs are set to `nil` at once: a job holds its loop, and the loop holds the pool.
        var jobs: [OffloadJob?] = []
        /// Index of the first live job in `jobs` (a queue without O(n) pops).
        var head = 0
        var idle = 0
        var limit = OffloadQueue.defaultLimit
        var threads: [pthread_t] = []
        var isClosed = false

        var queuedCount: Int { jobs.count - head }
    }

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    /// Submissions so far (read without the mutex by spinning workers, to notice new work).
    private let submissions = Atomic<Int>(0)
    /// Set by `close()`: read without the mutex on every `offload`.
    private let closed = Atomic<Bool>(false)
    var isClosed: Bool { closed.load(ordering: .acquiring) }
    /// Workers spinning for new work (not counted in `idle`): a submit need not wake anyone.
    private let spinning = Atomic<Int>(0)
    /// How long a worker spins after a job before it sleeps.
    static let spinNanoseconds: Int64 = 50_000
    private let workAvailable = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    /// Guarded by `mutex`.
    private var state = State()

    static let defaultLimit = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(workAvailable, nil)
    }

    deinit {
        pthread_cond_destroy(workAvailable)
        pthread_mutex_destroy(mutex)
        workAvailable.deallocate()
        mutex.deallocate()
    }

    func locked<T>(_ body: (inout State) -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body(&state)
    }

    func submit(_ job: OffloadJob) -> Bool {
        pthread_mutex_lock(mutex)
        guard !state.isClosed, case .created = job.state else {
            pthread_mutex_unlock(mutex)
            return false
        }
        job.state = .queued
        state.jobs.append(job)
        var wake = false
        if state.queuedCount <= spinning.load(ordering: .sequentiallyConsistent) {
            // A spinning worker takes it (and if it stopped spinning meanwhile, it finds the job
            // under the mutex before it sleeps).
        } else if state.queuedCount > state.idle && state.threads.count < state.limit {
            // More queued jobs than idle threads to take them: start one more, if allowed. (A
            // woken thread stays counted as idle until it runs, so a burst starts enough threads.)
            state.threads.append(spawnThread { [self] in work() })
        } else {
            wake = state.idle > 0
        }
        pthread_mutex_unlock(mutex)
        // Signalled after the unlock: the woken worker's first act is to take the mutex.
        if wake { pthread_cond_signal(workAvailable) }
        // Counted after the unlock, so that a spinning worker that sees it does not then wait
        // for the mutex (measured: two more futex calls per round trip otherwise).
        submissions.add(1, ordering: .sequentiallyConsistent)
        return true
    }

    func withdraw(_ job: OffloadJob) -> Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        switch job.state {
        case .created:
            job.state = .withdrawn
            job.run = nil
            return false            // never submitted: the submitter sees `.withdrawn` and reports
        case .queued:
            if let index = state.jobs[state.head...].firstIndex(where: { $0 === job }) {
                state.jobs.remove(at: index)
            }
            job.state = .withdrawn
            job.run = nil
            return true
        case .running, .withdrawn:
            return false
        }
    }

    func close() -> Int {
        pthread_mutex_lock(mutex)
        let alreadyClosed = state.isClosed
        state.isClosed = true
        closed.store(true, ordering: .releasing)
        let withdrawn = state.jobs[state.head...].compactMap { $0 }
        state.jobs.removeAll()
        state.head = 0
        for job in withdrawn {
            job.state = .withdrawn
            job.run = nil
        }
        let threads = state.threads
        state.threads.removeAll()
        pthread_cond_broadcast(workAvailable)
        pthread_mutex_unlock(mutex)
        if alreadyClosed && threads.isEmpty { return 0 }

        for job in withdrawn { job.reportWithdrawn() }
        let current = pthread_self()
        for thread in threads {
            // The last reference to a loop can be dropped by one of its own workers (a job
            // holds its loop until it has reported); that worker cannot join itself.
            if pthread_equal(thread, current) != 0 {
                pthread_detach(thread)
            } else {
                pthread_join(thread, nil)
            }
        }
        return withdrawn.count
    }

    /// A worker: takes jobs in FIFO order until the pool is closed and the queue is empty.
    private func work() {
        pthread_mutex_lock(mutex)
        while true {
            while state.queuedCount == 0 && !state.isClosed {
                state.idle += 1
                pthread_cond_wait(workAvailable, mutex)
                state.idle -= 1
            }
            if state.queuedCount == 0 { break }             // closed and drained
            let job = state.jobs[state.head]!
            state.jobs[state.head] = nil
            state.head += 1
            if state.head == state.jobs.count {
                state.jobs.removeAll(keepingCapacity: true)
                state.head = 0
            } else if state.head >= 64 && state.head * 2 >= state.jobs.count {
                state.jobs.removeFirst(state.head)
                state.head = 0
            }
            job.state = .running
            var run = job.run
            job.run = nil
            pthread_mutex_unlock(mutex)
            let report = run?()
            run = nil                   // the closure is released before its caller hears of it
            report?()
            spinForWork()
            pthread_mutex_lock(mutex)
        }
        pthread_mutex_unlock(mutex)
    }

    /// Spins (yielding the core each turn) until a submission arrives or the spin time is over.
    private func spinForWork() {
        let seen = submissions.load(ordering: .sequentiallyConsistent)
        spinning.add(1, ordering: .sequentiallyConsistent)
        defer { spinning.subtract(1, ordering: .sequentiallyConsistent) }
        let deadline = monotonicNanoseconds() + Self.spinNanoseconds
        repeat {
            if submissions.load(ordering: .sequentiallyConsistent) != seen { return }
            sched_yield()               // a busy spin measured 4× slower on 2 loaded cores
        } while monotonicNanoseconds() < deadline
    }
}
