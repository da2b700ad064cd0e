@preconcurrency import Glibc
import Testing
@testable import SerialLoop

// The ground the reactor's unit tests (ReactorTests.swift) stand on: each scenario is written once,
// generic over the backend, and run twice — against `InMemoryBackend` (simulated descriptors, no
// kernel) and against `EpollBackend` (real sockets and files). A `DescriptorWorld` gives a
// scenario the same verbs on both: open, make readable, dup, close behind the loop's back, reopen.

/// The backends the scenarios run on.
enum Backing: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case inMemory, epoll

    var testDescription: String { rawValue }

    /// Runs `scenario` on a fresh reactor over this backend, then resumes whatever waiters it
    /// left (so no task stays suspended), checks the reactor's invariants, and closes everything.
    func run(_ scenario: some ReactorScenario) async throws {
        switch self {
        case .inMemory:
            let backend = InMemoryBackend(firstNumber: 100)
            var reactor = Reactor(backend: backend)
            try await Self.run(scenario, &reactor, InMemoryWorld(backend))
        case .epoll:
            var reactor = Reactor(backend: try EpollBackend())
            try await Self.run(scenario, &reactor, KernelWorld())
        }
    }

    private static func run<B: PollBackend & ~Copyable>(_ scenario: some ReactorScenario, _ reactor: inout Reactor<B>, _ world: some DescriptorWorld) async throws {
        defer {
            for waiter in reactor.removeAllWaiters() { waiter.continuation.resume(throwing: CancellationError()) }
            reactor.close()
            world.closeAll()
        }
        try await scenario.run(&reactor, world)
        reactor.checkInvariants()
    }
}

/// One reactor test, written once for every backend.
protocol ReactorScenario {
    func run<B: PollBackend & ~Copyable>(_ reactor: inout Reactor<B>, _ world: some DescriptorWorld) async throws
}

/// Descriptors a scenario can play with. Numbers are chosen by the world; "reopen at" asks for the
/// lowest free number not below the given one, as the kernel's `F_DUPFD` does, and returns what
/// it got — a scenario that needs the number reused checks it.
protocol DescriptorWorld: AnyObject {
    /// A connected socket: writable, not readable.
    func openSocket() -> Int32
    /// Data arrives: the description at `fd` becomes readable (level: until drained).
    func makeReadable(_ fd: Int32)
    /// Reads everything: the description at `fd` is no longer readable.
    func drain(_ fd: Int32)
    /// A regular file: always ready, cannot be watched.
    func openRegularFile() -> Int32
    /// A second number for the description at `fd`.
    func dup(_ fd: Int32) -> Int32
    /// `close(2)` without telling the reactor.
    func closeBehindTheLoop(_ fd: Int32)
    /// A new socket at the lowest free number not below `fd`.
    func reopenSocket(at fd: Int32) -> Int32
    /// A new regular file at the lowest free number not below `fd`.
    func reopenRegularFile(at fd: Int32) -> Int32
    /// A number that is not open and that the world will not hand out.
    func unusedNumber() -> Int32
    func closeAll()
}

/// Simulated descriptors (`InMemoryBackend`).
final class InMemoryWorld: DescriptorWorld {
    let backend: InMemoryBackend
    init(_ backend: InMemoryBackend) { self.backend = backend }

    func openSocket() -> Int32 { backend.open(.socket) }
    func makeReadable(_ fd: Int32) { backend.setReadiness(fd, [.read, .write]) }
    func drain(_ fd: Int32) { backend.setReadiness(fd, .write) }
    func openRegularFile() -> Int32 { backend.open(.regularFile) }
    func dup(_ fd: Int32) -> Int32 { backend.dup(fd) }
    func closeBehindTheLoop(_ fd: Int32) { backend.close(fd) }
    func reopenSocket(at fd: Int32) -> Int32 { backend.open(.socket, atLeast: fd) }
    func reopenRegularFile(at fd: Int32) -> Int32 { backend.open(.regularFile, atLeast: fd) }
    func unusedNumber() -> Int32 { 90 }                       // below `firstNumber`
    func closeAll() {}
}

/// Real descriptors, all in `highDuplicate`'s slot 5 (the reactor suite is serialized, so nothing
/// else opens or closes numbers there while a scenario runs). A socket's peer keeps a low number.
final class KernelWorld: DescriptorWorld {
    static let slot: Int32 = 5
    private var open: Set<Int32> = []
    /// Socket (or a dup of one) → the other end of its pair.
    private var peers: [Int32: Int32] = [:]
    /// Every peer opened, to close at the end (a reopened number's old peer included).
    private var allPeers: [Int32] = []

    // Every descriptor is close-on-exec: a child process spawned by another test (ModeTests) must
    // not keep a description alive after the scenario closed it — epoll would go on watching it.

    private func keepHigh(_ fd: Int32, at lowest: Int32? = nil) -> Int32 {
        let high = lowest.map { fcntl(fd, F_DUPFD_CLOEXEC, $0) } ?? highDuplicate(fd, slot: Self.slot)
        precondition(high >= 0, "F_DUPFD failed: errno \(errno)")
        _ = fcntl(high, F_SETFD, FD_CLOEXEC)
        close(fd)
        open.insert(high)
        return high
    }

