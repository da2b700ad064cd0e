// The loop's bookkeeping, checked (debug builds only)
//
// After every tick and at shutdown, a debug build checks that the loop's structures agree with
// themselves: the timer heap (order, slot back-pointers, no leaked slots), the ready queue's ring,
// the table of awaited futures and gathers, and the run state. A broken invariant traps at the
// tick that broke it, not later at a confusing symptom. Release builds compile the check out.
// The Reactor's hand-kept counts are recounted from its descriptor table at shutdown
// (`Reactor.checkInvariants`, O(table): too slow for every tick of a test with 20,000 descriptors).

extension Loop {
    /// How many timer heap entries, free timer slots and awaited futures the per-tick check looks
    /// at: the whole structures are checked at shutdown, but a tick must stay O(1) in the number of
    /// timers. (128 made a debug test with 100 000 one-timer ticks four times slower; 8 covers the
    /// root and its children, where pops and sifts start.)
    static let invariantSampleSize = 8

    /// Runs `checkInvariants` in debug builds; nothing in release builds.
    @inline(__always)
    func checkInvariantsInDebugBuilds(atShutdown: Bool = false) {
        #if DEBUG
        checkInvariants(limit: atShutdown ? .max : Loop.invariantSampleSize)
        if atShutdown {
            reactor.checkInvariants()
            precondition(runState.isShutDown, "shutdown ended in run state \(runState)")
            precondition(timers.isEmpty && reactor.waiterCount == 0 && pendingAwaits.isEmpty,
                         "shutdown left \(timers.count) timer(s), \(reactor.waiterCount) descriptor waiter(s), \(pendingAwaits.count) awaited future(s)")
        }
        #endif
    }

    /// Traps if the loop's bookkeeping is inconsistent. Loop thread only. `limit` bounds how many
    /// timers and awaited futures are looked at (`.max`: all).
    func checkInvariants(limit: Int = .max) {
        timers.checkInvariants(limit: limit)
        ready.checkInvariants()
        if !pendingAwaits.isEmpty {
            var checked = 0
            for (key, pending) in pendingAwaits {
                precondition(key == ObjectIdentifier(pending), "an awaited future is filed under another object's identity")
                checked += 1
                if checked >= limit { break }
            }
        }
        precondition(reactor.waiterCount >= 0 && reactor.callbackCount >= 0, "negative reactor counts")
    }
}
