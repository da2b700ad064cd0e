/// Identifies a scheduled timer. Stale IDs (the timer fired or was cancelled, and its slot was
/// reused) are recognised by their generation and ignored.
struct TimerID: Hashable, Sendable {
    fileprivate(set) var slot: UInt32
    fileprivate(set) var generation: UInt32
}

/// The loop's timers: a 4-ary min-heap ordered by
/// `(deadline, sequence)`, with an index from each timer's slot to its heap position so
/// cancellation removes the entry at once.
///
/// - Invariants (checked by `checkInvariants()` in debug builds and tests):
///   every heap entry's slot points back at that entry's position; free slots are not in the heap;
///   a parent orders before its children. Cancelled timers leave nothing behind: no tombstones.
/// - Complexity: insert, cancel and pop are O(log n); `nextDeadline` is O(1).
///   A 4-ary heap halves the depth of a binary one, which keeps 1M pending timers close to the cost
///   of 1k (fewer cache misses per sift).
/// - Ordering: the sequence number makes equal deadlines fire in scheduling order.
struct TimerQueue {
    /// Not generic: a debug build does not specialize generics, and an unspecialized heap made
    /// the debug test suite markedly slower.
    typealias Payload = TimerPayload

    private struct Entry {
        var deadline: Int64
        var sequence: UInt64
        var slot: UInt32

        @inline(__always)
        func ordersBefore(_ other: Entry) -> Bool {
            deadline < other.deadline || (deadline == other.deadline && sequence < other.sequence)
        }
    }

    private struct Slot {
        var generation: UInt32 = 0
        /// Position in `heap`; `free` when the slot is free; `held` when the timer fired but its
        /// ID stays live until `releaseHeld` (see `popDue(now:holdingSlotIf:)`).
        var heapIndex: Int32 = Slot.free
        static var free: Int32 { -1 }
        static var held: Int32 { -2 }
        var payload: Payload? = nil
    }

    private var heap: [Entry] = []
    private var slots: [Slot] = []
    private var freeSlots: [UInt32] = []
    private var nextSequence: UInt64 = 0
    /// Slots of fired timers whose IDs are still live (neither in the heap nor free).
    private var heldCount = 0

    var count: Int { heap.count }
    var isEmpty: Bool { heap.isEmpty }

    /// The earliest deadline, if any timer is pending.
    var nextDeadline: Int64? { heap.first?.deadline }

    /// The earliest timer (deadline and ID), without removing it.
    var first: (deadline: Int64, id: TimerID)? {
        guard let entry = heap.first else { return nil }
        return (entry.deadline, TimerID(slot: entry.slot, generation: slots[Int(entry.slot)].generation))
    }

    @discardableResult
    mutating func schedule(at deadline: Int64, _ payload: Payload) -> TimerID {
        let id = reserveID()
        schedule(at: deadline, payload, id: id)
        return id
    }

    /// Takes a slot for a timer about to be scheduled, so its payload can carry its own ID.
    /// - Precondition: followed at once by `schedule(at:_:id:)` with the returned ID.
    mutating func reserveID() -> TimerID {
        let slot: UInt32
        if let reused = freeSlots.popLast() {
            slot = reused
        } else {
            slot = UInt32(slots.count)
            slots.append(Slot())
        }
        return TimerID(slot: slot, generation: slots[Int(slot)].generation)
    }

    mutating func schedule(at deadline: Int64, _ payload: Payload, id: TimerID) {
        let slot = id.slot
        let position = heap.count
        heap.append(Entry(deadline: deadline, sequence: nextSequence, slot: slot))
        nextSequence &+= 1
        slots[Int(slot)].heapIndex = Int32(position)
        slots[Int(slot)].payload = payload
        siftUp(position)
    }

    /// Removes a pending timer and returns its payload, or `nil` if it already fired (held or not)
    /// or was cancelled.
    mutating func cancel(_ id: TimerID) -> Payload? {
        guard Int(id.slot) < slots.count else { return nil }
        let slot = slots[Int(id.slot)]
        guard slot.generation == id.generation, slot.heapIndex >= 0 else { return nil }
        return remove(at: Int(slot.heapIndex), holdingSlot: false)
    }

    /// Whether `id` is still live: pending, or fired with its slot held.
    func contains(_ id: TimerID) -> Bool {
        Int(id.slot) < slots.count && slots[Int(id.slot)].generation == id.generation && slots[Int(id.slot)].heapIndex != Slot.free
    }

    /// Removes and returns the earliest timer if its deadline is `<= now`. If `hold` says so for
    /// its payload, the timer's slot stays reserved and its ID live (`contains` is true) until
    /// `releaseHeld`: so a fired scheduled callback can still be cancelled before it runs, and
    /// the slot itself says whether it was — no side table.
    @inline(__always)
    mutating func popDue(now: Int64, holdingSlotIf hold: (Payload) -> Bool = { _ in false }) -> (deadline: Int64, id: TimerID, payload: Payload)? {
        guard let first = heap.first, first.deadline <= now else { return nil }
        let slot = Int(first.slot)
        let id = TimerID(slot: first.slot, generation: slots[slot].generation)
        let holds = hold(slots[slot].payload!)
        return (first.deadline, id, remove(at: 0, holdingSlot: holds))
    }

