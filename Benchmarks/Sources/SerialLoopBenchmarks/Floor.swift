@preconcurrency import Glibc
import Synchronization

/// The floor: the least a single-threaded Swift executor can do. One object in both roles, a plain
/// array as the ready queue, no locks on the same-thread path, every job run `on:` itself as task
/// executor. Cross-thread work goes through a mutex-protected list and a condition variable.
/// No timers, no I/O: it is the lower bound for queueing and running jobs, nothing more.
final class Floor: TaskExecutor, SerialExecutor, @unchecked Sendable {
    private var queue: [UnownedJob] = []
    private var head = 0
    private let owner = pthread_self()
    private var callbacks: [() -> Void] = []
    private let inbox = Mutex<[@Sendable () -> Void]>([])
    private let hasInbox = Atomic<Bool>(false)
    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()
    var finished = false

    init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&condition, nil)
    }

    func enqueue(_ job: consuming ExecutorJob) {
        if pthread_equal(pthread_self(), owner) != 0 {
            queue.append(UnownedJob(job))
        } else {
            let unowned = UnownedJob(job)
            executeFromAnyThread { [unowned self] in self.queue.append(unowned) }
        }
    }

    /// Same-thread callback (call_soon).
    func execute(_ callback: @escaping () -> Void) { callbacks.append(callback) }

    /// Cross-thread callback: locked list + wake.
    func executeFromAnyThread(_ callback: @escaping @Sendable () -> Void) {
        inbox.withLock { $0.append(callback) }
        hasInbox.store(true, ordering: .sequentiallyConsistent)
        pthread_mutex_lock(&mutex)
        pthread_cond_signal(&condition)
        pthread_mutex_unlock(&mutex)
    }

    func asUnownedTaskExecutor() -> UnownedTaskExecutor { UnownedTaskExecutor(ordinary: self) }
    func asUnownedSerialExecutor() -> UnownedSerialExecutor { UnownedSerialExecutor(ordinary: self) }
    func checkIsolated() { precondition(pthread_equal(pthread_self(), owner) != 0) }

    /// Runs jobs until `finished` is set.
    func run() {
        while !finished {
            if head < queue.count {
                let job = queue[head]
                head += 1
                job.runSynchronously(on: asUnownedTaskExecutor())
                continue
            }
            if !callbacks.isEmpty {
                let batch = callbacks
                callbacks.removeAll(keepingCapacity: true)
                for callback in batch { callback() }
                continue
            }
            queue.removeAll(keepingCapacity: true)
            head = 0
            if hasInbox.load(ordering: .sequentiallyConsistent) {
                hasInbox.store(false, ordering: .sequentiallyConsistent)
                let batch = inbox.withLock { items in
                    defer { items.removeAll(keepingCapacity: true) }
                    return items
                }
                for callback in batch { callback() }
                continue
            }
            pthread_mutex_lock(&mutex)
            if !hasInbox.load(ordering: .sequentiallyConsistent) && !finished {
                pthread_cond_wait(&condition, &mutex)
            }
            pthread_mutex_unlock(&mutex)
        }
    }

    /// Runs `body` as a task preferring the floor and drives the floor until it finishes.
    static func run<T: Sendable>(_ body: @escaping @Sendable (Floor) async throws -> T) throws -> T {
        let floor = Floor()
        let box = ResultBox<T>()
        Task(executorPreference: floor) {
            do { box.value = .success(try await body(floor)) } catch { box.value = .failure(error) }
            floor.finished = true
        }
        floor.run()
        return try box.value!.get()
    }
}
