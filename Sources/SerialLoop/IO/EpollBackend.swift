#if os(Linux)
@preconcurrency import Glibc
import CSerialLoopShims
import Synchronization

// Some facts about epoll that this file and the reactor rely on:
//
// - epoll watches *open file descriptions*, not descriptor numbers. Closing a descriptor removes it
//   from the interest list only when no other descriptor (a dup, a forked child) refers to the same
//   description; until then events keep arriving tagged with the old registration's data. And once a
//   number is closed, the kernel hands the same number to the next open()/socket()/accept(). So an
//   event tagged "fd 7" may belong to a *previous* fd 7. Every registration therefore carries a
//   generation in the upper half of `data.u64`, and the reactor drops events whose generation is not
//   the current one ("noEventsDeliveredForReusedDescriptor").
// - We use level-triggered mode. A waiter that arrives while the descriptor is already ready is
//   woken by the next poll, so `readable(fd)` "returns at once if ready" within one tick, and we
//   never need to track whether the user drained the descriptor.
// - EPOLLERR and EPOLLHUP are always reported, whatever the interest; both make reads and writes
//   non-blocking (they return the error or EOF), so they wake both kinds of waiters.
// - epoll_ctl on a regular file or directory fails with EPERM: such descriptors are always ready
//   (`WatchOutcome.alwaysReady`), not an error. EBADF is a closed number (`.closed`); ENOENT on
//   MOD is a number the kernel does not watch for this description (`.notWatched`: closed and
//   reused behind the loop's back); EEXIST on ADD is a description already watched.
// - epoll_wait is interrupted by signals (EINTR); that is retried, never reported.
// - The wake-up descriptor is an eventfd registered with token `wakeToken`; reading it resets it.

/// The Linux backend: one epoll instance plus an eventfd for cross-thread wake-ups.
struct EpollBackend: PollBackend, ~Copyable {
    static let wakeToken = UInt64.max

    private let epollFD: Int32
    /// The eventfd other threads write to; owned by `wakeSignal` so a late writer never hits a reused number.
    private let wakeSignal: WakeSignal
    private var wakeFD: Int32 { wakeSignal.descriptor }
    /// The epoll descriptor itself: readable when a poll would report something (an event or a
    /// wake-up). A test loop group waits on its loops' at once (Group/TestLoopGroup.swift).
    var pollDescriptor: Int32 { epollFD }
    /// Kernel output buffer; doubles when a poll fills it, so bursts are drained in fewer calls.
    private var events: UnsafeMutableBufferPointer<epoll_event>
    /// Cleared the first time `epoll_pwait2` reports ENOSYS (kernels before 5.11, valgrind).
    private var hasEpollPwait2 = true
    /// Whether the last poll filled `events`: the next one doubles it first.
    private var lastPollFilledBuffer = false

    init() throws(LoopError) {
        let epollFD = try syscall("epoll_create1(EPOLL_CLOEXEC)") { epoll_create1(Int32(EPOLL_CLOEXEC)) }
        let wakeFD: Int32
        do {
            wakeFD = try syscall("eventfd(EFD_NONBLOCK | EFD_CLOEXEC)") { eventfd(0, Int32(EFD_NONBLOCK) | Int32(EFD_CLOEXEC)) }
            var event = epoll_event()
            event.events = EPOLLIN.rawValue
            event.data.u64 = Self.wakeToken
            _ = try syscall("epoll_ctl(ADD, eventfd)") { epoll_ctl(epollFD, EPOLL_CTL_ADD, wakeFD, &event) }
        } catch {
            Glibc.close(epollFD)
            throw error
        }
        self.epollFD = epollFD
        self.wakeSignal = WakeSignal(descriptor: wakeFD)
        self.events = .allocate(capacity: 64)
    }

    deinit {
        events.deallocate()
    }

    private static func mask(_ interest: Interest) -> UInt32 {
        var mask: UInt32 = 0
        if interest.contains(.read) { mask |= EPOLLIN.rawValue | EPOLLRDHUP.rawValue }
        if interest.contains(.write) { mask |= EPOLLOUT.rawValue }
        return mask
    }

    func register(_ fd: Int32, interest: Interest, token: UInt64) -> WatchOutcome {
        control(EPOLL_CTL_ADD, fd, interest: interest, token: token)
    }

    func modify(_ fd: Int32, interest: Interest, token: UInt64) -> WatchOutcome {
        control(EPOLL_CTL_MOD, fd, interest: interest, token: token)
    }

    func unregister(_ fd: Int32) {
        var event = epoll_event()
        _ = epoll_ctl(epollFD, EPOLL_CTL_DEL, fd, &event)
    }

    func openError(_ fd: Int32) -> Int32? {
        fcntl(fd, F_GETFD) < 0 ? c_serial_loop_errno() : nil
    }

