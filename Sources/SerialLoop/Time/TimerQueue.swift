import Glibc

/// Identifies a scheduled timer. Stale IDs (the timer fired or was cancelled, and its slot was
/// reused) are recognised by their generation and ignored.
struct TimerID: Hashable, Sendable {
    fileprivate(set) var slot: UInt32
    fileprivate(set) var generation: UInt32

    /// The ID as one number, a `sleep`'s wait token (Suspension.swift), and back.
    var token: UInt64 { UInt64(slot) << 32 | UInt64(generation) }

    init(token: UInt64) {
        slot = UInt32(truncatingIfNeeded: token >> 32)
        generation = UInt32(truncatingIfNeeded: token)
    }

    fileprivate init(slot: UInt32, generation: UInt32) {
        self.slot = slot
        self.generation = generation
    }
}

/// The loop's timers: a 4-ary min-heap ordered by
/// `(deadline, sequence)`, with an index from each timer's slot to its heap position so
/// cancellation removes the entry at once.
///
/// - Invariants (checked by `checkInvariants()` in debug builds and tests):
///   every heap entry's slot points back at that entry's position; free slots are not in the heap;
///   a parent orders before its children; a slot's payload is initialized exactly while the slot
///   is in the heap. Cancelled timers leave nothing behind: no tombstones.
/// - Complexity: insert, cancel and pop are O(log n); `nextDeadline` is O(1).
///   A 4-ary heap halves the depth of a binary one, which keeps 1M pending timers close to the cost
///   of 1k (fewer cache misses per sift).
/// - Ordering: the sequence number makes equal deadlines fire in scheduling order.
///
/// Storage: four buffers of `capacity` elements that the queue allocates, owns and frees in
/// `deinit` — not Swift arrays. Every sift step writes a heap entry and a slot; with arrays each
/// such write paid a uniqueness check and a bounds check (callgrind: a schedule + cancel took 655
/// instructions with arrays, 370 without; a timer scheduled and fired among 100k, 2,377 and 1,735).
/// Noncopyable, so the buffers have one owner (the loop) and cannot be freed twice. Sizes only
/// grow: `count ≤ slotCount ≤ capacity` and `freeCount ≤ slotCount`, so only taking a never-used
/// slot checks the capacity. The buffers come from `malloc` and grow with `realloc` (see `grow()`).
struct TimerQueue: ~Copyable {
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

    /// A slot's bookkeeping, kept apart from its payload: sifting rewrites `heapIndex` of every
    /// entry it moves, and 8-byte slots keep those writes in few cache lines.
    private struct Slot {
        var generation: UInt32
        /// Position in `heap`; `free` when the slot is free; `held` when the timer fired but its
        /// ID stays live until `releaseHeld` (see `popDue(now:holdingSlotIf:)`).
        var heapIndex: Int32
        static var free: Int32 { -1 }
        static var held: Int32 { -2 }
    }

    /// `heap[0..<count]`: the pending timers, in heap order.
    private var heap: UnsafeMutablePointer<Entry>
    /// `slots[0..<slotCount]`: every slot ever used (pending, held or free).
    private var slots: UnsafeMutablePointer<Slot>
    /// Indexed by slot; initialized exactly for the slots in the heap.
    private var payloads: UnsafeMutablePointer<Payload>
    /// `freeSlots[0..<freeCount]`: slots to reuse, most recently freed last.
    private var freeSlots: UnsafeMutablePointer<UInt32>
    /// Elements each buffer has room for.
    private var capacity: Int
    private(set) var count = 0
    private var slotCount = 0
    private var freeCount = 0
    private var nextSequence: UInt64 = 0
    /// Slots of fired timers whose IDs are still live (neither in the heap nor free).
    private var heldCount = 0

    init(initialCapacity: Int = 64) {
        precondition(initialCapacity > 0, "timer queue capacity must be positive")
        capacity = initialCapacity
        heap = reallocated(nil, capacity: initialCapacity, of: "timers")
        slots = reallocated(nil, capacity: initialCapacity, of: "timers")
        payloads = reallocated(nil, capacity: initialCapacity, of: "timers")
        freeSlots = reallocated(nil, capacity: initialCapacity, of: "timers")
    }