    private func socket(at lowest: Int32?) -> Int32 {
        var fds: [Int32] = [0, 0]
        let flags = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        precondition(socketpair(AF_UNIX, flags, 0, &fds) == 0, "socketpair failed: errno \(errno)")
        let (a, b) = (fds[0], fds[1])
        let fd = keepHigh(a, at: lowest)
        peers[fd] = b
        allPeers.append(b)
        return fd
    }

    private func regularFile(at lowest: Int32?) -> Int32 {
        let fd = Glibc.open("/proc/self/status", O_RDONLY | O_CLOEXEC)
        precondition(fd >= 0, "open failed: errno \(errno)")
        return keepHigh(fd, at: lowest)
    }

    func openSocket() -> Int32 { socket(at: nil) }
    func makeReadable(_ fd: Int32) { writeAll(peers[fd]!, "x") }
    func drain(_ fd: Int32) { _ = readString(fd) }
    func openRegularFile() -> Int32 { regularFile(at: nil) }

    func dup(_ fd: Int32) -> Int32 {
        let copy = highDuplicate(fd, slot: Self.slot)
        _ = fcntl(copy, F_SETFD, FD_CLOEXEC)
        open.insert(copy)
        peers[copy] = peers[fd]
        return copy
    }

    func closeBehindTheLoop(_ fd: Int32) {
        precondition(open.remove(fd) != nil, "closing fd \(fd), which this world did not open")
        close(fd)
    }

    func reopenSocket(at fd: Int32) -> Int32 { socket(at: fd) }
    func reopenRegularFile(at fd: Int32) -> Int32 { regularFile(at: fd) }

    func unusedNumber() -> Int32 {
        let fd = openSocket()                                 // a number in the slot, then freed
        closeBehindTheLoop(fd)
        return fd
    }

    func closeAll() {
        for fd in open { close(fd) }
        for peer in allPeers { close(peer) }
        open = []
        peers = [:]
        allPeers = []
    }
}

/// A task suspended on a continuation that a scenario hands to the reactor as a waiter.
struct Waiting {
    let id: UInt64
    let fd: Int32
    let task: Task<Result<Void, any Error>, Never>

    /// Suspends a new task and returns its continuation for the reactor.
    static func suspend(id: UInt64, fd: Int32) async -> (Waiting, LoopContinuation<Void>) {
        let (stream, handOff) = AsyncStream.makeStream(of: UnsafeContinuation<Void, any Error>.self)
        let task = Task<Result<Void, any Error>, Never> {
            do {
                try await withUnsafeThrowingContinuation { handOff.yield($0) }
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        var iterator = stream.makeAsyncIterator()
        let raw = await iterator.next()!
        return (Waiting(id: id, fd: fd, task: task), LoopContinuation(raw, isForeign: false))
    }

    /// How the wait ended. Call only once the reactor no longer holds the waiter (else it hangs).
    var outcome: Result<Void, any Error> {
        get async { await task.value }
    }

    /// Whether the wait ended without an error (the descriptor is ready).
    var succeeded: Bool {
        get async { if case .success = await outcome { true } else { false } }
    }

    /// Whether the wait ended with `CancellationError`.
    var wasCancelled: Bool {
        get async { if case .failure(let error) = await outcome { error is CancellationError } else { false } }
    }

    /// The errno of the error the wait ended with (`nil`: it ended without one).
    var errno: Int32? {
        get async {
            guard case .failure(let error) = await outcome else { return nil }
            return (error as? LoopError)?.errno ?? -1
        }
    }
}

extension Reactor where Backend: ~Copyable {
    /// Suspends a task and adds it as a waiter on `fd`. If the reactor refuses it, the task is
    /// resumed with the error, which is rethrown.
    mutating func wait(id: UInt64, fd: Int32, _ interest: Interest) async throws -> (Waiting, WaitOutcome) {
        let (waiting, continuation) = await Waiting.suspend(id: id, fd: fd)
        do {
            let outcome = try addWaiter(id: id, continuation, fd: fd, for: interest)
            if outcome == .alwaysReady { continuation.resume() }
            return (waiting, outcome)
        } catch {
            continuation.resume(throwing: error)
            throw error
        }
    }

    /// Whether the reactor holds `waiting` as a waiter. Subscripts, not methods: `#expect` cannot
    /// decompose a method call on a noncopyable value. Both look at one descriptor only: on epoll
    /// the table reaches the high test numbers (~20 000 entries), too many to scan per check.
    subscript(isWaiting waiting: Waiting) -> Bool {
        guard Int(waiting.fd) < registrationTableSize else { return false }
        let registration = registrations[Int(waiting.fd)]
        return (registration.readers + registration.writers).contains { $0.id == waiting.id }
    }

    /// What the backend is asked to watch for `fd`.
    subscript(kernelInterestOf fd: Int32) -> Interest {
        Int(fd) < registrationTableSize ? registrations[Int(fd)].kernelInterest : []
    }

    /// Polls without blocking; returns how many descriptor events arrived (dropped ones included).
    @discardableResult
    mutating func pollNow() throws -> Int {
        try poll(timeoutNanoseconds: 0) { _ in }.events
    }
}
