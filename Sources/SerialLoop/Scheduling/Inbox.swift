import Synchronization

/// The only door into the loop from other threads: a locked list plus a "has work" flag that the
/// loop reads without the lock, and a parking protocol that decides when a wake-up is needed.
///
/// Wake-ups are coalesced: a producer writes the eventfd only when the loop is parked (or about to
/// park) and no wake-up is already in flight. The loop announces `isParking` *before* it re-checks
/// `hasWork`, and producers publish `hasWork` *before* they read `isParking` (both sequentially
/// consistent), so at least one side always sees the other: no lost wake-up.
final class Inbox: Sendable {
    private let items = Lock<Pending>(Pending())
    private struct Pending {
        var work: [Work] = []
        /// How many of `work` a time hold accounts for (see `push(_:isAccountedFor:)`).
        var accounted = 0
    }
    /// Set by producers after appending; cleared by the loop when it takes the items.
    private let hasWork = Atomic<Bool>(false)
    /// Set by the loop while it may block in `epoll_wait`.
    private let isParking = Atomic<Bool>(false)
    /// Set by the producer that wrote the eventfd; cleared by the loop after it read it.
    private let wakeInFlight = Atomic<Bool>(false)
    private let wake: @Sendable () -> Void

    init(wake: @escaping @Sendable () -> Void) {
        self.wake = wake
    }

    /// Called from any thread.
    func push(_ work: Work) {
        items.withLock { $0.work.append(work) }
        hasWork.store(true, ordering: .sequentiallyConsistent)
        if isParking.load(ordering: .sequentiallyConsistent) {
            wakeIfNeeded()
        }
    }

    /// `push`, for work whose arrival a test loop's time hold already accounts for (an offload's
    /// outcome): counted so that it does not restart the quiet period. Any thread.
    func push(_ work: Work, isAccountedFor: Bool) {
        items.withLock {
            $0.work.append(work)
            if isAccountedFor { $0.accounted += 1 }
        }
        hasWork.store(true, ordering: .sequentiallyConsistent)
        if isParking.load(ordering: .sequentiallyConsistent) {
            wakeIfNeeded()
        }
    }

    /// Wakes the loop even if it is not parked (used by `stop()`).
    func wakeIfNeeded() {
        if !wakeInFlight.exchange(true, ordering: .acquiringAndReleasing) {
            wake()
        }
    }

    var mayHaveWork: Bool { hasWork.load(ordering: .sequentiallyConsistent) }

    /// Loop thread: moves everything into `buffer` (which should be empty; its capacity is reused).
    /// - Returns: how many of the items moved were pushed as accounted for.
    @discardableResult
    func take(into buffer: inout [Work]) -> Int {
        guard hasWork.load(ordering: .acquiring) else { return 0 }
        hasWork.store(false, ordering: .sequentiallyConsistent)
        return items.withLock { pending in
            swap(&pending.work, &buffer)
            defer { pending.accounted = 0 }
            return pending.accounted
        }
    }

    /// Loop thread, before a blocking poll. Returns `false` if work arrived meanwhile (do not block).
    func beginParking() -> Bool {
        isParking.store(true, ordering: .sequentiallyConsistent)
        if hasWork.load(ordering: .sequentiallyConsistent) {
            isParking.store(false, ordering: .relaxed)
            return false
        }
        return true
    }

    /// Loop thread, after the poll returned.
    func endParking() {
        isParking.store(false, ordering: .relaxed)
    }

    /// Loop thread, after it consumed the eventfd.
    func wakeConsumed() {
        wakeInFlight.store(false, ordering: .releasing)
    }
}
