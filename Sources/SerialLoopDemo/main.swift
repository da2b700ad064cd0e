// The classic asyncio examples, replayed on SerialLoop. Run: swift run serial-loop-demo
import SerialLoop
@preconcurrency import Glibc

/// Seconds since `start`, to a tenth: the demo's output is stable run to run.
func elapsed(since start: LoopClock.Instant, on loop: Loop) -> String {
    let tenths = (start.duration(to: loop.now) / .milliseconds(100)).rounded()
    return "t=\(Double(tenths) / 10)s"
}

extension Double {
    func rounded() -> Double { (self).rounded(.toNearestOrAwayFromZero) }
}

try withLoop { loop in
    let start = loop.now

    // 1. greet: Hello, then World a second later.
    print("1. greet")
    print("   Hello (\(elapsed(since: start, on: loop)))")
    try await loop.sleep(for: .seconds(1))
    print("   World (\(elapsed(since: start, on: loop)))")

    // 2. call_soon / call_later ordering: callbacks run in deadline order, then FIFO.
    print("2. call_soon / call_later")
    let order = loop.makeFuture(of: [String].self)
    var log: [String] = []
    loop.schedule(after: .milliseconds(200)) { log.append("call_later(0.2)") }
    loop.schedule(after: .milliseconds(100)) { log.append("call_later(0.1)") }
    loop.callSoon { log.append("call_soon #1") }
    loop.callSoon { log.append("call_soon #2") }
    loop.schedule(after: .milliseconds(300)) { order.succeed(log) }
    print("   ran in order: \(try await order.value.joined(separator: ", "))")

    // 3. A future resolved by a timer.
    print("3. future resolved by a timer")
    let answer = loop.makeFuture(of: Int.self)
    loop.schedule(after: .milliseconds(500)) { answer.succeed(42) }
    let before = loop.now
    let value = try await answer.value
    print("   future resolved with \(value) after \(Double((before.duration(to: loop.now) / .milliseconds(100)).rounded()) / 10)s")

    // 4. Concurrent sleeps in a task group finish together: three 1 s sleeps take 1 s, not 3.
    print("4. concurrent sleeps gathered in a task group")
    let groupStart = loop.now
    let names = try await withThrowingTaskGroup(of: String.self) { group in
        for name in ["a", "b", "c"] {
            group.addTask {
                try await Task.sleep(for: .seconds(1))   // plain Task.sleep: on the loop's timers
                return name
            }
        }
        var finished: [String] = []
        for try await name in group { finished.append(name) }
        return finished.sorted()
    }
    print("   \(names.joined(separator: ", ")) finished after \(Double((groupStart.duration(to: loop.now) / .milliseconds(100)).rounded()) / 10)s, all on the loop thread: \(loop.isOnLoopThread)")

    // 5. A socketpair echo through readable/writable.
    print("5. socketpair echo")
    var fds: [Int32] = [0, 0]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds) == 0 else {
        fatalError("socketpair failed: errno \(errno)")
    }
    let (client, server) = (fds[0], fds[1])
    let echo = Task(executorPreference: loop) {
        var buffer = [UInt8](repeating: 0, count: 64)
        try await loop.readable(server)
        let count = read(server, &buffer, buffer.count)
        try await loop.writable(server)
        _ = write(server, buffer, count)
        return count
    }
    let message = Array("ping over a socketpair".utf8)
    try await loop.writable(client)
    _ = write(client, message, message.count)
    try await loop.readable(client)
    var reply = [UInt8](repeating: 0, count: 64)
    let received = read(client, &reply, reply.count)
    print("   server echoed \(try await echo.value) bytes; client read back \"\(String(decoding: reply[..<received], as: UTF8.self))\"")
    try loop.close(client)
    try loop.close(server)
    print("done (\(elapsed(since: start, on: loop)))")
}
