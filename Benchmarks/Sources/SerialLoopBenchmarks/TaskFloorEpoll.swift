@preconcurrency import Glibc
import CBenchmarkShims

/// The task floor for descriptor waits: the least a *task* awaiting readiness can cost in Swift
/// 6.3.1, so the reference for SerialLoop's `readable` and readiness-stream rows (raw epoll is the
/// reference for callbacks, which need no task).
///
/// - The one-object floor's shape (Floor.swift): one object in both executor roles, a ring of jobs,
///   every job run `on:` it as task executor; tasks prefer it, as they prefer the loop.
/// - A wait is one executor-inheriting continuation (`_unsafeInheritExecutor_withUnsafeContinuation`,
///   the variant SerialLoop uses: no executor switch on the way in) stored in a table indexed by
///   descriptor, and resumed when `epoll_wait` reports the descriptor. Descriptors stay registered
///   (level-triggered `EPOLLIN`), as a loop keeps its registrations across waits.
/// - What it leaves out, and any real API must have: cancellation (a wait here can never end
///   early), errors (a closed or invalid descriptor), more than one waiter per descriptor, timers,
///   cross-thread work. So it is a lower bound, not a competitor.
final class EpollTaskFloor: TaskExecutor, SerialExecutor, DrivenFloor, @unchecked Sendable {
    /// Floor thread only (see `Floor.ready` for why unchecked).
    @exclusivity(unchecked) private var ready = JobRing()
    /// Floor thread only: the waiting task of each descriptor, by descriptor number.
    @exclusivity(unchecked) private var waiters = [UnsafeContinuation<Void, Never>?](repeating: nil, count: 1024)
    @exclusivity(unchecked) var finished = false
    private let epollFD = epoll_create1(0)
    private let owner = pthread_self()

    deinit { close(epollFD) }

    func enqueue(_ job: consuming ExecutorJob) {
        precondition(pthread_equal(pthread_self(), owner) != 0, "EpollTaskFloor: same-thread rows only")
        ready.push(UnownedJob(job))
    }

    func asUnownedTaskExecutor() -> UnownedTaskExecutor { UnownedTaskExecutor(ordinary: self) }
    func asUnownedSerialExecutor() -> UnownedSerialExecutor { UnownedSerialExecutor(ordinary: self) }
    func checkIsolated() { precondition(pthread_equal(pthread_self(), owner) != 0) }
    func isIsolatingCurrentContext() -> Bool? { pthread_equal(pthread_self(), owner) != 0 }

    /// Watches `fd` for reading from now on.
    func register(_ fd: Int32) {
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.fd = fd
        precondition(epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) == 0)
    }

    /// Suspends until `fd` (registered, below 1024) is readable. One waiter per descriptor.
    nonisolated(nonsending) func readable(_ fd: Int32) async {
        await _unsafeInheritExecutor_withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            waiters[Int(fd)] = continuation
        }
    }

    /// Runs jobs until `finished`; with none ready, blocks in `epoll_wait` and resumes the waiters
    /// of the descriptors it reports (an event with no waiter is ignored).
    func run() {
        let executor = asUnownedTaskExecutor()
        var events = [epoll_event](repeating: epoll_event(), count: 8)
        while !finished {
            if let job = ready.pop() {
                job.runSynchronously(on: executor)
                continue
            }
            let count = epoll_wait(epollFD, &events, 8, -1)
            for index in 0..<Int(max(count, 0)) {
                let fd = Int(events[index].data.fd)
                if let waiter = waiters[fd] {
                    waiters[fd] = nil
                    waiter.resume()
                }
            }
        }
    }

    var preferredExecutor: any TaskExecutor { self }
}

/// `serialLoopPingPong` on the task floor: two tasks, each side `await floor.readable(fd)` then
/// `read`/`write` one byte.
func taskFloorPingPong(_ n: Int) throws -> Double {
    try EpollTaskFloor.run { floor in
        let (a, b) = socketPair()
        floor.register(a)
        floor.register(b)
        let echo = Task(executorPreference: floor) {
            var byte: UInt8 = 0
            for _ in 0..<n + 100 {
                await floor.readable(b)
                _ = read(b, &byte, 1)
                _ = write(b, &byte, 1)
            }
        }
        var byte: UInt8 = 1
        func round() async {
            _ = write(a, &byte, 1)
            await floor.readable(a)
            _ = read(a, &byte, 1)
        }
        for _ in 0..<100 { await round() }      // warm-up, as the SerialLoop rows
        let start = ContinuousClock.now
        for _ in 0..<n { await round() }
        let result = nanoseconds(since: start) / Double(n)
        await echo.value
        close(a)
        close(b)
        return result
    }
}
