@preconcurrency import Glibc
import NIOCore
import NIOPosix
import SerialLoop

// Descriptor readiness: socketpair ping-pong, one byte each way per round trip, all on one thread.

let ioBenchmarks: [Benchmark] = [
    // Two tasks on the loop: one writes and awaits `readable`, the other echoes.
    Benchmark(workload: "socketpair-ping-pong", executor: "SerialLoop", unit: "ns/round-trip",
              method: "two tasks on the loop; each side `await loop.readable(fd)` then `read`/`write` one byte") { n in
        try withLoop { loop in try await serialLoopPingPong(loop, n, measure: nanosecondsPerRound) }
    },
    // The same two tasks, each iterating a readiness stream (`loop.readiness(fd, .read)`): one wait
    // object per side for the whole run instead of one per wait.
    Benchmark(workload: "socketpair-ping-pong", executor: "SerialLoop readiness stream", unit: "ns/round-trip",
              method: "two tasks on the loop, each iterating one `loop.readiness(fd, .read)` stream, one `read` per element") { n in
        try withLoop { loop in try await serialLoopStreamPingPong(loop, n, measure: nanosecondsPerRound) }
    },
    // The same streams inside `loop.withReadiness` scopes: one cancellation handler per side for
    // the whole run instead of one per wait.
    Benchmark(workload: "socketpair-ping-pong", executor: "SerialLoop readiness scope", unit: "ns/round-trip",
              method: "two tasks on the loop, each iterating its stream inside `loop.withReadiness(fd, .read)` (one cancellation handler per scope), one `read` per element") { n in
        try withLoop { loop in try await serialLoopScopedStreamPingPong(loop, n, measure: nanosecondsPerRound) }
    },
    // Reader callbacks (`addReader`, asyncio's add_reader) on both ends: no task, no continuation.
    Benchmark(workload: "socketpair-ping-pong", executor: "SerialLoop addReader", unit: "ns/round-trip",
              method: "reader callbacks (`loop.addReader`) on both ends, no tasks") { n in
        try withLoop { loop in try await serialLoopCallbackPingPong(loop, n) }
    },
    // The least a task awaiting readiness costs in Swift (TaskFloorEpoll.swift): the tasks' reference.
    Benchmark(workload: "socketpair-ping-pong", executor: "task floor (epoll + continuations)", unit: "ns/round-trip",
              method: "two tasks preferring a one-object floor that polls epoll when idle; each wait one executor-inheriting continuation, no cancellation or errors (TaskFloorEpoll.swift)") { n in
        try taskFloorPingPong(n)
    },
    Benchmark(workload: "socketpair-ping-pong", executor: "raw epoll", unit: "ns/round-trip",
              method: "one thread, `epoll_wait`/`read`/`write` on both ends, no executor (RawEpoll.swift)") { n in
        rawEpollPingPong(n)
    },
    // NIO has no public readiness API without a channel; its natural equivalent is two channels on
    // one loop (NIOPipeBootstrap over the socketpair ends), one echoing, one counting round trips.
    Benchmark(workload: "socketpair-ping-pong", executor: "NIO channel", unit: "ns/round-trip",
              method: "two `NIOPipeBootstrap` channels on one loop over the socketpair ends, an echo handler and a ping handler (`writeAndFlush` of the received buffer)") { n in
        let (a, b) = socketPair()
        let finished = nioLoop.makePromise(of: Double.self)
        let echo = try NIOPipeBootstrap(group: nioGroup)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(EchoHandler()) }
            }
            .takingOwnershipOfDescriptor(inputOutput: b).wait()
        let pinger = try NIOPipeBootstrap(group: nioGroup)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(PingHandler(rounds: n, finished: finished))
                }
            }
            .takingOwnershipOfDescriptor(inputOutput: a).wait()
        let result = try finished.futureResult.wait()
        try pinger.close().wait()
        try? echo.close().wait()        // usually already closed: it saw the pinger's end close
        return result
    },
]

/// Two tasks on the loop: this one writes a byte and awaits `readable`, the other echoes it.
/// `measure` wraps the timed rounds (so the same code counts time or allocations).
func serialLoopPingPong(_ loop: Loop, _ n: Int, measure: (Int, () async throws -> Void) async throws -> Double) async throws -> Double {
    let (a, b) = socketPair()
    let echo = Task(executorPreference: loop) {
        var byte: UInt8 = 0
        for _ in 0..<n + 100 {
            try await loop.readable(b)
            _ = read(b, &byte, 1)
            _ = write(b, &byte, 1)
        }
    }
    var byte: UInt8 = 1
    func round() async throws {
        _ = write(a, &byte, 1)
        try await loop.readable(a)
        _ = read(a, &byte, 1)
    }
    for _ in 0..<100 { try await round() }      // warm-up: registrations and buffers in place
    let result = try await measure(n) { for _ in 0..<n { try await round() } }
    try await echo.value
    try loop.close(a)
    try loop.close(b)
    return result
}

