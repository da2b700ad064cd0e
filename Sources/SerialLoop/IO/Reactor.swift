@preconcurrency import Glibc

#if os(Linux)
typealias PlatformBackend = EpollBackend
#endif

/// Who waits on which descriptor, and what the kernel is currently asked to watch.
///
/// Owned by the loop thread. Registrations live in an array indexed by descriptor number (numbers
/// are small and dense). Each carries a generation that tags its kernel events, so events for a
/// previous user of the same number are dropped (see the epoll backend's notes).
///
/// Interest is widened eagerly (a new waiter adds to what the kernel watches, one `epoll_ctl`) and
/// narrowed lazily (only when an event arrives that nobody wants), so a task that waits on the same
/// descriptor in a loop costs no `epoll_ctl` per wait.
struct Reactor: ~Copyable {
    struct Waiter {
        let id: UInt64
        let continuation: UnsafeContinuation<Void, any Error>
    }

    private struct Registration {
        var generation: UInt32 = 0
        /// What the kernel watches for this descriptor; empty when it is not in the epoll set.
        var kernelInterest: Interest = []
        var readers: [Waiter] = []
        var writers: [Waiter] = []
        var readerCallback: (() -> Void)? = nil
        var writerCallback: (() -> Void)? = nil

        var wanted: Interest {
            var interest: Interest = []
            if !readers.isEmpty || readerCallback != nil { interest.insert(.read) }
            if !writers.isEmpty || writerCallback != nil { interest.insert(.write) }
            return interest
        }

        var token: (Int32) -> UInt64 {
            { fd in UInt64(UInt32(bitPattern: fd)) | UInt64(generation) << 32 }
        }
    }

    enum WaitOutcome {
        /// The waiter is registered; it is resumed when the descriptor is ready.
        case waiting
        /// The descriptor can never block (a regular file or directory): do not wait.
        case alwaysReady
    }

    private(set) var backend: PlatformBackend
    private var registrations: [Registration] = []
    /// Waiters currently suspended, over all descriptors.
    private(set) var waiterCount = 0
    /// Descriptors with a reader or writer callback installed.
    private(set) var callbackCount = 0
    /// Descriptors in the kernel's interest set.
    private(set) var kernelRegistrationCount = 0
    /// Reused buffer for one poll's events.
    private var scratchEvents: [ReadinessEvent] = []
    /// Reused buffer for the waiters being woken.
    private var scratchWaiters: [Waiter] = []

    init() throws(LoopError) {
        backend = try PlatformBackend()
    }

    /// Whether anything could come out of a poll besides a wake-up.
    var hasKernelInterest: Bool { kernelRegistrationCount > 0 }

    // MARK: Waiters

    mutating func addWaiter(_ waiter: Waiter, fd: Int32, for interest: Interest, operation: @autoclosure () -> String) throws(LoopError) -> WaitOutcome {
        ensureSlot(fd)
        if interest == .read { registrations[Int(fd)].readers.append(waiter) } else { registrations[Int(fd)].writers.append(waiter) }
        do {
            let outcome = try syncInterest(fd, operation: operation())
            if case .alwaysReady = outcome { removeLast(fd: fd, interest: interest) } else { waiterCount += 1 }
            return outcome
        } catch {
            removeLast(fd: fd, interest: interest)
            throw error
        }
    }

    private mutating func removeLast(fd: Int32, interest: Interest) {
        if interest == .read { registrations[Int(fd)].readers.removeLast() } else { registrations[Int(fd)].writers.removeLast() }
    }

