import Synchronization

/// The only door into the loop from other threads: a locked list plus a "has work" flag that the
/// loop reads without the lock, and a parking protocol that decides when a wake-up is needed.
///
/// Wake-ups are coalesced: a producer writes the eventfd only when the loop is parked (or about to
/// park) and no wake-up is already in flight. The loop announces `isParking` *before* it re-checks
/// `hasWork` and `stopFlag`, and producers publish those *before* they read `isParking` or
/// `wakeInFlight` (all sequentially consistent), so at least one side always sees the other: no
/// lost wake-up. `stop()` is part of the same protocol: a stop flag checked only before the
/// barrier could be missed while a stale `wakeInFlight` (the loop had read the eventfd but its
/// clearing store was not yet visible) made the stopper skip the eventfd — a loop parked for good
/// with a stop pending (issue 9's rare torture hang).
///
/// Shutdown closes the inbox under its lock: a push either lands before the close (and shutdown
/// sees it) or is refused (and the producer keeps its work). Nothing falls in between.
///
/// The items are a ring buffer (`ReadyQueue`), not an array: the loop swaps the whole ring out
/// under the lock and then *moves* each item onto its ready queue (`pop` takes the item's bytes).
/// Iterating an array copied each item out (a retain) and emptying it released it again: one
/// retain/release pair per cross-thread job. The ring took the cross-thread row from 563 to 468
/// instructions per job (Benchmarks/NOTES.md).
final class Inbox: Sendable {
    private struct Items: ~Copyable {
        var work = ReadyQueue(initialCapacity: 64)
        var isClosed = false
    }
    private let items = Lock(Items())
    /// Set by producers after appending; cleared by the loop when it takes the items.
    private let hasWork = Atomic<Bool>(false)
    /// Set by the loop while it may block in `epoll_wait`.
    private let isParking = Atomic<Bool>(false)
    /// Set by the producer that wrote the eventfd; cleared by the loop after it read it.
    private let wakeInFlight = Atomic<Bool>(false)
    /// `Loop.stop()`: set by any thread, consumed by the run that ends because of it.
    private let stopFlag = Atomic<Bool>(false)
    private let wake: @Sendable () -> Void

    init(wake: @escaping @Sendable () -> Void) {
        self.wake = wake
    }

    /// Called from any thread.
    /// - Returns: `false` if the inbox is closed (the loop has shut down); the work was not taken.
    @discardableResult
    func push(_ work: Work) -> Bool {
        let accepted = items.withLock { items in
            guard !items.isClosed else { return false }
            items.work.push(work)
            return true
        }
        guard accepted else { return false }
        hasWork.store(true, ordering: .sequentiallyConsistent)
        if isParking.load(ordering: .sequentiallyConsistent) {
            wakeIfNeeded()
        }
        return true
    }

    /// Any thread: asks the current (or next) run to end after its current tick's jobs.
    func requestStop() {
        stopFlag.store(true, ordering: .sequentiallyConsistent)
        wakeIfNeeded()
    }

    /// Loop thread, once per tick: cheap, may be late by a tick (the parking check is exact).
    var isStopRequested: Bool { stopFlag.load(ordering: .relaxed) }

    /// Loop thread, when a run ends: takes every stop requested so far (they coalesce into the
    /// run that is ending), and none requested later. An exchange, not a store: reading the stoppers' `true`
    /// synchronises with them, so whatever they published before `stop()` (e.g. "do not run
    /// again") is visible to the loop thread afterwards.
    func consumeStop() {
        _ = stopFlag.exchange(false, ordering: .sequentiallyConsistent)
    }

    /// Writes the eventfd unless a wake-up is already in flight.
    private func wakeIfNeeded() {
        if !wakeInFlight.exchange(true, ordering: .sequentiallyConsistent) {
            wake()
        }
    }

    var mayHaveWork: Bool { hasWork.load(ordering: .sequentiallyConsistent) }

    /// Loop thread: swaps the queued items into `buffer`, which must be empty (the inbox keeps the
    /// empty ring, and with it the capacity `buffer` had). The caller pops them, in FIFO order.
    func take(into buffer: inout ReadyQueue) {
        guard hasWork.load(ordering: .acquiring) else { return }
        hasWork.store(false, ordering: .sequentiallyConsistent)
        items.withLock { swap(&$0.work, &buffer) }
    }

    /// Loop thread, last step of shutdown: refuses every later push, and returns what was queued.
    func close() -> [Work] {
        hasWork.store(false, ordering: .sequentiallyConsistent)
        return items.withLock { items in
            items.isClosed = true
            var queued: [Work] = []
            queued.reserveCapacity(items.work.count)
            while !items.work.isEmpty { queued.append(items.work.pop()) }
            return queued
        }
    }

    /// Loop thread, before a blocking poll. Returns `false` if work or a stop arrived meanwhile
    /// (do not block).
    func beginParking() -> Bool {
        isParking.store(true, ordering: .sequentiallyConsistent)
        if hasWork.load(ordering: .sequentiallyConsistent) || stopFlag.load(ordering: .sequentiallyConsistent) {
            isParking.store(false, ordering: .relaxed)
            return false
        }
        return true
    }

    /// Loop thread, after the poll returned.
    func endParking() {
        isParking.store(false, ordering: .relaxed)
    }

    /// Loop thread, after it consumed the eventfd. Sequentially consistent: a producer whose
    /// exchange still sees `true` must have published its work or stop before this store, so the
    /// loop's next `beginParking` sees it.
    func wakeConsumed() {
        wakeInFlight.store(false, ordering: .sequentiallyConsistent)
    }
}