/// `serialLoopPingPong` with readiness streams: each side iterates one `loop.readiness` stream.
func serialLoopStreamPingPong(_ loop: Loop, _ n: Int, measure: (Int, () async throws -> Void) async throws -> Double) async throws -> Double {
    let (a, b) = socketPair()
    let echo = Task(executorPreference: loop) {
        var byte: UInt8 = 0
        var remaining = n + 100
        // One read per element, as the `readable` variant and raw epoll do (reading on to EAGAIN
        // would add a syscall per round trip that the other rows do not make).
        for try await _ in loop.readiness(b, .read) {
            _ = read(b, &byte, 1)
            _ = write(b, &byte, 1)
            remaining -= 1
            if remaining == 0 { break }
        }
    }
    var byte: UInt8 = 1
    var replies = loop.readiness(a, .read).makeAsyncIterator()
    func round() async throws {
        _ = write(a, &byte, 1)
        _ = try await replies.next()
        _ = read(a, &byte, 1)
    }
    for _ in 0..<100 { try await round() }      // warm-up: registrations and buffers in place
    let result = try await measure(n) { for _ in 0..<n { try await round() } }
    try await echo.value
    try loop.close(a)
    try loop.close(b)
    return result
}

/// `serialLoopStreamPingPong` with each side's stream inside a `loop.withReadiness` scope.
func serialLoopScopedStreamPingPong(_ loop: Loop, _ n: Int, measure: (Int, () async throws -> Void) async throws -> Double) async throws -> Double {
    let (a, b) = socketPair()
    let echo = Task(executorPreference: loop) {
        try await loop.withReadiness(b, .read) { readiness in
            var byte: UInt8 = 0
            var remaining = n + 100
            for try await _ in readiness {
                _ = read(b, &byte, 1)
                _ = write(b, &byte, 1)
                remaining -= 1
                if remaining == 0 { break }
            }
        }
    }
    let result = try await loop.withReadiness(a, .read) { readiness in
        var byte: UInt8 = 1
        var replies = readiness.makeAsyncIterator()
        func round() async throws {
            _ = write(a, &byte, 1)
            _ = try await replies.next()
            _ = read(a, &byte, 1)
        }
        for _ in 0..<100 { try await round() }      // warm-up: registrations and buffers in place
        return try await measure(n) { for _ in 0..<n { try await round() } }
    }
    try await echo.value
    try loop.close(a)
    try loop.close(b)
    return result
}

/// Ping-pong with reader callbacks: b's echoes each byte, a's counts rounds and sends the next.
func serialLoopCallbackPingPong(_ loop: Loop, _ n: Int) async throws -> Double {
    final class State {
        var rounds = 0
        var start = ContinuousClock.now
        var byte: UInt8 = 1
    }
    let (a, b) = socketPair()
    let state = State()
    let done = loop.makeFuture(of: Double.self)
    try loop.addReader(b) {
        var byte: UInt8 = 0
        _ = read(b, &byte, 1)
        _ = write(b, &byte, 1)
    }
    try loop.addReader(a) {
        _ = read(a, &state.byte, 1)
        state.rounds += 1
        if state.rounds == 100 { state.start = .now }          // after a warm-up of 100 rounds
        if state.rounds == n + 100 {
            done.succeed(nanoseconds(since: state.start) / Double(n))
        } else {
            _ = write(a, &state.byte, 1)
        }
    }
    _ = write(a, &state.byte, 1)
    let result = try await done.value
    loop.removeReader(a)
    loop.removeReader(b)
    try loop.close(a)
    try loop.close(b)
    return result
}

func nanosecondsPerRound(_ n: Int, _ body: () async throws -> Void) async throws -> Double {
    let start = ContinuousClock.now
    try await body()
    return nanoseconds(since: start) / Double(n)
}

/// Writes back every byte it reads.
final class EchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.writeAndFlush(data, promise: nil)
    }
}

/// Sends one byte when active, and another each time one comes back, `rounds` times.
final class PingHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private let rounds: Int
    private let finished: EventLoopPromise<Double>
    private var done = 0
    private var start = ContinuousClock.now

    init(rounds: Int, finished: EventLoopPromise<Double>) {
        self.rounds = rounds
        self.finished = finished
    }

    func channelActive(context: ChannelHandlerContext) {
        start = .now
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(integer: UInt8(1))), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        done += 1
        if done == rounds {
            finished.succeed(nanoseconds(since: start) / Double(rounds))
        } else {
            context.writeAndFlush(data, promise: nil)
        }
    }
}