    deinit {
        for position in 0..<count {
            (payloads + Int(heap[position].slot)).deinitialize(count: 1)
        }
        Glibc.free(heap)
        Glibc.free(slots)
        Glibc.free(payloads)
        Glibc.free(freeSlots)
    }

    var isEmpty: Bool { count == 0 }

    /// The earliest deadline, if any timer is pending.
    var nextDeadline: Int64? { count > 0 ? heap[0].deadline : nil }

    /// The earliest timer (deadline and ID), without removing it.
    var first: (deadline: Int64, id: TimerID)? {
        guard count > 0 else { return nil }
        return (heap[0].deadline, id(of: heap[0].slot))
    }

    @discardableResult
    mutating func schedule(at deadline: Int64, _ payload: consuming Payload) -> TimerID {
        let slot = takeSlot()
        (payloads + Int(slot)).initialize(to: payload)
        let entry = Entry(deadline: deadline, sequence: nextSequence, slot: slot)
        nextSequence &+= 1
        count += 1
        siftUp(entry, from: count - 1)
        return id(of: slot)
    }

    /// Removes a pending timer and returns its payload, or `nil` if it already fired (held or not)
    /// or was cancelled.
    mutating func cancel(_ id: TimerID) -> Payload? {
        guard Int(id.slot) < slotCount else { return nil }
        let slot = slots[Int(id.slot)]
        guard slot.generation == id.generation, slot.heapIndex >= 0 else { return nil }
        return remove(at: Int(slot.heapIndex), holdingSlot: false)
    }

    /// Whether `id` is still live: pending, or fired with its slot held.
    func contains(_ id: TimerID) -> Bool {
        Int(id.slot) < slotCount && slots[Int(id.slot)].generation == id.generation && slots[Int(id.slot)].heapIndex != Slot.free
    }

    /// Removes and returns the earliest timer if its deadline is `<= now`. If `hold` says so for
    /// its payload, the timer's slot stays reserved and its ID live (`contains` is true) until
    /// `releaseHeld`: so a fired scheduled callback can still be cancelled before it runs, and
    /// the slot itself says whether it was — no side table.
    @inline(__always)
    mutating func popDue(now: Int64, holdingSlotIf hold: (Payload) -> Bool = { _ in false }) -> (deadline: Int64, id: TimerID, payload: Payload)? {
        guard count > 0, heap[0].deadline <= now else { return nil }
        let first = heap[0]
        let holds = hold(payloads[Int(first.slot)])
        return (first.deadline, id(of: first.slot), remove(at: 0, holdingSlot: holds))
    }

    /// Frees the held slot of a fired timer. Returns `false` if `id` is not held (it was released
    /// already: the callback ran or was cancelled).
    @inline(__always)
    mutating func releaseHeld(_ id: TimerID) -> Bool {
        guard Int(id.slot) < slotCount, slots[Int(id.slot)].generation == id.generation,
              slots[Int(id.slot)].heapIndex == Slot.held else { return false }
        heldCount -= 1
        free(id.slot)
        return true
    }

    /// Removes and returns every pending timer in firing order (used at shutdown).
    mutating func removeAll() -> [(deadline: Int64, payload: Payload)] {
        var result: [(deadline: Int64, payload: Payload)] = []
        result.reserveCapacity(count)
        while count > 0 {
            let deadline = heap[0].deadline
            result.append((deadline, remove(at: 0, holdingSlot: false)))
        }
        return result
    }

    /// Visits pending timers (in heap order, not firing order).
    func forEach(_ body: (_ deadline: Int64, TimerID, Payload) -> Void) {
        for position in 0..<count {
            let entry = heap[position]
            body(entry.deadline, id(of: entry.slot), payloads[Int(entry.slot)])
        }
    }

    @inline(__always)
    private func id(of slot: UInt32) -> TimerID {
        TimerID(slot: slot, generation: slots[Int(slot)].generation)
    }

    /// A slot for a new timer: the most recently freed one (its cache lines are likely warm), or a
    /// never-used one. Its `heapIndex` is set when the entry is placed.
    @inline(__always)
    private mutating func takeSlot() -> UInt32 {
        if freeCount > 0 {
            freeCount -= 1
            return freeSlots[freeCount]
        }
        if slotCount == capacity { grow() }
        slots[slotCount] = Slot(generation: 0, heapIndex: Slot.free)
        slotCount += 1
        return UInt32(slotCount - 1)
    }

