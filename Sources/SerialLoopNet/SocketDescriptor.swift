@preconcurrency import Glibc
import SerialLoop
import CSerialLoopShims
import Synchronization

/// What a listener and a connection share: their loop, their descriptor, the rules for using it
/// (nothing after `close()`), the one way non-blocking calls wait and fail, the hop onto the loop
/// for callers elsewhere, and closing through the loop.
///
/// Threads. Every async operation runs on the loop's thread: called there, it runs in place (no
/// hop, nothing extra but `isOnLoopThread`'s thread-local compare); called from anywhere else it hops onto the
/// loop for the operation (`onLoop`) and the caller resumes on its own executor. `close()` and the
/// sync calls work from any thread:
/// - The loop thread is the only one that closes the number (`loop.close`, which wakes the waiters
///   and makes the reactor forget it). `close()` from another thread marks the socket closed at
///   once and hands the close to the loop, ordered after the work already queued there.
/// - A sync call from another thread (`shutdown`, `getsockname`, `getpeername`) runs its syscall
///   under `numberLock` while the number is still ours, and the loop closes the number under the
///   same lock: such a call can never reach a number the loop has closed and the kernel has handed
///   out again. Sync calls on the loop thread, and every async operation (which runs there), need
///   no lock: the close runs on that thread too, never in the middle of them.
final class SocketDescriptor: @unchecked Sendable {
    let loop: Loop
    /// Stays readable after `close()`, for error messages.
    let fd: Int32
    /// "TCPListener" or "TCPConnection": names the API in messages.
    let owner: StaticString
    /// The fault injector the socket was created under (ChaosSeam.swift); `nil` on the real path.
    let chaos: (any SocketFaultInjector)?
    /// Set by the first `close()`, on any thread: from then on every operation fails with `EBADF`.
    private let closeRequested = Atomic<Bool>(false)
    /// Guards `numberIsOurs` (false once the loop has closed the number): see the type's comment.
    /// A pthread mutex rather than `Synchronization.Mutex`, which ThreadSanitizer does not see.
    private let numberLock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var numberIsOurs = true

    init(loop: Loop, fd: Int32, owner: StaticString, chaos: (any SocketFaultInjector)?) {
        self.loop = loop
        self.fd = fd
        self.owner = owner
        self.chaos = chaos
        pthread_mutex_init(numberLock, nil)
    }

    /// Whether `close()` was called (any thread).
    var isClosed: Bool { closeRequested.load(ordering: .acquiring) }

    // MARK: Closing

    /// Closes through the loop, so tasks suspended on the descriptor wake with a ``SerialLoop/LoopError`` and
    /// the reactor forgets it before its number can be reused. Idempotent; any thread.
    ///
    /// On the loop thread the close happens now, and a failure of `close(2)` is thrown. From another
    /// thread the socket is marked closed now (every later operation fails with `EBADF`) and the
    /// loop closes the number as its next piece of work, after what is already queued; this call
    /// does not wait for that, so there is nothing to throw (for a socket `close(2)` can only fail
    /// with `EBADF`, a number closed behind the socket's back). Once the loop has shut down (its
    /// reactor is gone), the number is closed at once with a plain `close(2)`.
    func close() throws(LoopError) {
        guard !closeRequested.exchange(true, ordering: .acquiringAndReleasing) else { return }
        if loop.isOnLoopThread && !loop.hasShutDown {
            try closeNumber()
        } else {
            closeNumberSoon()
        }
    }

    /// Loop thread: no off-thread syscall is running on the number or can start, then `loop.close`.
    private func closeNumber() throws(LoopError) {
        pthread_mutex_lock(numberLock)
        numberIsOurs = false
        pthread_mutex_unlock(numberLock)
        try loop.close(fd)
    }

    /// Any thread: the close, on the loop while it lives; after its shutdown, a plain `close(2)`.
    private func closeNumberSoon() {
        loop.onLoopThreadWhileAlive {
            try? self.closeNumber()
        } orElse: {
            self.withNumber { fd in _ = Glibc.close(fd) }
        }
    }

    /// A socket dropped without `close()` is closed the same way: through its loop (a plain
    /// `close(2)` would let a reused number inherit stale registrations).
    deinit {
        // No one else holds the socket now: nothing runs on the number concurrently.
        if !closeRequested.load(ordering: .acquiring) {
            let loop = self.loop, fd = self.fd
            if loop.isOnLoopThread && !loop.hasShutDown {
                try? loop.close(fd)
            } else {
                loop.onLoopThreadWhileAlive { try? loop.close(fd) } orElse: { _ = Glibc.close(fd) }
            }
        }
        pthread_mutex_destroy(numberLock)
        numberLock.deallocate()
    }

    /// Gives up the number without closing it, for a new owner on another loop: from now on
    /// this descriptor behaves as closed (operations fail with `EBADF`, its deinit closes nothing).
    /// Only for a number no operation has waited on, so that the loop's reactor never saw it
    /// (a just-accepted connection): any thread.
    func relinquish() -> Int32 {
        let wasClosed = closeRequested.exchange(true, ordering: .acquiringAndReleasing)
        precondition(!wasClosed, "relinquish() of a closed \(owner)")
        return fd
    }

    // MARK: Sync calls

