@preconcurrency import Glibc
import Synchronization
import Testing
@testable import SerialLoop
import SerialLoopNet

@Suite("Loop groups and sockets")
struct LoopGroupNetTests {
    /// A listener per group loop on one port (`SO_REUSEPORT`); a plain client thread opens 200
    /// connections, each sending its number: the kernel hands each to one listener.
    @Test func reusePortListenersOnEveryLoopAcceptEveryConnectionOnce() async throws {
        let connections = 200, loopCount = 4
        try await withWatchdog(seconds: 60) {
            try await withLoopGroup(loops: loopCount) { group in
                let first = try TCPListener(on: group.loops[0], address: .loopback(port: 0), reusePort: true)
                var listeners = [first]
                for loop in group.loops.dropFirst() {
                    listeners.append(try TCPListener(on: loop, address: first.address, reusePort: true))
                }
                let (arrivals, arrived) = AsyncStream.makeStream(of: (id: UInt32, loop: Int).self)
                let servers = listeners.enumerated().map { index, listener in
                    Task(executorPreference: listener.loop) {
                        while true {
                            guard let connection = try? await listener.accept() else { return }
                            #expect(listener.loop.isOnLoopThread)
                            var bytes: [UInt8] = []
                            while bytes.count < 4, case let chunk = try await connection.read(upToCount: 4 - bytes.count), !chunk.isEmpty {
                                bytes += chunk
                            }
                            try connection.close()
                            #expect(bytes.count == 4)
                            let id = bytes.reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
                            arrived.yield((id, index))
                        }
                    }
                }
                let port = first.address.port
                let client = spawnThread {
                    for id in 0..<UInt32(connections) {
                        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
                        var raw = sockaddr_in()
                        raw.sin_family = sa_family_t(AF_INET)
                        raw.sin_port = port.bigEndian
                        inet_pton(AF_INET, "127.0.0.1", &raw.sin_addr)
                        let connected = withUnsafePointer(to: &raw) {
                            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                        }
                        precondition(connected == 0, "connect failed: errno \(errno)")
                        var message = id.littleEndian
                        precondition(send(fd, &message, 4, Int32(MSG_NOSIGNAL)) == 4, "send failed: errno \(errno)")
                        close(fd)
                    }
                }
                var seen = [Int](repeating: 0, count: connections)
                var perLoop = [Int](repeating: 0, count: loopCount)
                var received = 0
                for await arrival in arrivals {
                    seen[Int(arrival.id)] += 1
                    perLoop[arrival.loop] += 1
                    received += 1
                    if received == connections { break }
                }
                pthread_join(client, nil)
                for listener in listeners { try listener.close() }
                for server in servers { try await server.value }
                print("SO_REUSEPORT spread of \(connections) connections over \(loopCount) loops: \(perLoop)")
                #expect(seen.allSatisfy { $0 == 1 }, "every connection accepted exactly once")
                #expect(perLoop.reduce(0, +) == connections)
                #expect(perLoop.filter { $0 > 0 }.count > 1, "the kernel spread connections over more than one listener: \(perLoop)")
            }
        }
    }
}
