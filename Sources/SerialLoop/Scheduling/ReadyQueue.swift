import Glibc

/// The loop's FIFO ready queue: a growable ring buffer owned by the loop thread.
///
/// Push and pop are O(1) and do not allocate once the buffer has grown to the workload's peak
/// (capacity is kept, never shrunk). Not thread-safe: the loop's own queue is touched by the loop
/// thread only; the inbox keeps its cross-thread items in one under its lock (Inbox.swift).
struct ReadyQueue: ~Copyable {
    private var storage: UnsafeMutablePointer<Work>
    private var capacity: Int
    private var head = 0
    private(set) var count = 0

    init(initialCapacity: Int = 1024) {
        precondition(initialCapacity > 0 && initialCapacity & (initialCapacity - 1) == 0, "capacity must be a power of two")
        // `grow()` moves items by moving their bytes.
        precondition(_isBitwiseTakable(Work.self), "ready work must be movable by its bytes")
        capacity = initialCapacity
        storage = Self.reallocated(nil, capacity: initialCapacity)
    }

    deinit {
        for offset in 0..<count {
            (storage + ((head + offset) & (capacity - 1))).deinitialize(count: 1)
        }
        Glibc.free(storage)
    }

    var isEmpty: Bool { count == 0 }

    @inline(__always)
    mutating func push(_ work: Work) {
        if count == capacity { grow() }
        (storage + ((head + count) & (capacity - 1))).initialize(to: work)
        count += 1
    }

    /// Whether the next item is a job diverted from the global executor.
    var nextIsGlobalJob: Bool {
        guard count > 0, case .global = storage[head] else { return false }
        return true
    }

    /// - Precondition: the queue is not empty.
    @inline(__always)
    mutating func pop() -> Work {
        let work = (storage + head).move()
        head = (head + 1) & (capacity - 1)
        count -= 1
        return work
    }

    /// Traps if an invariant is broken. O(1).
    func checkInvariants() {
        precondition(capacity > 0 && capacity & (capacity - 1) == 0, "ready queue capacity is not a power of two")
        precondition(count >= 0 && count <= capacity, "ready queue count out of range")
        precondition(head >= 0 && head < capacity, "ready queue head out of range")
    }

    /// Doubles the buffer in place with `realloc`: a large buffer is a mapping of its own, which
    /// glibc grows with `mremap`, so the items are neither copied nor faulted in again in fresh
    /// pages (a tick that collects 1M due timers grows it to 1M items). Only the wrapped-around
    /// run moves, to just past the old end. `Work` is bitwise-takable (closures, job references;
    /// checked in `init`), so moving its bytes is moving it.
    private mutating func grow() {
        let oldCapacity = capacity
        capacity *= 2
        storage = Self.reallocated(storage, capacity: capacity)
        let wrapped = head + count - oldCapacity
        if wrapped > 0 {
            (storage + oldCapacity).moveInitialize(from: storage, count: wrapped)
        }
    }

    /// `buffer` (or a new buffer, for `nil`) with room for `capacity` items, its contents moved.
    private static func reallocated(_ buffer: UnsafeMutablePointer<Work>?, capacity: Int) -> UnsafeMutablePointer<Work> {
        guard let raw = realloc(buffer, capacity * MemoryLayout<Work>.stride) else {
            fatalError("out of memory for \(capacity) ready items")
        }
        return raw.bindMemory(to: Work.self, capacity: capacity)
    }
}
