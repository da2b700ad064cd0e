import Glibc

/// A growable list of descriptor numbers, owned by the reactor: the descriptors whose waits joined
/// cached interest and are not verified yet (Reactor+Verification.swift).
///
/// Not an `Array` because it is cleared after nearly every poll of a socket loop (its one or two
/// entries settled by the events that answered them): clearing here is setting the count, where an
/// array's `removeAll(keepingCapacity:)` or `removeLast` paid a uniqueness check and more (~60
/// instructions a wait, 1.5 % of a socketpair round trip). Capacity is kept, never shrunk.
struct DescriptorList: ~Copyable {
    private var storage: UnsafeMutablePointer<Int32>
    private var capacity: Int
    private(set) var count = 0

    init(initialCapacity: Int = 16) {
        capacity = initialCapacity
        storage = reallocated(nil, capacity: initialCapacity, of: "unverified descriptors")
    }

    deinit { free(storage) }

    var isEmpty: Bool { count == 0 }

    @inline(__always)
    mutating func append(_ fd: Int32) {
        if count == capacity { grow() }
        storage[count] = fd
        count += 1
    }

    @inline(__always)
    mutating func removeAll() { count = 0 }

    /// Keeps the entries `shouldKeep` accepts, in order.
    mutating func keepAll(where shouldKeep: (Int32) -> Bool) {
        var kept = 0
        for index in 0..<count where shouldKeep(storage[index]) {
            storage[kept] = storage[index]
            kept += 1
        }
        count = kept
    }

    /// The entries, as an array, and the list emptied (the verification pass: a cold path).
    mutating func takeAll() -> [Int32] {
        let all = Array(UnsafeBufferPointer(start: storage, count: count))
        count = 0
        return all
    }

    func contains(_ fd: Int32) -> Bool {
        (0..<count).contains { storage[$0] == fd }
    }

    private mutating func grow() {
        capacity *= 2
        storage = reallocated(storage, capacity: capacity, of: "unverified descriptors")
    }
}
