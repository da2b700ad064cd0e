@preconcurrency import Glibc
import Synchronization

/// The floor: the least a single-threaded Swift executor can do, and so the lower bound the Swift
/// runtime allows for queueing and running jobs on one thread.
///
/// - One object in both executor roles; every job runs `on:` it as task executor.
/// - Same-thread enqueue: a thread check and a push onto a power-of-two ring buffer. No lock, no
///   atomic, no allocation once the ring has grown.
/// - Cross-thread work: a mutex-guarded array swapped out whole by the floor thread, an atomic
///   "has work" hint so the floor thread only takes the lock when there is something to take, and a
///   condition variable signalled only when the floor thread is parked (wake-ups coalesced).
/// - No timers, no I/O, no fairness: the inbox is only looked at when the ready queue is empty.
/// - Its stored state is `@exclusivity(unchecked)`: otherwise every push and pop of the ring (a
///   mutating access to a class property) pays a dynamic exclusivity check (`swift_beginAccess`).
final class Floor: TaskExecutor, SerialExecutor, DrivenFloor, @unchecked Sendable {
    /// Floor thread only.
    @exclusivity(unchecked) private var ready = JobRing()
    /// Floor thread only: the batch taken from the inbox, kept to reuse its capacity.
    @exclusivity(unchecked) private var batch: [@Sendable () -> Void] = []
    /// Floor thread only. Set by a job or callback to make `run()` return.
    @exclusivity(unchecked) var finished = false
    private let owner = pthread_self()

    /// Guarded by `mutex`.
    @exclusivity(unchecked) private var inbox: [@Sendable () -> Void] = []
    /// Guarded by `mutex`: the floor thread is (about to be) blocked in `pthread_cond_wait`.
    @exclusivity(unchecked) private var isParked = false
    /// Set by producers after appending, cleared by the floor thread when it takes the inbox.
    private let hasWork = Atomic<Bool>(false)
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        pthread_cond_destroy(condition)
        mutex.deallocate()
        condition.deallocate()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        if pthread_equal(pthread_self(), owner) != 0 {
            ready.push(job)
        } else {
            executeFromAnyThread { [unowned self] in self.ready.push(job) }
        }
    }

    /// Cross-thread callback: append under the lock, signal only a parked floor thread.
    func executeFromAnyThread(_ callback: @escaping @Sendable () -> Void) {
        pthread_mutex_lock(mutex)
        inbox.append(callback)
        let mustWake = isParked
        isParked = false
        pthread_mutex_unlock(mutex)
        hasWork.store(true, ordering: .releasing)
        if mustWake { pthread_cond_signal(condition) }
    }

    func asUnownedTaskExecutor() -> UnownedTaskExecutor { UnownedTaskExecutor(ordinary: self) }
    func asUnownedSerialExecutor() -> UnownedSerialExecutor { UnownedSerialExecutor(ordinary: self) }
    func checkIsolated() { precondition(pthread_equal(pthread_self(), owner) != 0) }
    func isIsolatingCurrentContext() -> Bool? { pthread_equal(pthread_self(), owner) != 0 }

    /// Runs jobs until `finished` is set. Blocks in the condition variable when there is nothing to do.
    func run() {
        while !finished {
            if let job = ready.pop() {
                job.runSynchronously(on: asUnownedTaskExecutor())
                continue
            }
            let mayHaveWork = hasWork.load(ordering: .acquiring)
            pthread_mutex_lock(mutex)
            if !mayHaveWork {
                // Park. The empty check is under the lock, so a producer either appended before it
                // (no wait) or sees `isParked` afterwards and signals.
                while inbox.isEmpty {
                    isParked = true
                    pthread_cond_wait(condition, mutex)
                }
            }
            hasWork.store(false, ordering: .relaxed)
            swap(&inbox, &batch)
            pthread_mutex_unlock(mutex)
            for callback in batch { callback() }
            batch.removeAll(keepingCapacity: true)
        }
    }

    var preferredExecutor: any TaskExecutor { self }
}

/// The one-object floor's ready queue.
typealias JobRing = Ring<UnownedJob>

/// A growable power-of-two ring buffer (the floors' ready queues). Not thread-safe. Generic so the
/// two-object floor can queue each job with the role it came in for; specialised in this module,
/// so `Ring<UnownedJob>` compiles to the same code the one-object floor had before.
struct Ring<Element>: ~Copyable {
    private var storage: UnsafeMutablePointer<Element>
    private var mask: Int
    private var head = 0
    private var count = 0

    init(capacity: Int = 1024) {
        storage = .allocate(capacity: capacity)
        mask = capacity - 1
    }

    deinit {
        (storage + head).deinitialize(count: min(count, mask + 1 - head))
        if head + count > mask + 1 { storage.deinitialize(count: head + count - (mask + 1)) }
        storage.deallocate()
    }

    @inline(__always)
    mutating func push(_ element: Element) {
        if count == mask + 1 { grow() }
        (storage + ((head + count) & mask)).initialize(to: element)
        count += 1
    }

    @inline(__always)
    mutating func pop() -> Element? {
        guard count > 0 else { return nil }
        let element = (storage + head).move()
        head = (head + 1) & mask
        count -= 1
        return element
    }

