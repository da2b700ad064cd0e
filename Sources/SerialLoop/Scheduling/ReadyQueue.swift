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
        capacity = initialCapacity
        storage = reallocated(nil, capacity: initialCapacity, of: "ready items")
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

    /// Doubles the buffer in place (`reallocated`: a tick that collects 1M due timers grows it to
    /// 1M items). Only the wrapped-around run moves, to just past the old end.
    private mutating func grow() {
        let oldCapacity = capacity
        capacity *= 2
        storage = reallocated(storage, capacity: capacity, of: "ready items")
        let wrapped = head + count - oldCapacity
        if wrapped > 0 {
            (storage + oldCapacity).moveInitialize(from: storage, count: wrapped)
        }
    }
}
