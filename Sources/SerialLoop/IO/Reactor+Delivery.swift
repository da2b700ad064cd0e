extension Reactor where Backend: ~Copyable {
    /// Polls once and delivers readiness: resumes waiters (their jobs land on the ready queue, in the
    /// backend's event order, readers before writers) and hands callbacks to `queueCallback`. Interest
    /// that nobody wants any more is narrowed here, when an event for it shows up.
    /// - Returns: how many descriptor events arrived, and whether a wake-up arrived.
    @inline(__always)
    mutating func poll(timeoutNanoseconds: Int64?, queueCallback: (consuming @escaping () -> Void) -> Void) throws(LoopError) -> (events: Int, woke: Bool) {
        let (count, woke) = try backend.poll(timeoutNanoseconds: timeoutNanoseconds)
        // Delivery may narrow interest (`modify`/`unregister`), never poll: the events stay valid.
        for index in 0..<count {
            deliver(backend.event(at: index), queueCallback: queueCallback)
        }
        return (count, woke)
    }

    /// Delivers one event. An event whose generation is not the registration's current one is for a
    /// previous user of the number (closed, its number reused): dropped.
    private mutating func deliver(_ event: ReadinessEvent, queueCallback: (consuming @escaping () -> Void) -> Void) {
        let fd = Int32(truncatingIfNeeded: event.token & 0xffff_ffff)
        let generation = UInt32(truncatingIfNeeded: event.token >> 32)
        guard fd >= 0, Int(fd) < registrations.count, registrations[Int(fd)].generation == generation else { return }
        markVerified(fd)
        // Decide what nobody wanted *before* waking anyone: a woken waiter usually comes straight
        // back (read until EAGAIN, wait again), and dropping its interest now would cost two
        // epoll_ctl calls per wait.
        let unwanted = registrations[Int(fd)].kernelInterest.subtracting(registrations[Int(fd)].wanted)
        if event.isReadable {
            if !registrations[Int(fd)].readers.isEmpty {
                swap(&registrations[Int(fd)].readers, &scratchWaiters)
                resumeScratchWaiters()
            }
            if let callback = registrations[Int(fd)].readerCallback { queueCallback(callback) }
        }
        if event.isWritable {
            if !registrations[Int(fd)].writers.isEmpty {
                swap(&registrations[Int(fd)].writers, &scratchWaiters)
                resumeScratchWaiters()
            }
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
        waiterCount -= scratchWaiters.count
        // Through the buffer: a `for in` over the stored array retained it on every wake-up, and
        // indexing it checked bounds on every waiter.
        scratchWaiters.withUnsafeBufferPointer { waiters in
            for waiter in waiters { waiter.continuation.resume() }
        }
        scratchWaiters.clearKeepingCapacity()
    }

    /// Lazy narrowing: an event arrived for interest that had no waiter and no callback when it was
    /// delivered. Level-triggered epoll would report it again every poll, so stop watching it.
    /// If the backend refuses the narrower interest (the descriptor is gone), stop watching it at all.
    /// Out of line: a cold path, which inlined into `deliver` cost every event a stack-protector check.
    @inline(never)
    private mutating func narrowInterest(_ fd: Int32, dropping unwanted: Interest) {
        let registration = registrations[Int(fd)]
        var remaining = registration.kernelInterest.subtracting(unwanted)
        if !remaining.isEmpty && backend.modify(fd, interest: remaining, token: registration.token(fd)) != .watching {
            remaining = []
        }
        if remaining.isEmpty {
            backend.unregister(fd)
            kernelRegistrationCount -= 1
        }
        registrations[Int(fd)].kernelInterest = remaining
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