    /// Doubles every buffer in place (`reallocated`).
    private mutating func grow() {
        let newCapacity = capacity * 2
        heap = reallocated(heap, capacity: newCapacity, of: "timers")
        slots = reallocated(slots, capacity: newCapacity, of: "timers")
        payloads = reallocated(payloads, capacity: newCapacity, of: "timers")
        freeSlots = reallocated(freeSlots, capacity: newCapacity, of: "timers")
        capacity = newCapacity
    }

    /// Takes the entry at `position` out of the heap and returns its payload; the slot is freed,
    /// or held (its ID stays live) if `holdingSlot`.
    private mutating func remove(at position: Int, holdingSlot: Bool) -> Payload {
        let slot = heap[position].slot
        count -= 1
        if position < count {
            // The last entry fills the hole, then moves whichever way restores the order.
            let last = heap[count]
            if position > 0 && last.ordersBefore(heap[(position - 1) / 4]) {
                siftUp(last, from: position)
            } else {
                siftDown(last, from: position)
            }
        }
        let payload = (payloads + Int(slot)).move()
        if holdingSlot {
            slots[Int(slot)].heapIndex = Slot.held
            heldCount += 1
        } else {
            free(slot)
        }
        return payload
    }

    /// Ends a slot's timer: its ID goes stale (the generation moves on) and the slot is reused.
    @inline(__always)
    private mutating func free(_ slot: UInt32) {
        slots[Int(slot)].heapIndex = Slot.free
        slots[Int(slot)].generation &+= 1
        freeSlots[freeCount] = slot
        freeCount += 1
    }

    /// Writes `entry` at `position` and points its slot there.
    @inline(__always)
    private mutating func place(_ entry: Entry, at position: Int) {
        heap[position] = entry
        slots[Int(entry.slot)].heapIndex = Int32(truncatingIfNeeded: position)
    }

    /// Places `moving` in the hole at `start` or above it, moving the parents it orders before down.
    private mutating func siftUp(_ moving: Entry, from start: Int) {
        var position = start
        while position > 0 {
            let parent = (position - 1) / 4
            let parentEntry = heap[parent]
            guard moving.ordersBefore(parentEntry) else { break }
            place(parentEntry, at: position)
            position = parent
        }
        place(moving, at: position)
    }

    /// Places `moving` in the hole at `start` or below it. Bottom-up: the hole first sinks to a
    /// leaf, the least child moving up at each level, then `moving` rises from there. `moving` is
    /// the heap's last entry, which nearly always belongs near the bottom, so this saves the
    /// textbook sift's comparison with `moving` at every level for a short climb at the end.
    /// - Precondition: `moving` does not order before the parent of `start` (so it stops rising there).
    private mutating func siftDown(_ moving: Entry, from start: Int) {
        var position = start
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
            place(heap[best], at: position)
            position = best
        }
        siftUp(moving, from: position)
    }

    /// Traps if an invariant is broken. O(n); for tests and debug teardown. With `limit`, checks
    /// only the first `limit` heap entries and free slots (the loop's per-tick check in debug
    /// builds, which must not make a tick O(n)).
    func checkInvariants(limit: Int = .max) {
        precondition(count + freeCount + heldCount == slotCount, "timer slots leaked")
        precondition(slotCount <= capacity, "timer slots beyond capacity")
        var position = 0
        while position < count && position < limit {
            let entry = heap[position]
            precondition(Int(entry.slot) < slotCount, "timer heap entry names a slot never taken")
            precondition(slots[Int(entry.slot)].heapIndex == Int32(position), "timer slot does not point back at its heap entry")
            if position > 0 {
                precondition(!entry.ordersBefore(heap[(position - 1) / 4]), "timer heap order broken")
            }
            position += 1
        }
        var index = freeCount - 1
        while index >= 0 && freeCount - index <= limit {
            precondition(slots[Int(freeSlots[index])].heapIndex == Slot.free, "free timer slot still in use")
            index -= 1
        }
    }
}