    /// Frees the held slot of a fired timer. Returns `false` if `id` is not held (it was released
    /// already: the callback ran or was cancelled).
    @inline(__always)
    mutating func releaseHeld(_ id: TimerID) -> Bool {
        guard Int(id.slot) < slots.count, slots[Int(id.slot)].generation == id.generation,
              slots[Int(id.slot)].heapIndex == Slot.held else { return false }
        heldCount -= 1
        free(Int(id.slot))
        return true
    }

    /// Removes and returns every pending timer in firing order (used at shutdown).
    mutating func removeAll() -> [(deadline: Int64, payload: Payload)] {
        var result: [(deadline: Int64, payload: Payload)] = []
        result.reserveCapacity(heap.count)
        while let first = heap.first { result.append((first.deadline, remove(at: 0, holdingSlot: false))) }
        return result
    }

    /// Visits pending timers (in heap order, not firing order).
    func forEach(_ body: (_ deadline: Int64, TimerID, Payload) -> Void) {
        for entry in heap {
            let slot = slots[Int(entry.slot)]
            body(entry.deadline, TimerID(slot: entry.slot, generation: slot.generation), slot.payload!)
        }
    }

    private mutating func remove(at position: Int, holdingSlot: Bool) -> Payload {
        let removed = heap[position]
        let last = heap.removeLast()
        if position < heap.count {
            heap[position] = last
            slots[Int(last.slot)].heapIndex = Int32(position)
            if position > 0 && last.ordersBefore(heap[(position - 1) / 4]) {
                siftUp(position)
            } else {
                siftDown(position)
            }
        }
        let slotIndex = Int(removed.slot)
        let payload = slots[slotIndex].payload.take()!
        if holdingSlot {
            slots[slotIndex].heapIndex = Slot.held
            heldCount += 1
        } else {
            free(slotIndex)
        }
        return payload
    }

    /// Ends a slot's timer: its ID goes stale (the generation moves on) and the slot is reused.
    @inline(__always)
    private mutating func free(_ slotIndex: Int) {
        slots[slotIndex].heapIndex = Slot.free
        slots[slotIndex].generation &+= 1
        freeSlots.append(UInt32(slotIndex))
    }

    private mutating func siftUp(_ start: Int) {
        var position = start
        let moving = heap[position]
        while position > 0 {
            let parent = (position - 1) / 4
            guard moving.ordersBefore(heap[parent]) else { break }
            heap[position] = heap[parent]
            slots[Int(heap[position].slot)].heapIndex = Int32(position)
            position = parent
        }
        heap[position] = moving
        slots[Int(moving.slot)].heapIndex = Int32(position)
    }

    private mutating func siftDown(_ start: Int) {
        var position = start
        let moving = heap[position]
        let count = heap.count
        while true {
            let firstChild = 4 * position + 1
            if firstChild >= count { break }
            var best = firstChild
            let lastChild = min(firstChild + 4, count)
            var child = firstChild + 1
            while child < lastChild {
                if heap[child].ordersBefore(heap[best]) { best = child }
                child += 1
            }
            guard heap[best].ordersBefore(moving) else { break }
            heap[position] = heap[best]
            slots[Int(heap[position].slot)].heapIndex = Int32(position)
            position = best
        }
        heap[position] = moving
        slots[Int(moving.slot)].heapIndex = Int32(position)
    }

    /// Traps if an invariant is broken. O(n); for tests and debug teardown. With `limit`, checks
    /// only the first `limit` heap entries and free slots (the loop's per-tick check in debug
    /// builds, which must not make a tick O(n)).
    /// (Plain index loops: in a debug build, where this runs every tick, the generic sequence
    /// adaptors are not specialized and cost microseconds per call.)
    func checkInvariants(limit: Int = .max) {
        precondition(heap.count + freeSlots.count + heldCount == slots.count, "timer slots leaked")
        var position = 0
        while position < heap.count && position < limit {
            let entry = heap[position]
            precondition(slots[Int(entry.slot)].heapIndex == Int32(position), "timer slot does not point back at its heap entry")
            if case .none = slots[Int(entry.slot)].payload { preconditionFailure("pending timer without a payload") }
            if position > 0 {
                precondition(!entry.ordersBefore(heap[(position - 1) / 4]), "timer heap order broken")
            }
            position += 1
        }
        var index = freeSlots.count - 1
        while index >= 0 && freeSlots.count - index <= limit {
            let free = Int(freeSlots[index])
            precondition(slots[free].heapIndex == Slot.free, "free timer slot still in use")
            if case .some = slots[free].payload { preconditionFailure("free timer slot still holds a payload") }
            index -= 1
        }
    }
}