    /// Removes a waiter that gave up (cancellation). Its kernel interest is narrowed lazily.
    mutating func removeWaiter(id: UInt64, fd: Int32, for interest: Interest) -> UnsafeContinuation<Void, any Error>? {
        guard fd >= 0, Int(fd) < registrations.count else { return nil }
        let removed: Waiter?
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
        ensureSlot(fd)
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
                    throw LoopError(operation: operation(), errno: EPERM)
                }
            } catch {
                if interest == .read { registrations[Int(fd)].readerCallback = previous } else { registrations[Int(fd)].writerCallback = previous }
                callbackCount += (previous != nil ? 1 : 0) - 1
                throw error
            }
        }
        return previous != nil
    }

    // MARK: Closing

    /// Forgets `fd`: removes it from the kernel's set, bumps its generation (so late events are
    /// dropped), drops its callbacks, and returns its waiters so the caller can fail them.
    mutating func forget(_ fd: Int32) -> (readers: [Waiter], writers: [Waiter]) {
        guard fd >= 0, Int(fd) < registrations.count else { return ([], []) }
        var registration = registrations[Int(fd)]
        if !registration.kernelInterest.isEmpty {
            backend.unregister(fd)
            kernelRegistrationCount -= 1
        }
        let waiters = (registration.readers, registration.writers)
        waiterCount -= waiters.0.count + waiters.1.count
        callbackCount -= (registration.readerCallback != nil ? 1 : 0) + (registration.writerCallback != nil ? 1 : 0)
        registration = Registration(generation: registration.generation &+ 1)
        registrations[Int(fd)] = registration
        return waiters
    }

    /// Every waiter on every descriptor, removed (shutdown).
    mutating func removeAllWaiters() -> [Waiter] {
        var all: [Waiter] = []
        for fd in registrations.indices where !registrations[fd].readers.isEmpty || !registrations[fd].writers.isEmpty {
            all += registrations[fd].readers + registrations[fd].writers
            registrations[fd].readers.removeAll()
            registrations[fd].writers.removeAll()
        }
        waiterCount = 0
        return all
    }

    /// Descriptors with suspended waiters, and how many (leftover reports).
    func waitingDescriptors() -> [(fd: Int32, readers: Int, writers: Int)] {
        registrations.indices.compactMap { fd in
            let r = registrations[fd]
            return r.readers.isEmpty && r.writers.isEmpty ? nil : (Int32(fd), r.readers.count, r.writers.count)
        }
    }

    /// Descriptors with waiters or reader/writer callbacks, described for a stall report.
    func descriptorsInFlight() -> String {
        let described = registrations.indices.compactMap { fd -> String? in
            let r = registrations[fd]
            var parts: [String] = []
            if !r.readers.isEmpty { parts.append("\(r.readers.count) readable()") }
            if !r.writers.isEmpty { parts.append("\(r.writers.count) writable()") }
            if r.readerCallback != nil { parts.append("a reader callback") }
            if r.writerCallback != nil { parts.append("a writer callback") }
            return parts.isEmpty ? nil : "fd \(fd): " + parts.joined(separator: ", ")
        }
        return described.isEmpty ? "no descriptor" : described.joined(separator: "; ")
    }

    // MARK: Polling

    /// Polls once and delivers readiness: resumes waiters (their jobs land on the ready queue, in the
    /// kernel's event order, readers before writers) and hands callbacks to `queueCallback`. Interest
    /// that nobody wants any more is narrowed here, when an event for it shows up.
    /// - Returns: how many descriptor events arrived, and whether the wake-up descriptor fired.
    mutating func poll(timeoutNanoseconds: Int64?, queueCallback: (@escaping () -> Void) -> Void) throws(LoopError) -> (events: Int, woke: Bool) {
        var events = scratchEvents
        scratchEvents = []
        defer {
            events.removeAll(keepingCapacity: true)
            scratchEvents = events
        }
        let woke = try backend.poll(timeoutNanoseconds: timeoutNanoseconds) { events.append($0) }
        for event in events {
            deliver(event, queueCallback: queueCallback)
        }
        return (events.count, woke)
    }

    private mutating func deliver(_ event: ReadinessEvent, queueCallback: (@escaping () -> Void) -> Void) {
        let fd = Int32(truncatingIfNeeded: event.token & 0xffff_ffff)
        let generation = UInt32(truncatingIfNeeded: event.token >> 32)
        guard fd >= 0, Int(fd) < registrations.count, registrations[Int(fd)].generation == generation else { return }
        // Decide what nobody wanted *before* waking anyone: a woken waiter usually comes straight
        // back (read until EAGAIN, wait again), and dropping its interest now would cost two
        // epoll_ctl calls per wait.
        let unwanted = registrations[Int(fd)].kernelInterest.subtracting(registrations[Int(fd)].wanted)
        if event.isReadable {
            swap(&registrations[Int(fd)].readers, &scratchWaiters)
            resumeScratchWaiters()
            if let callback = registrations[Int(fd)].readerCallback { queueCallback(callback) }
        }
        if event.isWritable {
            swap(&registrations[Int(fd)].writers, &scratchWaiters)
            resumeScratchWaiters()
            if let callback = registrations[Int(fd)].writerCallback { queueCallback(callback) }
        }
        var narrowed = unwanted
        if !event.isReadable { narrowed.remove(.read) }
        if !event.isWritable { narrowed.remove(.write) }
        if !narrowed.isEmpty { narrowInterest(fd, dropping: narrowed) }
    }

    /// Resumes the waiters just swapped into the scratch buffer (swapping, rather than copying
    /// and clearing, keeps both buffers' capacity: waking allocates nothing).
    private mutating func resumeScratchWaiters() {
        guard !scratchWaiters.isEmpty else { return }
        waiterCount -= scratchWaiters.count
        for waiter in scratchWaiters { waiter.continuation.resume() }
        scratchWaiters.removeAll(keepingCapacity: true)
    }

    /// Lazy narrowing: an event arrived for interest that had no waiter and no callback when it was
    /// delivered. Level-triggered epoll would report it again every poll, so stop watching it.
    private mutating func narrowInterest(_ fd: Int32, dropping unwanted: Interest) {
        let registration = registrations[Int(fd)]
        let remaining = registration.kernelInterest.subtracting(unwanted)
        if remaining.isEmpty {
            backend.unregister(fd)
            kernelRegistrationCount -= 1
        } else if (try? backend.modify(fd, interest: remaining, token: registration.token(fd))) == nil {
            backend.unregister(fd)
            kernelRegistrationCount -= 1
            registrations[Int(fd)].kernelInterest = []
            return
        }
        registrations[Int(fd)].kernelInterest = remaining
    }

    private mutating func ensureSlot(_ fd: Int32) {
        precondition(fd >= 0)
        if Int(fd) >= registrations.count {
            registrations.append(contentsOf: repeatElement(Registration(), count: Int(fd) + 1 - registrations.count))
        }
    }

    /// Widens the kernel's interest to cover what the registration wants.
    private mutating func syncInterest(_ fd: Int32, operation: @autoclosure () -> String) throws(LoopError) -> WaitOutcome {
        let registration = registrations[Int(fd)]
        let wanted = registration.wanted
        guard !wanted.isSubset(of: registration.kernelInterest) else { return .waiting }
        let target = wanted.union(registration.kernelInterest)
        let token = registration.token(fd)
        do {
            if registration.kernelInterest.isEmpty {
                do {
                    try backend.register(fd, interest: target, token: token)
                } catch where error.errno == EEXIST {
                    // Registered behind our back's history (e.g. a dup'ed description): take it over.
                    try backend.modify(fd, interest: target, token: token)
                }
                kernelRegistrationCount += 1
            } else {
                do {
                    try backend.modify(fd, interest: target, token: token)
                } catch where error.errno == ENOENT {
                    // The descriptor was closed and its number reused without telling the loop.
                    try backend.register(fd, interest: target, token: token)
                }
            }
        } catch where error.errno == EPERM {
            return .alwaysReady
        } catch {
            throw LoopError(operation: operation(), errno: error.errno ?? 0)
        }
        registrations[Int(fd)].kernelInterest = target
        return .waiting
    }
}