    private mutating func grow() {
        let capacity = mask + 1
        let bigger = UnsafeMutablePointer<Element>.allocate(capacity: capacity * 2)
        let firstRun = capacity - head
        bigger.moveInitialize(from: storage + head, count: firstRun)
        (bigger + firstRun).moveInitialize(from: storage, count: head)
        storage.deallocate()
        storage = bigger
        mask = capacity * 2 - 1
        head = 0
    }
}

// MARK: - The two-object floor

/// The floor for actor rows (issue 12): two executor objects over one ready queue, so each job can
/// be run the way its role allows — which one object in both roles cannot do, because the runtime
/// calls the same `enqueue` for both roles and the executor cannot tell them apart.
///
/// - `taskExecutor` (a `TaskExecutor`, what tasks prefer): its jobs run
///   `runSynchronously(on: taskExecutor)`.
/// - `serialExecutor` (a `SerialExecutor`, the actors' `unownedExecutor`): its jobs run
///   `runSynchronously(isolatedTo: serialExecutor, taskExecutor: taskExecutor)`, so the runtime
///   knows it is on the actors' executor *and* the task's preferred executor: a call from one such
///   actor to another switches in place, with no job (the one-object floor enqueues one per call).
///   The price: returning from an actor to a task's nonisolated code changes serial executor
///   identity, so it costs a job where the one-object floor's may not (`task-actor-call`).
/// - Same-thread only: no inbox, no parking. The rows that use it (actor ping-pong, task → actor
///   calls) enqueue every job from the floor thread; a job from any other thread stops the process.
final class TwoObjectFloor: DrivenFloor, @unchecked Sendable {
    enum Role { case task, actor }
    struct Entry {
        let job: UnownedJob
        let role: Role
    }

    /// Floor thread only (see `Floor.ready` for why unchecked).
    @exclusivity(unchecked) private var ready = Ring<Entry>()
    @exclusivity(unchecked) var finished = false
    private let owner = pthread_self()
    private(set) var taskExecutor: FloorTaskExecutor!
    private(set) var serialExecutor: FloorSerialExecutor!

    init() {
        taskExecutor = FloorTaskExecutor(self)
        serialExecutor = FloorSerialExecutor(self)
    }

    @inline(__always)
    var isOwnerThread: Bool { pthread_equal(pthread_self(), owner) != 0 }

    @inline(__always)
    func push(_ job: consuming ExecutorJob, _ role: Role) {
        precondition(isOwnerThread, "TwoObjectFloor: a job was enqueued from another thread (same-thread rows only)")
        ready.push(Entry(job: UnownedJob(job), role: role))
    }

    /// Runs jobs until `finished` is set; the queue must not run dry before (nothing can refill it).
    func run() {
        let task = taskExecutor.asUnownedTaskExecutor()
        let serial = serialExecutor.asUnownedSerialExecutor()
        while !finished {
            guard let entry = ready.pop() else { fatalError("TwoObjectFloor: ready queue empty before the body finished") }
            switch entry.role {
            case .task: entry.job.runSynchronously(on: task)
            case .actor: entry.job.runSynchronously(isolatedTo: serial, taskExecutor: task)
            }
        }
    }

    var preferredExecutor: any TaskExecutor { taskExecutor }
}

/// The two-object floor's task executor role (see `TwoObjectFloor`).
final class FloorTaskExecutor: TaskExecutor, @unchecked Sendable {
    // unowned(unsafe): no reference-count check per enqueue; the floor outlives every job it runs.
    unowned(unsafe) let floor: TwoObjectFloor
    init(_ floor: TwoObjectFloor) { self.floor = floor }
    func enqueue(_ job: consuming ExecutorJob) { floor.push(job, .task) }
    func asUnownedTaskExecutor() -> UnownedTaskExecutor { UnownedTaskExecutor(ordinary: self) }
}

/// The two-object floor's serial executor role: the actors' `unownedExecutor`.
final class FloorSerialExecutor: SerialExecutor, @unchecked Sendable {
    // unowned(unsafe): no reference-count check per enqueue; the floor outlives every job it runs.
    unowned(unsafe) let floor: TwoObjectFloor
    init(_ floor: TwoObjectFloor) { self.floor = floor }
    func enqueue(_ job: consuming ExecutorJob) { floor.push(job, .actor) }
    func asUnownedSerialExecutor() -> UnownedSerialExecutor { UnownedSerialExecutor(ordinary: self) }
    func checkIsolated() { precondition(floor.isOwnerThread) }
    func isIsolatingCurrentContext() -> Bool? { floor.isOwnerThread }
}

// MARK: - Driving a floor

/// A floor executor that a benchmark drives on its own thread until the body's task is done.
protocol DrivenFloor: AnyObject, Sendable {
    init()
    /// What the body's task prefers.
    var preferredExecutor: any TaskExecutor { get }
    /// Set by the body's task as it ends; `run()` returns then.
    var finished: Bool { get set }
    /// Runs jobs (and whatever else the floor does) until `finished`.
    func run()
}

extension DrivenFloor {
    /// Runs `body` as a task preferring the floor and drives the floor until it finishes.
    static func run<T: Sendable>(_ body: @escaping @Sendable (Self) async throws -> T) throws -> T {
        let floor = Self()
        let box = ResultBox<T>()
        Task(executorPreference: floor.preferredExecutor) {
            do { box.value = .success(try await body(floor)) } catch { box.value = .failure(error) }
            floor.finished = true
        }
        floor.run()
        return try box.value!.get()
    }
}
