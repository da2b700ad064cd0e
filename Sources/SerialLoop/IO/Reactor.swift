@preconcurrency import Glibc

#if os(Linux)
typealias PlatformBackend = EpollBackend
#endif

/// Who waits on which descriptor, and what the kernel is currently asked to watch.
///
/// Owned by the loop thread. Registrations live in an array indexed by descriptor number (numbers
/// are small and dense). The array only grows for a descriptor that is open (checked with `fcntl`
/// when a number beyond the table is first seen), so its size is bounded by the highest open
/// descriptor, never by a number a caller made up (`readable(Int32.max)` is EBADF, not a 120 GB
/// table). Each registration carries a generation that tags its kernel events, so events for a
/// previous user of the same number are dropped (see the epoll backend's notes).
///
/// Interest is widened eagerly (a new waiter adds to what the kernel watches, one `epoll_ctl`) and
/// narrowed lazily (only when an event arrives that nobody wants), so a task that waits on the same
/// descriptor in a loop costs no `epoll_ctl` per wait.
///
/// Descriptors closed behind the loop's back
///
/// Lazy narrowing has a hazard: the loop believes the kernel watches descriptor 7 while user code
/// has `close(2)`d it — and perhaps opened a new file that got number 7. epoll dropped the closed
/// description without a word, so a wait that relies on the cached interest would never wake.
/// A validity syscall per wait would cost a quarter of a socketpair round trip's syscalls, so a
/// wait that joins cached interest is *unverified* instead: if no event for it arrives within
/// `verificationDelay` (1 ms), the loop checks it with one `epoll_ctl(MOD)`:
/// - success: the kernel watches the description now at that number; keep waiting;
/// - ENOENT: the number was reused for a description the kernel does not watch: register it
///   (with a new generation, so events of a dup'ed old description are dropped) and keep waiting —
///   a finished wait, `close(2)` and reuse of the number just work, at most 1 ms late;
/// - EBADF: the number is closed: the waiters fail with EBADF (`readable(fd: 7): EBADF`);
/// - EPERM: the number now names a regular file, which is always ready: the waiters wake.
/// The event that answers a wait proves nothing about the *next* wait (user code may close and
/// reopen in between), so every wait that joins cached interest starts unverified. A descriptor
/// closed *while* tasks wait on it is found by a full check of every waited descriptor, at most
/// once per `fullCheckInterval` (1 s) while waiters exist; its waiters fail with EBADF.
/// Cost on the hot path: an append and a flag per wait, a clock read per poll while tasks wait;
/// a syscall only for waits that last longer than the delay.
struct Reactor: ~Copyable {
    struct Waiter {
        let id: UInt64
        let continuation: LoopContinuation<Void>
        let fd: Int32
        let interest: Interest

        var operation: String { Reactor.operation(fd: fd, interest) }
    }

    /// How `readable`/`writable` name themselves in errors.
    static func operation(fd: Int32, _ interest: Interest) -> String {
        interest == .read ? "readable(fd: \(fd))" : "writable(fd: \(fd))"
    }

    /// How long a wait that joined cached interest may go without an event before it is checked.
    static let verificationDelay: Int64 = 1_000_000
    /// How often every waited descriptor is checked while tasks wait.
    static let fullCheckInterval: Int64 = 1_000_000_000

    private struct Registration {
        var generation: UInt32 = 0
        /// What the kernel watches for this descriptor; empty when it is not in the epoll set.
        var kernelInterest: Interest = []
        /// A waiter joined cached interest and no event has arrived since (see above).
        var isUnverified = false
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
        /// The waiter is registered; it is resumed when the descriptor is ready. `calledKernel`:
        /// whether the kernel's interest was set just now (else the wait joined cached interest).
        case waiting(calledKernel: Bool)
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
    /// Descriptors whose registration may be unverified (entries go stale when an event arrives).
    private var unverified: [Int32] = []
    /// How many registrations are unverified (`isUnverified` set): the hot path asks this, not the
    /// list (filtering the list on every park cost ~4 % of a socketpair round trip).
    private var unverifiedCount = 0
    /// When the unverified registrations must be checked (CLOCK_MONOTONIC; 0: not set yet).
    private var verificationDeadline: Int64 = 0
    /// When every waited descriptor is checked next (CLOCK_MONOTONIC; 0: not set yet).
    private var fullCheckDeadline: Int64 = 0

