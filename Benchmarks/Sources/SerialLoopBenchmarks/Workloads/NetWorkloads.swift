import SerialLoop
import SerialLoopNet

// SerialLoopNet: a loopback TCP connection, one byte each way per round trip, both ends tasks on
// the loop using `TCPConnection.read(into:)` / `write(_:)` (the HTTP server's calls).

let netBenchmarks: [Benchmark] = [
    Benchmark(workload: "tcp-ping-pong", executor: "SerialLoopNet", unit: "ns/round-trip",
              method: "loopback TCP (`TCPListener`/`TCPConnection`), two tasks on the loop: `write` one byte, `read(into:)` it back; the other end echoes") { n in
        try withLoop { loop in
            let listener = try TCPListener(on: loop)
            let server = Task(executorPreference: loop) {
                let connection = try await listener.accept()
                var byte: [UInt8] = [0]
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1, alignment: 1)
                defer { buffer.deallocate() }
                while try await connection.read(into: buffer) == 1 {
                    byte[0] = buffer[0]
                    try await connection.write(byte)
                }
                try connection.close()
            }
            let client = try await TCPConnection.connect(to: listener.address, on: loop)
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1, alignment: 1)
            defer { buffer.deallocate() }
            let ping: [UInt8] = [1]
            for _ in 0..<100 {                                  // warm-up
                try await client.write(ping)
                _ = try await client.read(into: buffer)
            }
            let start = ContinuousClock.now
            for _ in 0..<n {
                try await client.write(ping)
                _ = try await client.read(into: buffer)
            }
            let result = nanoseconds(since: start) / Double(n)
            try client.close()
            try await server.value
            try listener.close()
            return result
        }
    },
]
