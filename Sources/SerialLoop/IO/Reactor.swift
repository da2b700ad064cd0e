#if os(Linux)
/// The backend the loop uses: one concrete type, so the reactor's calls into it are static.
typealias PlatformBackend = EpollBackend
#endif

/// A task suspended in `readable`/`writable` on one descriptor. (Outside the generic reactor, so
/// its layout does not depend on the backend.)
struct ReadinessWaiter {
    let id: UInt64
    let continuation: LoopContinuation<Void>
    let fd: Int32
    let interest: Interest

    var operation: String { interest.waitOperation(fd: fd) }
}

/// One descriptor number's entry in the reactor's table.
struct Registration {
    var generation: UInt32 = 0
    /// What the backend watches for this descriptor; empty when it is not watched.
    var kernelInterest: Interest = []
    /// A waiter joined cached interest and no event has arrived since (Reactor+Verification.swift).
    var isUnverified = false
    var readers: [ReadinessWaiter] = []
    var writers: [ReadinessWaiter] = []
    var readerCallback: (() -> Void)? = nil
    var writerCallback: (() -> Void)? = nil

    var wanted: Interest {
        var interest: Interest = []
        if !readers.isEmpty || readerCallback != nil { interest.insert(.read) }
        if !writers.isEmpty || writerCallback != nil { interest.insert(.write) }
        return interest
    }

    var hasWaiters: Bool { !readers.isEmpty || !writers.isEmpty }

    /// The event tag: the number in the low half, the generation in the high half.
    func token(_ fd: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: fd)) | UInt64(generation) << 32
    }
}

/// Who waits on which descriptor, and what the backend is currently asked to watch.
///
/// Owned by the loop thread. Registrations live in an array indexed by descriptor number (numbers
/// are small and dense). The array only grows for a descriptor that is open (asked of the backend
/// when a number beyond the table is first seen), so its size is bounded by the highest open
/// descriptor, never by a number a caller made up (`readable(Int32.max)` is EBADF, not a 120 GB
/// table). Each registration carries a generation that tags its events, so events for a previous
/// user of the same number are dropped (see the epoll backend's notes).
///
/// Interest is widened eagerly (a new waiter adds to what the backend watches, one `epoll_ctl`) and
/// narrowed lazily (only when an event arrives that nobody wants: Reactor+Delivery.swift), so a
/// task that waits on the same descriptor in a loop costs no `epoll_ctl` per wait. A wait that
/// joins cached interest is verified later (Reactor+Verification.swift).
///
/// Generic over its backend; the loop uses `Reactor<PlatformBackend>`, specialised, so nothing on
/// the hot path is dynamically dispatched. Tests drive it with `InMemoryBackend` (Tests/SerialLoopTests).
///
/// Files: this one (the table, waiters, callbacks, widening interest), Reactor+Delivery.swift
/// (polling, waking, narrowing), Reactor+Verification.swift (waits on cached interest),
/// Reactor+Inspection.swift (reports and the invariant check).
struct Reactor<Backend: PollBackend & ~Copyable>: ~Copyable {
    enum WaitOutcome: Equatable {
        /// The waiter is registered; it is resumed when the descriptor is ready. `calledKernel`:
        /// whether the backend's interest was set just now (else the wait joined cached interest).
        case waiting(calledKernel: Bool)
        /// The descriptor can never block (a regular file or directory): do not wait.
        case alwaysReady
    }

    var backend: Backend
    /// Indexed by descriptor number.
    var registrations: [Registration] = []
    /// Waiters currently suspended, over all descriptors.
    var waiterCount = 0
    /// Descriptors with a reader or writer callback installed.
    var callbackCount = 0
    /// Descriptors the backend watches (`kernelInterest` not empty).
    var kernelRegistrationCount = 0
    /// Reused buffer for the waiters being woken.
    var scratchWaiters: [ReadinessWaiter] = []
    /// Descriptors whose registration may be unverified (entries go stale when an event arrives).
    var unverified = DescriptorList()
    /// How many registrations are unverified (`isUnverified` set): the hot path asks this, not the
    /// list (filtering the list on every park cost ~4 % of a socketpair round trip).
    var unverifiedCount = 0
    /// When the unverified registrations must be checked (CLOCK_MONOTONIC; 0: not set yet).
    var verificationDeadline: Int64 = 0
    /// When every waited descriptor is checked next (CLOCK_MONOTONIC; 0: not set yet).
    var fullCheckDeadline: Int64 = 0

