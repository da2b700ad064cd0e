@preconcurrency import Glibc

/// The timer floor (issue 12's "schedule + cancel ≤ 1.2× the floor"): the least a single-threaded
/// timer store can do while offering what `loop.schedule(after:)` offers — any deadline, a callback,
/// a handle whose `cancel` is O(log n) and harmless after the timer fired or was cancelled.
///
/// - A binary min-heap of slot numbers ordered by deadline; each slot keeps its heap position, so
///   cancel removes it in place (no search, no tombstone).
/// - Slots are reused through a free list; a generation per slot makes stale handles no-ops.
/// - `schedule(after:)` reads the clock (`CLOCK_MONOTONIC`, vDSO) once per call, as a correct timer
///   must when it has no tick-cached time.
/// - No ordering of equal deadlines, no thread checks, no observation: floor only.
/// Not thread-safe; used from one thread (a task on the floor, or a plain loop).
struct FloorTimers: ~Copyable {
    struct Handle {
        let slot: Int32
        let generation: UInt32
    }

    private struct Slot {
        var deadline: Int64
        var heapIndex: Int32        // -1: free (fired, cancelled or never used)
        var generation: UInt32
        var callback: (() -> Void)?
    }

    private var slots: [Slot] = []
    private var freeSlots: [Int32] = []
    private var heap: [Int32] = []

    init(capacity: Int = 1024) {
        slots.reserveCapacity(capacity)
        freeSlots.reserveCapacity(capacity)
        heap.reserveCapacity(capacity)
    }

    var count: Int { heap.count }

    static func now() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Int64(spec.tv_sec) * 1_000_000_000 + Int64(spec.tv_nsec)
    }

    /// The earliest deadline, if any timer is pending.
    var nextDeadline: Int64? { heap.first.map { slots[Int($0)].deadline } }

    mutating func schedule(after nanoseconds: Int64, _ callback: @escaping () -> Void) -> Handle {
        let deadline = FloorTimers.now() + nanoseconds
        let slot: Int32
        if let reused = freeSlots.popLast() {
            slot = reused
            slots[Int(slot)].deadline = deadline
            slots[Int(slot)].callback = callback
        } else {
            slot = Int32(slots.count)
            slots.append(Slot(deadline: deadline, heapIndex: -1, generation: 0, callback: callback))
        }
        heap.append(slot)
        slots[Int(slot)].heapIndex = Int32(heap.count - 1)
        siftUp(heap.count - 1)
        return Handle(slot: slot, generation: slots[Int(slot)].generation)
    }

    /// Removes the timer if it is still pending; a no-op for a stale handle.
    mutating func cancel(_ handle: Handle) {
        let index = Int(handle.slot)
        guard slots[index].generation == handle.generation, slots[index].heapIndex >= 0 else { return }
        let position = Int(slots[index].heapIndex)
        release(index)
        removeFromHeap(at: position)
    }

    /// Runs every timer due at `now`; returns how many ran.
    @discardableResult
    mutating func fire(now: Int64) -> Int {
        var ran = 0
        while let first = heap.first, slots[Int(first)].deadline <= now {
            let callback = slots[Int(first)].callback
            release(Int(first))
            removeFromHeap(at: 0)
            callback?()
            ran += 1
        }
        return ran
    }

    private mutating func release(_ slot: Int) {
        slots[slot].heapIndex = -1
        slots[slot].generation &+= 1
        slots[slot].callback = nil
        freeSlots.append(Int32(slot))
    }

    private mutating func removeFromHeap(at position: Int) {
        let last = heap.removeLast()
        guard position < heap.count else { return }
        heap[position] = last
        slots[Int(last)].heapIndex = Int32(position)
        if position > 0 && deadline(at: position) < deadline(at: (position - 1) / 2) {
            siftUp(position)
        } else {
            siftDown(position)
        }
    }

    @inline(__always)
    private func deadline(at position: Int) -> Int64 { slots[Int(heap[position])].deadline }

    private mutating func swapAt(_ a: Int, _ b: Int) {
        heap.swapAt(a, b)
        slots[Int(heap[a])].heapIndex = Int32(a)
        slots[Int(heap[b])].heapIndex = Int32(b)
    }

    private mutating func siftUp(_ start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            guard deadline(at: child) < deadline(at: parent) else { return }
            swapAt(child, parent)
            child = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1
            guard left < heap.count else { return }
            let right = left + 1
            let smaller = right < heap.count && deadline(at: right) < deadline(at: left) ? right : left
            guard deadline(at: smaller) < deadline(at: parent) else { return }
            swapAt(parent, smaller)
            parent = smaller
        }
    }
}

/// timers-fire on the floor: n timers (deadlines spread over 1 ms) fired by a plain loop — read
/// the clock, fire what is due, `clock_nanosleep` to the next deadline. No tasks, no executor.
/// Returns process CPU ns per timer, like the other timers-fire rows.
func floorTimersFire(_ n: Int) -> Double {
    var timers = FloorTimers(capacity: n)
    let fired = Shared(0)
    let cpu = processCPUNanoseconds()
    for i in 0..<n {
        _ = timers.schedule(after: Int64(i % 1000 * 1000)) { fired.value += 1 }
    }
    while fired.value < n {
        timers.fire(now: FloorTimers.now())
        if fired.value < n, let next = timers.nextDeadline {
            var until = timespec(tv_sec: Int(next / 1_000_000_000), tv_nsec: Int(next % 1_000_000_000))
            _ = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, nil)
        }
    }
    return (processCPUNanoseconds() - cpu) / Double(n)
}

/// schedule + cancel on the floor, from a task on the one-object floor (as SerialLoop's row runs
/// from a task on the loop).
func floorScheduleCancel(_ n: Int) throws -> Double {
    try Floor.run { _ in
        var timers = FloorTimers()
        let start = ContinuousClock.now
        for _ in 0..<n { timers.cancel(timers.schedule(after: 3_600_000_000_000) {}) }
        precondition(timers.count == 0)
        return nanoseconds(since: start) / Double(n)
    }
}