    /// One `epoll_ctl`, its errno read as the facts above say (epoll_ctl is not interrupted by
    /// signals: no EINTR here).
    private func control(_ op: Int32, _ fd: Int32, interest: Interest, token: UInt64) -> WatchOutcome {
        var event = epoll_event()
        event.events = Self.mask(interest)
        event.data.u64 = token
        guard epoll_ctl(epollFD, op, fd, &event) < 0 else { return .watching }
        switch c_serial_loop_errno() {
        case EPERM: return .alwaysReady
        case EBADF: return .closed
        case ENOENT: return .notWatched
        case EEXIST: return .alreadyWatched
        case let errno: return .failed(errno: errno)
        }
    }

    /// The wake-up's event is consumed and removed from the buffer (the others keep their order),
    /// so `event(at:)` indexes readiness events only.
    @inline(never)
    mutating func poll(timeoutNanoseconds: Int64?) throws(LoopError) -> (events: Int, woke: Bool) {
        if lastPollFilledBuffer {
            // Grown before this poll, not after the last one: its events were still being read.
            let capacity = events.count * 2
            events.deallocate()
            events = .allocate(capacity: capacity)
        }
        let count = try waitForEvents(timeoutNanoseconds: timeoutNanoseconds)
        lastPollFilledBuffer = count == events.count
        var woke = false
        var kept = 0
        for index in 0..<count {
            if events[index].data.u64 == Self.wakeToken {
                var value: UInt64 = 0
                _ = read(wakeFD, &value, 8)
                woke = true
                continue
            }
            if kept != index { events[kept] = events[index] }
            kept += 1
        }
        return (kept, woke)
    }

    @inline(__always)
    func event(at index: Int) -> ReadinessEvent {
        let event = events[index]
        let bits = event.events
        let hangupOrError = bits & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0
        return ReadinessEvent(
            token: event.data.u64,
            isReadable: hangupOrError || bits & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLPRI.rawValue) != 0,
            isWritable: hangupOrError || bits & EPOLLOUT.rawValue != 0
        )
    }

    /// The blocking wait, under a stable name so profiles read well. Uses `epoll_pwait2` for
    /// nanosecond timeouts (a timer 100 µs away is not rounded up to a millisecond); where the
    /// kernel or a tool (valgrind) lacks it, falls back for good to `epoll_wait`, with the timeout
    /// rounded *up* to whole milliseconds so timers never fire early.
    @inline(never)
    private mutating func waitForEvents(timeoutNanoseconds: Int64?) throws(LoopError) -> Int {
        let epollFD = self.epollFD, buffer = events.baseAddress!, capacity = Int32(events.count)
        if hasEpollPwait2 {
            var spec = timespec()
            if let timeoutNanoseconds {
                spec = timespec(tv_sec: Int(timeoutNanoseconds / 1_000_000_000), tv_nsec: Int(timeoutNanoseconds % 1_000_000_000))
            }
            do {
                let result = try syscall("epoll_pwait2") {
                    timeoutNanoseconds == nil
                        ? epoll_pwait2(epollFD, buffer, capacity, nil, nil)
                        : epoll_pwait2(epollFD, buffer, capacity, &spec, nil)
                }
                return Int(result)
            } catch where error.errno == ENOSYS {
                hasEpollPwait2 = false
            }
        }
        var milliseconds: Int32 = -1
        if let timeoutNanoseconds {
            milliseconds = Int32(clamping: (timeoutNanoseconds + 999_999) / 1_000_000)
        }
        return Int(try syscall("epoll_wait") { epoll_wait(epollFD, buffer, capacity, milliseconds) })
    }

    var waker: @Sendable () -> Void {
        let wakeSignal = self.wakeSignal
        return { wakeSignal.signal() }
    }

    func close() {
        wakeSignal.close()
        Glibc.close(epollFD)
    }
}

/// The eventfd that wakes a parked loop, shareable with other threads.
///
/// Writes and the final close are serialised by a lock, so a producer that races with shutdown
/// never writes into a descriptor number the process has since reused. The lock is taken only when
/// a wake-up is actually sent (coalesced by the inbox), never on the loop's own path.
final class WakeSignal: Sendable {
    private let state: Lock<Int32>
    /// Valid until `close()`; read by the loop thread only.
    let descriptor: Int32

    init(descriptor: Int32) {
        self.descriptor = descriptor
        state = Lock(descriptor)
    }

    func signal() {
        state.withLock { fd in
            guard fd >= 0 else { return }
            var one: UInt64 = 1
            // EAGAIN means the counter is saturated: the loop is going to wake anyway.
            _ = write(fd, &one, 8)
        }
    }

    func close() {
        state.withLock { fd in
            if fd >= 0 { Glibc.close(fd) }
            fd = -1
        }
    }
}
#endif
