@preconcurrency import Glibc
import Synchronization
import Testing
@testable import SerialLoop
import SerialLoopNet

/// How the connections reach the loops.
enum SpreadStrategy: String, CustomStringConvertible, Sendable {
    /// A listener per loop on one port (`SO_REUSEPORT`): the kernel picks the listener.
    case reusePort
    /// One listener; its acceptor hands each connection to `group.next()`.
    case roundRobin
    var description: String { rawValue }
}

/// Opens `count` connections to 127.0.0.1:`port` one after the other from a plain blocking thread:
/// each sends a byte, reads it back, and is closed with a reset (`SO_LINGER` 0), so no connection
/// lingers in TIME_WAIT and the descriptors are given back as it goes. Returns how many echoed.
private func runClients(count: Int, port: UInt16) -> Int {
    var echoed = 0
    for index in 0..<count {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        precondition(fd >= 0, "socket failed: errno \(errno)")
        var raw = sockaddr_in()
        raw.sin_family = sa_family_t(AF_INET)
        raw.sin_port = port.bigEndian
        inet_pton(AF_INET, "127.0.0.1", &raw.sin_addr)
        let connected = withUnsafePointer(to: &raw) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        precondition(connected == 0, "connect failed: errno \(errno)")
        var byte = UInt8(truncatingIfNeeded: index)
        precondition(send(fd, &byte, 1, Int32(MSG_NOSIGNAL)) == 1, "send failed: errno \(errno)")
        var echo: UInt8 = 0
        if recv(fd, &echo, 1, 0) == 1 && echo == byte { echoed += 1 }
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(fd)
    }
    return echoed
}

/// Reads a byte, counts the connection for `loopIndex`, writes the byte back, closes. On the
/// connection's loop.
private func echoOnce(_ connection: TCPConnection, loopIndex: Int, _ served: Lock<[Int]>, _ wrongLoop: Lock<Int>) async {
    if Loop.current !== connection.loop { wrongLoop.withLock { $0 += 1 } }
    do {
        let byte = try await connection.read(upToCount: 1)
        served.withLock { $0[loopIndex] += 1 }
        try await connection.write(byte)
    } catch {
        Issue.record("echo on loop \(loopIndex): \(error)")
    }
    try? connection.close()
}

/// Serves `connections` echo connections with `strategy` on a group of `loopCount` loops.
/// Returns how many each loop served.
private func spread(_ strategy: SpreadStrategy, loops loopCount: Int, connections: Int) async throws -> [Int] {
    try await withLoopGroup(loops: loopCount) { group in
        let served = Lock([Int](repeating: 0, count: loopCount))
        let wrongLoop = Lock(0)
        var listeners: [TCPListener] = []
        var acceptors: [Task<Void, Never>] = []
        switch strategy {
        case .reusePort:
            let first = try TCPListener(on: group.loops[0], address: .loopback(port: 0), reusePort: true)
            listeners.append(first)
            for loop in group.loops.dropFirst() {
                listeners.append(try TCPListener(on: loop, address: first.address, reusePort: true))
            }
            for (index, listener) in listeners.enumerated() {
                acceptors.append(Task(executorPreference: listener.loop) {
                    while let connection = try? await listener.accept() {
                        Task(executorPreference: connection.loop) { await echoOnce(connection, loopIndex: index, served, wrongLoop) }
                    }
                })
            }
        case .roundRobin:
            let listener = try TCPListener(on: group.loops[0], address: .loopback(port: 0))
            listeners.append(listener)
            let loops = group.loops
            acceptors.append(Task(executorPreference: listener.loop) {
                while let connection = try? await listener.accept(distributingOver: group) {
                    let index = loops.firstIndex { $0 === connection.loop }!
                    Task(executorPreference: connection.loop) { await echoOnce(connection, loopIndex: index, served, wrongLoop) }
                }
            })
        }
        let port = listeners[0].address.port
        let echoed = Latch<Int>()
        pthread_detach(spawnThread { echoed.fulfil(runClients(count: connections, port: port)) })
        // The client thread blocks; wait for it off the cooperative pool.
        let echoes = await withCheckedContinuation { continuation in
            pthread_detach(spawnThread { continuation.resume(returning: echoed.wait()) })
        }
        for listener in listeners { try listener.close() }
        for acceptor in acceptors { await acceptor.value }
        #expect(echoes == connections, "every connection was served (echoed its byte)")
        let wrong = wrongLoop.withLock { $0 }
        #expect(wrong == 0, "every connection was served on its own loop")
        return served.withLock { $0 }
    }
}

@Suite("Loop groups: connections across loops")
struct LoopGroupConnectionSpreadTests {
    /// 1,000 real loopback connections spread over the loops by each strategy. Round robin is
    /// exact; SO_REUSEPORT reaches every loop, unevenly (the spreads are printed, and recorded in
    /// the article "Loop groups").
    @Test(arguments: [SpreadStrategy.roundRobin, .reusePort], [2, 4])
    func thousandConnectionsSpreadOverTheLoops(strategy: SpreadStrategy, loops: Int) async throws {
        let connections = 1_000
        try await withWatchdog(seconds: 120) {
            let perLoop = try await spread(strategy, loops: loops, connections: connections)
            let mean = Double(connections) / Double(loops)
            let worst = perLoop.map { abs(Double($0) - mean) / mean }.max()!
            print("spread of \(connections) connections over \(loops) loops by \(strategy): \(perLoop) (largest deviation from the mean: \(Int((worst * 100).rounded())) %)")
            #expect(perLoop.reduce(0, +) == connections)
            switch strategy {
            case .roundRobin:
                #expect(perLoop == Array(repeating: connections / loops, count: loops))
            case .reusePort:
                #expect(perLoop.allSatisfy { $0 > 0 }, "the kernel spread connections to every loop: \(perLoop)")
            }
        }
    }
}