    init(backend: consuming Backend) {
        self.backend = backend
    }
}

extension Reactor where Backend: ~Copyable {
    /// How many descriptor numbers the registration table covers (tests: it never grows for
    /// numbers that are not open).
    var registrationTableSize: Int { registrations.count }

    /// Whether anything could come out of a poll besides a wake-up.
    var hasKernelInterest: Bool { kernelRegistrationCount > 0 }

    /// Wakes a blocking poll from any thread: the backend's wake-up.
    var waker: @Sendable () -> Void { backend.waker }

    /// Releases the backend's OS objects.
    func close() { backend.close() }

    // MARK: Waiters

    mutating func addWaiter(id: UInt64, _ continuation: LoopContinuation<Void>, fd: Int32, for interest: Interest) throws(LoopError) -> WaitOutcome {
        // The operation's name is built only for an error: a String per wait was measurable.
        try ensureSlot(fd, operation: interest.waitOperation(fd: fd))
        let waiter = ReadinessWaiter(id: id, continuation: continuation, fd: fd, interest: interest)
        if interest == .read { registrations[Int(fd)].readers.append(waiter) } else { registrations[Int(fd)].writers.append(waiter) }
        do {
            let outcome = try syncInterest(fd, operation: interest.waitOperation(fd: fd))
            switch outcome {
            case .alwaysReady:
                removeLast(fd: fd, interest: interest)
            case .waiting(let calledKernel):
                waiterCount += 1
                if !calledKernel { markUnverified(fd) }
            }
            return outcome
        } catch {
            removeLast(fd: fd, interest: interest)
            throw error
        }
    }

    private mutating func removeLast(fd: Int32, interest: Interest) {
        if interest == .read { registrations[Int(fd)].readers.removeLast() } else { registrations[Int(fd)].writers.removeLast() }
    }

    /// Removes a waiter that gave up (cancellation) and returns its continuation, or `nil` when it
    /// is no longer waiting. Its kernel interest is narrowed lazily.
    mutating func removeWaiter(id: UInt64, fd: Int32, for interest: Interest) -> LoopContinuation<Void>? {
        guard fd >= 0, Int(fd) < registrations.count else { return nil }
        let removed: ReadinessWaiter?
        if interest == .read {
            guard let index = registrations[Int(fd)].readers.firstIndex(where: { $0.id == id }) else { return nil }
            removed = registrations[Int(fd)].readers.remove(at: index)
        } else {
            guard let index = registrations[Int(fd)].writers.firstIndex(where: { $0.id == id }) else { return nil }
            removed = registrations[Int(fd)].writers.remove(at: index)
        }
        waiterCount -= 1
        return removed?.continuation
    }

    // MARK: Callbacks (add_reader / add_writer)

    /// Installs (or with `nil`, removes) the callback run each tick while `fd` is ready.
    /// - Returns: whether a callback was installed before.
    @discardableResult
    mutating func setCallback(_ callback: (() -> Void)?, fd: Int32, for interest: Interest, operation: @autoclosure () -> String) throws(LoopError) -> Bool {
        if callback == nil && (fd < 0 || Int(fd) >= registrations.count) { return false }
        try ensureSlot(fd, operation: operation())
        let previous: (() -> Void)?
        if interest == .read {
            previous = registrations[Int(fd)].readerCallback
            registrations[Int(fd)].readerCallback = callback
        } else {
            previous = registrations[Int(fd)].writerCallback
            registrations[Int(fd)].writerCallback = callback
        }
        callbackCount += (callback != nil ? 1 : 0) - (previous != nil ? 1 : 0)
        if callback != nil {
            do throws(LoopError) {
                if case .alwaysReady = try syncInterest(fd, operation: operation()) {
                    // Regular files are always ready; a level-triggered callback on one would spin
                    // the loop, as asyncio refuses too.
                    throw LoopError(operation: operation(), errno: WatchOutcome.alwaysReady.errno)
                }
            } catch {
                if interest == .read { registrations[Int(fd)].readerCallback = previous } else { registrations[Int(fd)].writerCallback = previous }
                callbackCount += (previous != nil ? 1 : 0) - 1
                throw error
            }
        }
        return previous != nil
    }

