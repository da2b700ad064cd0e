@preconcurrency import Glibc

// Descriptors closed behind the loop's back
//
// Lazy narrowing has a hazard: the loop believes the backend watches descriptor 7 while user code
// has `close(2)`d it — and perhaps opened a new file that got number 7. epoll dropped the closed
// description without a word, so a wait that relies on the cached interest would never wake.
// A validity syscall per wait would cost a quarter of a socketpair round trip's syscalls, so a
// wait that joins cached interest is *unverified* instead: if no event for it arrives within
// `verificationDelay` (1 ms), the loop checks it with one `modify` (`epoll_ctl(MOD)`), whose
// outcome the backend names:
// - `.watching`: the backend watches the description now at that number; keep waiting;
// - `.notWatched` (ENOENT): the number was reused for a description the backend does not watch:
//   register it (with a new generation, so events of a dup'ed old description are dropped) and
//   keep waiting — a finished wait, `close(2)` and reuse of the number just work, at most 1 ms late;
// - `.closed` (EBADF): the number is closed: the waiters fail with EBADF (`readable(fd: 7): EBADF`);
// - `.alwaysReady` (EPERM): the number now names a regular file, which is always ready: the
//   waiters wake.
// The event that answers a wait proves nothing about the *next* wait (user code may close and
// reopen in between), so every wait that joins cached interest starts unverified. A descriptor
// closed *while* tasks wait on it is found by a full check of every waited descriptor, at most
// once per `fullCheckInterval` (1 s) while waiters exist; its waiters fail with EBADF.
// Cost on the hot path: an append and a flag per wait, a clock read per poll while tasks wait;
// a syscall only for waits that last longer than the delay.

/// How long a wait that joined cached interest may go without an event before it is checked.
let verificationDelay: Int64 = 1_000_000
/// How often every waited descriptor is checked while tasks wait.
let fullCheckInterval: Int64 = 1_000_000_000

extension Reactor where Backend: ~Copyable {
    /// Whether anything may need checking after a poll: a wait that joined cached interest, or
    /// waiters at all (the full check). Cheap enough to ask after every poll.
    var mayNeedVerification: Bool { unverifiedCount > 0 || waiterCount > 0 }

    /// How long the loop may park before a check is due (`nil`: no check pending).
    mutating func timeUntilVerification(now: Int64) -> Int64? {
        dropVerifiedEntries()
        var due: Int64? = nil
        if unverifiedCount > 0 {
            if verificationDeadline == 0 { verificationDeadline = now.saturatingAdd(verificationDelay) }
            due = verificationDeadline
        }
        if waiterCount > 0 {
            if fullCheckDeadline == 0 { fullCheckDeadline = now.saturatingAdd(fullCheckInterval) }
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
            let list = unverified.takeAll()
            verificationDeadline = 0
            for fd in list where registrations[Int(fd)].isUnverified {
                resumed += verify(fd)
            }
        }
        if fullCheckDeadline != 0 && now >= fullCheckDeadline {
            fullCheckDeadline = 0
            for index in registrations.indices where registrations[index].hasWaiters {
                resumed += verify(Int32(index))
            }
        }
        return resumed
    }

    /// A waiter joined `fd`'s cached interest: it is checked after the delay unless an event comes.
    @inline(__always)
    mutating func markUnverified(_ fd: Int32) {
        guard !registrations[Int(fd)].isUnverified else { return }
        registrations[Int(fd)].isUnverified = true
        if unverifiedCount == 0 { verificationDeadline = 0 }     // a fresh delay
        unverifiedCount += 1
        unverified.append(fd)
    }

    /// An event, a backend call or a check has settled `fd`'s registration.
    @inline(__always)
    mutating func markVerified(_ fd: Int32) {
        if registrations[Int(fd)].isUnverified {
            registrations[Int(fd)].isUnverified = false
            unverifiedCount -= 1
        }
    }

    /// Forgets unverified entries that an event (or a forget) has settled: all of them at once
    /// when none is left unverified (the usual case), else the stale ones once the list is long.
    private mutating func dropVerifiedEntries() {
        guard !unverified.isEmpty else { return }
        if unverifiedCount == 0 {
            unverified.removeAll()
            verificationDeadline = 0
        } else if unverified.count > 2 * unverifiedCount + 16 {
            unverified.keepAll { registrations[Int($0)].isUnverified }
        }
    }

    /// One check: does the backend watch the description now at `fd` for us?
    /// Returns how many waiters it resumed.
    private mutating func verify(_ fd: Int32) -> Int {
        markVerified(fd)
        let registration = registrations[Int(fd)]
        guard !registration.kernelInterest.isEmpty else { return 0 }
        var outcome = backend.modify(fd, interest: registration.kernelInterest, token: registration.token(fd))
        if outcome == .notWatched {
            // The number names a new description: watch it instead, under a new generation.
            registrations[Int(fd)].generation &+= 1
            let renewed = registrations[Int(fd)]
            outcome = backend.register(fd, interest: renewed.kernelInterest, token: renewed.token(fd))
        }
        switch outcome {
        case .watching: return 0
        case .alwaysReady: return wakeAll(fd, failing: nil)
        case .closed, .notWatched, .alreadyWatched, .failed: return wakeAll(fd, failing: outcome)
        }
    }

    /// Forgets `fd` and resumes its waiters: ready (`outcome == nil`), or with a ``LoopError``.
    private mutating func wakeAll(_ fd: Int32, failing outcome: WatchOutcome?) -> Int {
        let (readers, writers) = forget(fd)
        for waiter in readers + writers {
            switch outcome {
            case nil: waiter.continuation.resume()
            case .closed?: waiter.continuation.resume(throwing: LoopError.descriptorClosedBehindTheLoop(waiter.operation))
            case let outcome?: waiter.continuation.resume(throwing: LoopError(operation: waiter.operation, errno: outcome.errno))
            }
        }
        return readers.count + writers.count
    }
}