    init() throws(LoopError) {
        backend = try PlatformBackend()
    }

    /// How many descriptor numbers the registration table covers (tests: it never grows for
    /// numbers that are not open).
    var registrationTableSize: Int { registrations.count }

    /// Whether anything could come out of a poll besides a wake-up.
    var hasKernelInterest: Bool { kernelRegistrationCount > 0 }

    // MARK: Waiters

    mutating func addWaiter(id: UInt64, _ continuation: LoopContinuation<Void>, fd: Int32, for interest: Interest) throws(LoopError) -> WaitOutcome {
        // The operation's name is built only for an error: a String per wait was measurable.
        try ensureSlot(fd, operation: Reactor.operation(fd: fd, interest))
        let waiter = Waiter(id: id, continuation: continuation, fd: fd, interest: interest)
        if interest == .read { registrations[Int(fd)].readers.append(waiter) } else { registrations[Int(fd)].writers.append(waiter) }
        do {
            let outcome = try syncInterest(fd, operation: Reactor.operation(fd: fd, interest))
            switch outcome {
            case .alwaysReady:
                removeLast(fd: fd, interest: interest)
            case .waiting(let calledKernel):
                waiterCount += 1
                if !calledKernel && !registrations[Int(fd)].isUnverified {
                    registrations[Int(fd)].isUnverified = true
                    if unverifiedCount == 0 { verificationDeadline = 0 }     // a fresh delay
                    unverifiedCount += 1
                    unverified.append(fd)
                }
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

    /// Removes a waiter that gave up (cancellation). Its kernel interest is narrowed lazily.
    mutating func removeWaiter(id: UInt64, fd: Int32, for interest: Interest) -> LoopContinuation<Void>? {
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
        if registration.isUnverified { unverifiedCount -= 1 }
        registration = Registration(generation: registration.generation &+ 1)
        registrations[Int(fd)] = registration
        return waiters
    }

    // MARK: Verifying waits (see "Descriptors closed behind the loop's back" above)

    /// Whether anything may need checking after a poll: a wait that joined cached interest, or
    /// waiters at all (the full check). Cheap enough to ask after every poll.
    var mayNeedVerification: Bool { unverifiedCount > 0 || waiterCount > 0 }

    /// How long the loop may park before a check is due (`nil`: no check pending).
    mutating func timeUntilVerification(now: Int64) -> Int64? {
        dropVerifiedEntries()
        var due: Int64? = nil
        if unverifiedCount > 0 {
            if verificationDeadline == 0 { verificationDeadline = now.saturatingAdd(Self.verificationDelay) }
            due = verificationDeadline
        }
        if waiterCount > 0 {
            if fullCheckDeadline == 0 { fullCheckDeadline = now.saturatingAdd(Self.fullCheckInterval) }
            due = min(due ?? .max, fullCheckDeadline)
        } else {
            fullCheckDeadline = 0
        }
        return due.map { max(0, $0.saturatingSubtract(now)) }
    }

    /// Runs the checks that are due. Returns how many waiters it resumed (woken or failed).
    mutating func verifyIfDue(now: Int64) -> Int {
        guard let remaining = timeUntilVerification(now: now), remaining == 0 else { return 0 }
        var resumed = 0
        if verificationDeadline != 0 && now >= verificationDeadline {
            let list = unverified
            unverified.removeAll(keepingCapacity: true)
            verificationDeadline = 0
            for fd in list where registrations[Int(fd)].isUnverified {
                resumed += verify(fd)
            }
        }
        if fullCheckDeadline != 0 && now >= fullCheckDeadline {
            fullCheckDeadline = 0
            for index in registrations.indices where !registrations[index].readers.isEmpty || !registrations[index].writers.isEmpty {
                resumed += verify(Int32(index))
            }
        }
        return resumed
    }

    /// Forgets unverified entries that an event (or a forget) has settled: all of them at once
    /// when none is left unverified (the usual case), else the stale ones once the list is long.
    private mutating func dropVerifiedEntries() {
        guard !unverified.isEmpty else { return }
        if unverifiedCount == 0 {
            unverified.clearKeepingCapacity()
            verificationDeadline = 0
        } else if unverified.count > 2 * unverifiedCount + 16 {
            unverified.removeAll { !registrations[Int($0)].isUnverified }
        }
    }

    /// An event, a kernel call or a check has settled `fd`'s registration.
    @inline(__always)
    private mutating func markVerified(_ fd: Int32) {
        if registrations[Int(fd)].isUnverified {
            registrations[Int(fd)].isUnverified = false
            unverifiedCount -= 1
        }
    }

    /// One check: does the kernel watch the description now at `fd` for us?
    /// Returns how many waiters it resumed.
    private mutating func verify(_ fd: Int32) -> Int {
        markVerified(fd)
        let registration = registrations[Int(fd)]
        guard !registration.kernelInterest.isEmpty else { return 0 }
        let errno: Int32
        do {
            try backend.modify(fd, interest: registration.kernelInterest, token: registration.token(fd))
            return 0
        } catch {
            errno = error.errno ?? EBADF
        }
        if errno == ENOENT {
            // The number names a new description: watch it instead, under a new generation.
            registrations[Int(fd)].generation &+= 1
            let renewed = registrations[Int(fd)]
            do {
                try backend.register(fd, interest: renewed.kernelInterest, token: renewed.token(fd))
                return 0
            } catch where error.errno == EPERM {
                return wakeAll(fd, with: nil)                          // a regular file: always ready
            } catch {
                return wakeAll(fd, with: error.errno ?? EBADF)
            }
        }
        return wakeAll(fd, with: errno == EPERM ? nil : errno)
    }

    /// Forgets `fd` and resumes its waiters: with nothing (`errno == nil`: ready) or a
    /// ``LoopError`` carrying `errno`.
    private mutating func wakeAll(_ fd: Int32, with errno: Int32?) -> Int {
        let (readers, writers) = forget(fd)
        for waiter in readers + writers {
            if let errno {
                waiter.continuation.resume(throwing: errno == EBADF
                    ? LoopError.descriptorClosedBehindTheLoop(waiter.operation)
                    : LoopError(operation: waiter.operation, errno: errno))
            } else {
                waiter.continuation.resume()
            }
        }
        return readers.count + writers.count
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

    /// Every suspended waiter, by descriptor (`loop.pendingWork`).
    func allWaiters() -> [Waiter] {
        registrations.flatMap { $0.readers + $0.writers }
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
            events.clearKeepingCapacity()
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
        markVerified(fd)
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
        scratchWaiters.clearKeepingCapacity()
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

    /// Makes sure `fd` has a registration slot. A number beyond the table is checked first: only
    /// an open descriptor may grow the table (so its size follows the highest open descriptor).
    private mutating func ensureSlot(_ fd: Int32, operation: @autoclosure () -> String) throws(LoopError) {
        if fd < 0 { throw LoopError(operation: operation(), errno: EBADF) }
        guard Int(fd) >= registrations.count else { return }
        if fcntl(fd, F_GETFD) < 0 { throw LoopError(operation: operation(), errno: Glibc.errno) }
        registrations.append(contentsOf: repeatElement(Registration(), count: Int(fd) + 1 - registrations.count))
    }

    /// Widens the kernel's interest to cover what the registration wants.
    private mutating func syncInterest(_ fd: Int32, operation: @autoclosure () -> String) throws(LoopError) -> WaitOutcome {
        let registration = registrations[Int(fd)]
        let wanted = registration.wanted
        guard !wanted.isSubset(of: registration.kernelInterest) else { return .waiting(calledKernel: false) }
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
        markVerified(fd)
        return .waiting(calledKernel: true)
    }
}

extension Array {
    /// `removeAll(keepingCapacity: true)` for the per-poll buffers, which usually hold one or two
    /// elements: popping them skips the general `replaceSubrange` path (callgrind: ~130
    /// instructions a call, three calls per socketpair round trip).
    @inline(__always)
    mutating func clearKeepingCapacity() {
        if count <= 2 {
            while !isEmpty { removeLast() }
        } else {
            removeAll(keepingCapacity: true)
        }
    }
}