    // MARK: Forgetting

    /// Forgets `fd`: stops watching it, bumps its generation (so late events are dropped), drops
    /// its callbacks, and returns its waiters so the caller can fail them.
    mutating func forget(_ fd: Int32) -> (readers: [ReadinessWaiter], writers: [ReadinessWaiter]) {
        guard fd >= 0, Int(fd) < registrations.count else { return ([], []) }
        let registration = registrations[Int(fd)]
        if !registration.kernelInterest.isEmpty {
            backend.unregister(fd)
            kernelRegistrationCount -= 1
        }
        waiterCount -= registration.readers.count + registration.writers.count
        callbackCount -= (registration.readerCallback != nil ? 1 : 0) + (registration.writerCallback != nil ? 1 : 0)
        if registration.isUnverified { unverifiedCount -= 1 }
        registrations[Int(fd)] = Registration(generation: registration.generation &+ 1)
        return (registration.readers, registration.writers)
    }

    /// Every waiter on every descriptor, removed (shutdown).
    mutating func removeAllWaiters() -> [ReadinessWaiter] {
        var all: [ReadinessWaiter] = []
        for fd in registrations.indices where registrations[fd].hasWaiters {
            all += registrations[fd].readers + registrations[fd].writers
            registrations[fd].readers.removeAll()
            registrations[fd].writers.removeAll()
        }
        waiterCount = 0
        return all
    }

    // MARK: Interest

    /// Makes sure `fd` has a registration slot. A number beyond the table is checked first: only
    /// an open descriptor may grow the table (so its size follows the highest open descriptor).
    private mutating func ensureSlot(_ fd: Int32, operation: @autoclosure () -> String) throws(LoopError) {
        if fd < 0 { throw LoopError(operation: operation(), errno: WatchOutcome.closed.errno) }
        guard Int(fd) >= registrations.count else { return }
        if let errno = backend.openError(fd) { throw LoopError(operation: operation(), errno: errno) }
        registrations.append(contentsOf: repeatElement(Registration(), count: Int(fd) + 1 - registrations.count))
    }

    /// Widens the backend's interest to cover what the registration wants.
    private mutating func syncInterest(_ fd: Int32, operation: @autoclosure () -> String) throws(LoopError) -> WaitOutcome {
        let registration = registrations[Int(fd)]
        let wanted = registration.wanted
        guard !wanted.isSubset(of: registration.kernelInterest) else { return .waiting(calledKernel: false) }
        let target = wanted.union(registration.kernelInterest)
        let token = registration.token(fd)
        var outcome: WatchOutcome
        if registration.kernelInterest.isEmpty {
            outcome = backend.register(fd, interest: target, token: token)
            // Watched already (e.g. a dup'ed description's history): take the registration over.
            if outcome == .alreadyWatched { outcome = backend.modify(fd, interest: target, token: token) }
            if outcome == .watching { kernelRegistrationCount += 1 }
        } else {
            outcome = backend.modify(fd, interest: target, token: token)
            // The descriptor was closed and its number reused without telling the loop.
            if outcome == .notWatched { outcome = backend.register(fd, interest: target, token: token) }
        }
        switch outcome {
        case .watching:
            registrations[Int(fd)].kernelInterest = target
            markVerified(fd)
            return .waiting(calledKernel: true)
        case .alwaysReady:
            return .alwaysReady
        case .closed, .notWatched, .alreadyWatched, .failed:
            throw LoopError(operation: operation(), errno: outcome.errno)
        }
    }
}
