import Glibc

/// `buffer` (or a new buffer, for `nil`) with room for `capacity` elements, the contents moved:
/// how every hand-written buffer of the loop gets and grows its storage (the ready queue's ring,
/// the timer queue's arrays, the list of unverified descriptors). Free it with `free`.
///
/// `realloc` grows in place: a large buffer is a mapping of its own (glibc's `mmap` threshold),
/// which it grows with `mremap`, so the elements are neither copied nor faulted in again in fresh
/// pages (1M timers: 12k fewer page faults, an eighth less process CPU time in timers-fire). That
/// moves elements by their bytes, so `Element` must be bitwise-takable (closures, continuations,
/// job references and plain values are).
/// - Parameter what: names the elements in the out-of-memory trap ("ready items", "timers").
func reallocated<Element>(_ buffer: UnsafeMutablePointer<Element>?, capacity: Int, of what: StaticString) -> UnsafeMutablePointer<Element> {
    precondition(_isBitwiseTakable(Element.self), "buffer elements must be movable by their bytes")
    guard let raw = realloc(buffer, capacity * MemoryLayout<Element>.stride) else {
        fatalError("out of memory for \(capacity) \(what)")
    }
    return raw.bindMemory(to: Element.self, capacity: capacity)
}
