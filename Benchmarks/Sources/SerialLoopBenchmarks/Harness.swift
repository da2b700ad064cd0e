@preconcurrency import Glibc
import Dispatch

/// One benchmark: runs `n` operations on one executor and returns the figure to report.
/// `method` is the one-line note RESULTS.md prints for the row: how this peer is driven (issue 12:
/// each peer measured the fastest way its own docs allow, and the table must say how).
struct Benchmark: Sendable {
    let workload: String
    let executor: String
    let unit: String
    let method: String
    let run: @Sendable (Int) throws -> Double

    init(workload: String, executor: String, unit: String, method: String, run: @escaping @Sendable (Int) throws -> Double) {
        self.workload = workload
        self.executor = executor
        self.unit = unit
        self.method = method
        self.run = run
    }
}

/// Thrown by a row that cannot run on this machine (e.g. too few descriptors allowed): main prints
/// a SKIP line with the reason instead of a result, and the driver reports the row as skipped.
struct SkipBenchmark: Error {
    let reason: String
}

/// Wall-clock nanoseconds since `start`.
func nanoseconds(since start: ContinuousClock.Instant) -> Double {
    let elapsed = start.duration(to: .now)
    return Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
}

/// CPU time of the whole process (all threads), in nanoseconds.
func processCPUNanoseconds() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &spec)
    return Double(spec.tv_sec) * 1e9 + Double(spec.tv_nsec)
}

/// Resident set size in bytes, from /proc/self/statm.
func residentBytes() -> Double {
    guard let file = fopen("/proc/self/statm", "r") else { return 0 }
    defer { fclose(file) }
    var size = 0, resident = 0
    withUnsafeMutablePointer(to: &size) { s in
        withUnsafeMutablePointer(to: &resident) { r in
            _ = withVaList([s, r]) { vfscanf(file, "%ld %ld", $0) }
        }
    }
    return Double(resident) * Double(sysconf(Int32(_SC_PAGESIZE)))
}

/// Runs `body` as a task on Swift's default (global) executor and blocks this (main, not
/// cooperative) thread until it finishes.
func onDefaultExecutor<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let done = DispatchSemaphore(value: 0)
    let box = ResultBox<T>()
    Task {
        do { box.value = .success(try await body()) } catch { box.value = .failure(error) }
        done.signal()
    }
    done.wait()
    return try box.value!.get()
}

final class ResultBox<T>: @unchecked Sendable {
    var value: Result<T, any Error>?
}

/// A value shared by code that runs on one executor's thread (benchmarks only).
final class Shared<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}

func socketPair() -> (Int32, Int32) {
    var fds: [Int32] = [0, 0]
    precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds) == 0)
    return (fds[0], fds[1])
}

func startThread(_ body: @escaping @Sendable () -> Void) -> pthread_t {
    let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var thread = pthread_t()
    precondition(pthread_create(&thread, nil, { raw in
        Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue().body()
        return nil
    }, box) == 0)
    return thread
}

private final class ThreadBody {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}

/// A one-shot "done" signal from any thread to a waiting thread (no spinning: the waiter sleeps,
/// so it does not take a core from the threads being measured).
final class Completion: Sendable {
    private let semaphore = DispatchSemaphore(value: 0)
    func signal() { semaphore.signal() }
    func wait() { semaphore.wait() }
}

/// A one-shot hand-off between threads.
final class Latch<Value: Sendable>: @unchecked Sendable {
    private let semaphore = DispatchSemaphore(value: 0)
    private var value: Value?
    func fulfil(_ value: Value) { self.value = value; semaphore.signal() }
    func wait() -> Value { semaphore.wait(); return value! }
}
