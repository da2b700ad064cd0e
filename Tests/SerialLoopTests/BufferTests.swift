import Testing
@testable import SerialLoop

/// The hand-written buffers grown by `reallocated` (System/Reallocated.swift) keep their contents
/// and order across growth.
@Suite("Growable buffers")
struct BufferTests {
    /// The ring wraps before it grows: the wrapped-around run must move past the old end.
    @Test func theReadyQueueKeepsFIFOOrderAcrossAWrappedGrowth() {
        var queue = ReadyQueue(initialCapacity: 4)
        var ran: [Int] = []
        func push(_ value: Int) { queue.push(.callback { ran.append(value) }) }
        func popAndRun() {
            guard case .callback(let body) = queue.pop() else { Issue.record("not a callback"); return }
            body()
        }
        for value in 0..<3 { push(value) }
        popAndRun(); popAndRun()                              // head is now 2 of 4
        for value in 3..<40 { push(value) }                   // wraps, then grows three times
        while !queue.isEmpty { popAndRun() }
        let order = ran
        #expect(order == Array(0..<40))
        queue.checkInvariants()
    }

    @Test func theDescriptorListKeepsItsEntriesAcrossGrowth() {
        var list = DescriptorList(initialCapacity: 2)
        for fd in Int32(0)..<100 { list.append(fd) }
        // (`#expect` cannot take a noncopyable value apart: its parts are read first.)
        let (count, hasEnds) = (list.count, list.contains(99) && list.contains(0))
        #expect(count == 100)
        #expect(hasEnds)
        list.keepAll { $0 % 10 == 0 }
        let kept = list.takeAll()
        let isEmpty = list.isEmpty
        #expect(kept == stride(from: Int32(0), to: 100, by: 10).map { $0 })
        #expect(isEmpty)
    }
}