    /// Runs a sync call on the number from any thread: in place on the loop thread, under the lock
    /// elsewhere (see the type's comment). Throws `EBADF` once `close()` was called.
    func withOpenNumber<T>(_ operation: String, _ body: (Int32) throws(LoopError) -> T) throws(LoopError) -> T {
        try checkOpen(operation)
        if loop.isOnLoopThread { return try body(fd) }
        pthread_mutex_lock(numberLock)
        defer { pthread_mutex_unlock(numberLock) }
        guard numberIsOurs else { throw LoopError(operation: "\(operation)(fd: \(fd))", errno: EBADF) }
        return try body(fd)
    }

    /// Runs `body` on the number if the loop has not closed it yet (under the lock).
    private func withNumber(_ body: (Int32) -> Void) {
        pthread_mutex_lock(numberLock)
        defer { pthread_mutex_unlock(numberLock) }
        guard numberIsOurs else { return }
        numberIsOurs = false
        body(fd)
    }

    // MARK: Async operations (on the loop thread)

    /// Every operation starts here: not closed (`EBADF` otherwise). Async operations call it on
    /// the loop's thread only (they hop there first: `onLoop`). In debug mode it also tells the loop
    /// the calling task's name, so a slow job of a task that uses sockets is reported by name.
    @inline(__always)
    func checkOpen(_ operation: String) throws(LoopError) {
        loop.noteCallingTaskName()
        if closeRequested.load(ordering: .relaxed) { throw LoopError(operation: "\(operation)(fd: \(fd))", errno: EBADF) }
    }

    /// A non-blocking call under the syscall discipline, plus readiness: `EAGAIN` suspends until
    /// the descriptor is ready for `interest`, `EINTR` (and any errno in `retrying`) tries again,
    /// anything else is a ``SerialLoop/LoopError`` naming the call, the descriptor and the errno.
    /// Loop thread only (callers hop there first).
    ///
    /// `call` gets the most bytes it may ask the kernel for: `Int.max`, unless a fault injector
    /// (ChaosSeam.swift) shortens the call, or fails it without calling `call` at all.
    /// - Returns: the call's non-negative result.
    nonisolated(nonsending) func perform<T: FixedWidthInteger>(
        _ operation: String, _ kind: SocketCall, waitingFor interest: Interest, retrying: [Int32] = [], _ call: (_ limit: Int) -> T
    ) async throws -> T {
        while true {
            try checkOpen(operation)
            let result = if chaos == nil { call(.max) } else { chaosLimit(kind).map(call) ?? -1 }
            if result >= 0 { return result }
            let code = c_serial_loop_errno()
            if retrying.contains(code) { continue }
            try await wait(afterFailureWith: code, operation, for: interest)
        }
    }

    enum Interest { case read, write }

    /// After a failed call: waits for readiness on `EAGAIN`, returns at once on `EINTR` (the
    /// caller retries), throws for anything else. Loop thread only.
    nonisolated(nonsending) func wait(afterFailureWith code: Int32, _ operation: String, for interest: Interest) async throws {
        switch code {
        case EAGAIN, EWOULDBLOCK:
            switch interest {
            case .read: try await loop.readable(fd)
            case .write: try await loop.writable(fd)
            }
        case EINTR:
            return
        default:
            throw LoopError(operation: "\(operation)(fd: \(fd))", errno: code)
        }
    }
}

// MARK: The hop onto the loop

/// The slow path of every async socket operation called off its loop's thread (from a plain
/// `Task {}`, `Task.detached`, an actor on another executor, the main actor): runs `body` — the
/// operation itself, called again — as part of the caller's task with the loop as its task
/// executor (`withTaskExecutorPreference`: structured, so cancellation and task-locals carry
/// over), and resumes the caller on its own executor afterwards.
///
/// Not inlined: the fast path (already on the loop thread) keeps its small frame.
///
/// An explicit `isolated` parameter (`#isolation` at the call site, inside the operations'
/// `nonisolated(nonsending)` bodies), not `nonisolated(nonsending)` itself: written that way, a
/// release build (`-O`, Swift 6.3.1) lost the switch back to the caller's executor after `hop`
/// returned — a plain task carried on on the loop's thread, and an actor calling `read` carried
/// on there outside its isolation ("Incorrect actor executor assumption"); debug builds were right.
/// With the parameter, the switch back happens in both (SocketsFromAnyTaskTests, run in release).
/// - Throws: whatever `body` throws; ``SerialLoop/LoopError/loopHasShutDown(_:)`` when the loop has shut down
///   (its jobs then run elsewhere: `body` is not called).
@inline(never)
func onLoop<T: Sendable>(
    _ loop: Loop, isolation: isolated (any Actor)? = #isolation,
    _ operation: @autoclosure () -> String, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    if loop.hasShutDown { throw LoopError.loopHasShutDown(operation()) }
    return try await hop(to: loop, operation(), body)
}

/// `@concurrent`: the preference is set up, and dropped, outside the caller's isolation. Were it
/// set up inside an actor's isolation (`withTaskExecutorPreference` in the `nonisolated(nonsending)`
/// caller), the return to that actor would happen while the loop is still preferred, and a default
/// actor would then carry on *on the loop's thread* (measured: it did) instead of where it was.
/// From a nonisolated caller, entering this function is no switch at all.
@concurrent
private func hop<T: Sendable>(to loop: Loop, _ operation: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withTaskExecutorPreference(loop) {
        // Off the loop thread here only if the loop shut down since the check (its jobs then run
        // on a stand-in thread): calling `body` would hop again, for ever.
        guard loop.isOnLoopThread else { throw LoopError.loopHasShutDown(operation) }
        return try await body()
    }
}
