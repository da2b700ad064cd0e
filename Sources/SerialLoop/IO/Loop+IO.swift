@preconcurrency import Glibc
import CSerialLoopShims
import Synchronization

extension Loop {
    /// Suspends until `fd` is readable (or at end-of-file, hung up, or in error: a read will not block).
    ///
    /// Level-triggered: if the descriptor is already readable, the task resumes on the next tick.
    /// Like any readiness API, it can report readiness that a concurrent reader consumed first, so
    /// read non-blocking and wait again on `EAGAIN`. Many tasks may wait on one descriptor; all wake.
    /// Regular files and directories are always ready: the call returns at once.
    ///
    /// - Throws: `CancellationError` when the task is cancelled (the waiter is removed at once);
    ///   ``LoopError`` naming `readable(fd:)` and the errno for an invalid or closed descriptor, or
    ///   when the descriptor is closed through ``close(_:)`` / ``deregister(_:)`` while waiting;
    ///   ``LoopError/loopHasShutDown(_:)`` once the loop has shut down.
    ///
    /// Runs on the caller's executor (`nonisolated(nonsending)`): waiting costs no executor switch
    /// on the way in, and on the way out only the one back to the caller (see `Loop.suspend`).
    /// Callable from any task; the task resumes on its own executor.
    /// - Parameter fd: the descriptor to wait on; it stays open and registered (lazily) after the wait.
    nonisolated(nonsending) public func readable(_ fd: Int32) async throws {
        try await waitForReadiness(fd, .read)
    }

    /// Suspends until `fd` is writable (or hung up / in error: a write will not block).
    /// The same rules as ``readable(_:)``.
    /// Callable from any task; the task resumes on its own executor.
    /// - Parameter fd: the descriptor to wait on.
    /// - Throws: as ``readable(_:)``, naming `writable(fd:)`.
    nonisolated(nonsending) public func writable(_ fd: Int32) async throws {
        try await waitForReadiness(fd, .write)
    }

    /// Inlined: an `async` call of its own would cost each wait a frame from the task allocator.
    @inline(__always)
    nonisolated(nonsending) private func waitForReadiness(_ fd: Int32, _ interest: Interest) async throws {
        try await suspend(DescriptorWait(fd: fd, interest: interest, on: self))
    }

    // MARK: Closing descriptors

    /// Stops watching `fd` and closes it. Tasks waiting on it wake with a ``LoopError``; its reader
    /// and writer callbacks are removed. Use this instead of `close(2)` for any descriptor the loop
    /// has seen: the kernel silently drops closed descriptors from epoll, so after `close(2)` the
    /// loop learns of it only by checking (see "Descriptors closed behind the loop's back" in
    /// Reactor+Verification.swift): a later wait on the number within about a millisecond,
    /// waiters that were already there within about a second; its callbacks are never called again.
    ///
    /// `close(2)` is called once and never retried: on Linux the number is released even when the
    /// call reports `EINTR` (a signal arrived while the kernel flushed), so a retry could close a
    /// number another thread has just been given. `EINTR` is therefore success here.
    /// - Throws: ``LoopError`` naming `close(fd:)` for any other failure (`EBADF`: the number was
    ///   not open; `EIO`: a deferred write error).
    /// - Precondition: called on the loop's thread (a trap otherwise; from async code run the
    ///   caller on the loop: `Task(executorPreference: loop)` / `withTaskExecutorPreference(loop)`).
    /// - Parameter fd: the descriptor to close; the loop forgets it before its number can be reused.
    public func close(_ fd: Int32) throws(LoopError) {
        preconditionOnLoopThread("Loop.close(_:)")
        deregister(fd)
        try closeOnce(fd)
    }

    /// `close(2)` without the EINTR retry of `syscall` (see ``close(_:)``). `call` is `close(2)`;
    /// tests pass a stand-in that fails.
    @inline(__always)
    func closeOnce(_ fd: Int32, _ call: (Int32) -> Int32 = { Glibc.close($0) }) throws(LoopError) {
        if call(fd) != 0 {
            let code = c_serial_loop_errno()
            if code != EINTR { throw LoopError(operation: "close(fd: \(fd))", errno: code) }
        }
    }

    /// Runs `body` on the loop's thread while the loop lives — now if the caller is on that thread,
    /// else after the work already queued there — and `reject` instead once it has shut down (on the
    /// caller's thread, or on the loop's as it shuts down). Any thread. For the socket layer's
    /// closes, which must happen exactly once even when they race with a shutdown.
    package func onLoopThreadWhileAlive(_ body: @escaping @Sendable () -> Void, orElse reject: @escaping @Sendable () -> Void) {
        onLiveLoop(body, orElse: reject)
    }

    /// Stops watching `fd` without closing it: waiters wake with a ``LoopError``, callbacks are
    /// removed, and late kernel events for it are ignored.
    /// - Precondition: called on the loop's thread.
    /// - Parameter fd: the descriptor to forget; the caller still owns it and closes it.
    public func deregister(_ fd: Int32) {
        preconditionOnLoopThread("Loop.deregister(_:)")
        let (readers, writers) = reactor.forget(fd)
        for waiter in readers + writers { waiter.continuation.resume(throwing: LoopError.descriptorClosed(waiter.operation)) }
    }

    // MARK: Reader / writer callbacks (add_reader / add_writer)

    /// Calls `callback` on the loop each tick while `fd` is readable, until ``removeReader(_:)``
    /// (asyncio's `add_reader`). Replaces an existing reader callback for `fd`.
    /// - Throws: ``LoopError`` for an invalid descriptor, or `EPERM` for a regular file (always
    ///   readable, so the callback would spin).
    /// - Precondition: called on the loop's thread.
    /// - Parameters:
    ///   - fd: the descriptor to watch (non-blocking, so the callback can read until `EAGAIN`).
    ///   - callback: the code to run, on the loop's thread.
    ///   - file: the call site, for debug-mode reports (leave the default).
    ///   - line: the call site's line (leave the default).
    public func addReader(_ fd: Int32, _ callback: @escaping () -> Void, file: StaticString = #fileID, line: UInt = #line) throws(LoopError) {
        try setCallback(callback, fd: fd, for: .read, file: file, line: line)
    }

    /// Removes the reader callback for `fd`. Returns whether there was one.
    /// Loop thread only (a trap otherwise).
    /// - Parameter fd: the descriptor whose reader callback to remove.
    @discardableResult
    public func removeReader(_ fd: Int32) -> Bool {
        removeCallback(fd: fd, for: .read)
    }

    /// Calls `callback` on the loop each tick while `fd` is writable (asyncio's `add_writer`).
    /// Replaces an existing writer callback for `fd`; remove it with ``removeWriter(_:)``.
    /// - Throws: ``LoopError`` for an invalid descriptor, or `EPERM` for a regular file.
    /// - Precondition: called on the loop's thread.
    /// - Parameters:
    ///   - fd: the descriptor to watch.
    ///   - callback: the code to run, on the loop's thread.
    ///   - file: the call site, for debug-mode reports (leave the default).
    ///   - line: the call site's line (leave the default).
    public func addWriter(_ fd: Int32, _ callback: @escaping () -> Void, file: StaticString = #fileID, line: UInt = #line) throws(LoopError) {
        try setCallback(callback, fd: fd, for: .write, file: file, line: line)
    }

    /// Removes the writer callback for `fd`. Returns whether there was one.
    /// Loop thread only (a trap otherwise).
    /// - Parameter fd: the descriptor whose writer callback to remove.
    @discardableResult
    public func removeWriter(_ fd: Int32) -> Bool {
        removeCallback(fd: fd, for: .write)
    }

    /// `addReader` and `addWriter`: the one implementation, by direction. The descriptor is checked
    /// here, with a system call, because a callback (unlike a wait) is never verified later.
    private func setCallback(_ callback: @escaping () -> Void, fd: Int32, for interest: Interest, file: StaticString, line: UInt) throws(LoopError) {
        preconditionOnLoopThread("Loop.\(interest.callbackName("add"))(_:_:)")
        let operation = "\(interest.callbackName("add"))(fd: \(fd))"
        if fd < 0 { throw LoopError(operation: operation, errno: EBADF) }
        if fcntl(fd, F_GETFD) < 0 { throw LoopError(operation: operation, errno: errno) }
        try reactor.setCallback(tagged(callback, file: file, line: line), fd: fd, for: interest, operation: operation)
    }

    /// `removeReader` and `removeWriter`.
    private func removeCallback(fd: Int32, for interest: Interest) -> Bool {
        preconditionOnLoopThread("Loop.\(interest.callbackName("remove"))(_:)")
        return (try? reactor.setCallback(nil, fd: fd, for: interest, operation: interest.callbackName("remove"))) ?? false
    }

    /// How many tasks are suspended in `readable`/`writable`. Loop thread only.
    public var pendingWaiterCount: Int {
        preconditionOnLoopThread("Loop.pendingWaiterCount")
        return reactor.waiterCount
    }

    /// How many descriptors the kernel is watching for the loop (not counting its wake-up eventfd).
    /// Interest is dropped lazily, so this can stay above zero for a while after waits end.
    /// Loop thread only (a trap elsewhere).
    public var watchedDescriptorCount: Int {
        preconditionOnLoopThread("Loop.watchedDescriptorCount")
        return reactor.kernelRegistrationCount
    }
}

/// A wait for a descriptor's readiness: one per `readable`/`writable` call, or one per readiness
/// stream, started again for each element (Loop+Readiness.swift). It registers an entry in the
/// descriptor's waiter list (the state machine: ``SingleWait``).
final class DescriptorWait: SingleWait, @unchecked Sendable {
    // Unchecked Sendable: shared with the cancellation handler, which only sends it to the loop's
    // thread (`CancellationCallback`); `phase` is read and written there only.
    typealias Value = Void
    let fd: Int32
    let interest: Interest
    let loop: Loop
    @exclusivity(unchecked) var phase = WaitPhase.idle

    init(fd: Int32, interest: Interest, on loop: Loop) {
        self.fd = fd
        self.interest = interest
        self.loop = loop
    }

    var operation: String { interest.waitOperation(fd: fd) }

    @inline(__always)
    func register(_ continuation: LoopContinuation<Void>, on loop: Loop) -> UInt64? {
        do {
            // No syscall here when the kernel already watches `fd`: that is the hot path of every
            // socket loop (an fcntl validity check per wait cost 2 of the 8 syscalls of a
            // socketpair round trip). Such a wait is verified later instead, unless an event comes
            // first: see "Descriptors closed behind the loop's back" in Reactor+Verification.swift.
            let id = loop.makeWaiterID()
            switch try loop.reactor.addWaiter(id: id, continuation, fd: fd, for: interest) {
            case .waiting:
                if loop.isObserved { loop.noteWaitStart(id) }
                return id
            case .alwaysReady:
                continuation.resume()
                return nil
            }
        } catch {
            continuation.resume(throwing: error)
            return nil
        }
    }

    func withdraw(_ id: UInt64, on loop: Loop) -> LoopContinuation<Void>? {
        loop.reactor.removeWaiter(id: id, fd: fd, for: interest)
    }
}
