@preconcurrency import Glibc
import Testing
@testable import SerialLoop
import SerialLoopNet

/// The TCP layer (`Sources/SerialLoop/Net`): real loopback sockets, no sleeps — tasks meet through
/// the sockets themselves, and "is it suspended yet" is read off `loop.pendingWaiterCount`.
@Suite("TCP sockets")
struct SocketTests {
    @Test func echoRoundTripOverLoopback() async throws {
        let (echoed, peerMatches) = try await withLoop { loop in
            let listener = try TCPListener(on: loop)
            defer { try? listener.close() }
            async let served: Void = {
                let connection = try await listener.accept()
                defer { try? connection.close() }
                let request = try await connection.read(upToCount: 100)
                try await connection.write(request.reversed())
            }()
            let client = try await TCPConnection.connect(to: listener.address, on: loop)
            defer { try? client.close() }
            try await client.write("ping over tcp")
            let reply = try await client.read(upToCount: 100)
            try await served
            let peerMatches = try client.peerAddress == listener.address && client.localAddress.host == "127.0.0.1"
            return (String(decoding: reply, as: UTF8.self), peerMatches)
        }
        #expect(echoed == "pct revo gnip")
        #expect(peerMatches)
    }

    @Test func listenerOnPortZeroReportsTheKernelsPort() async throws {
        let port = try await withLoop { loop in
            let listener = try TCPListener(on: loop, address: .loopback(port: 0))
            defer { try? listener.close() }
            return listener.address.port
        }
        #expect(port != 0)
    }

    @Test func readReturnsEmptyAtEndOfFileAfterHalfClose() async throws {
        let (first, eof, replyAfterHalfClose) = try await withLoop { loop in
            let listener = try TCPListener(on: loop)
            defer { try? listener.close() }
            let client = try await TCPConnection.connect(to: listener.address, on: loop)
            let server = try await listener.accept()
            defer { try? client.close(); try? server.close() }
            try await client.write("last words")
            try client.shutdownWrite()
            let first = try await server.read(upToCount: 100)
            let eof = try await server.read(upToCount: 100)
            try await server.write("still open the other way")       // half-close: this side can write
            let reply = try await client.read(upToCount: 100)
            return (String(decoding: first, as: UTF8.self), eof, String(decoding: reply, as: UTF8.self))
        }
        #expect(first == "last words")
        #expect(eof.isEmpty)
        #expect(replyAfterHalfClose == "still open the other way")
    }

    /// 8 MiB is far more than the kernel buffers, so the writer must suspend in `writable` many
    /// times while the reader drains; every byte must arrive, in order.
    @Test func largeWriteSuspendsUntilTheReaderDrains() async throws {
        let count = 8 << 20
        let (received, checksumMatches) = try await withLoop { loop in
            let listener = try TCPListener(on: loop)
            defer { try? listener.close() }
            let client = try await TCPConnection.connect(to: listener.address, on: loop)
            let server = try await listener.accept()
            defer { try? client.close(); try? server.close() }
            var pattern = (0..<251).map { UInt8($0) }          // a prime period: misordered chunks show
            while pattern.count < count { pattern += pattern }
            let payload = Array(pattern[..<count])
            async let written: Void = {
                try await client.write(payload)
                try client.shutdownWrite()
            }()
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 1)
            defer { buffer.deallocate() }
            var received = 0
            var matches = true
            while case let n = try await server.read(into: buffer), n > 0 {
                let same = payload.withUnsafeBytes { memcmp(buffer.baseAddress!, $0.baseAddress! + received, n) == 0 }
                if !same { matches = false }
                received += n
            }
            try await written
            return (received, matches)
        }
        #expect(received == count)
        #expect(checksumMatches)
    }

    @Test func connectToAPortWithNoListenerIsRefused() async throws {
        let error = try await withLoop { loop in
            let listener = try TCPListener(on: loop)
            let address = listener.address
            try listener.close()                        // nothing listens there now
            do {
                _ = try await TCPConnection.connect(to: address, on: loop)
                return nil as LoopError?
            } catch let error as LoopError {
                return error
            }
        }
        #expect(error?.errno == ECONNREFUSED)
        #expect(error?.operation.hasPrefix("connect(to: 127.0.0.1:") == true)
        #expect(error?.description.contains("ECONNREFUSED") == true)
    }

    @Test func bindingAPortInUseNamesBindAndEADDRINUSE() async throws {
        let (error, port) = try await withLoop { loop in
            let first = try TCPListener(on: loop)
            defer { try? first.close() }
            do throws(LoopError) {
                let second = try TCPListener(on: loop, address: first.address)
                try? second.close()
                return (nil as LoopError?, first.address.port)
            } catch {
                return (error, first.address.port)
            }
        }
        #expect(error?.errno == EADDRINUSE)
        #expect(error?.operation.hasPrefix("bind(to: 127.0.0.1:\(port)") == true)
    }

    @Test func hostThatIsNotAnIPv4LiteralIsEINVALNamingTheCall() async throws {
        let (connectError, bindError) = try await withLoop { loop in
            var connectError: LoopError?
            do { _ = try await TCPConnection.connect(to: SocketAddress(host: "localhost", port: 80), on: loop) }
            catch let error as LoopError { connectError = error }
            var bindError: LoopError?
            do throws(LoopError) { _ = try TCPListener(on: loop, address: SocketAddress(host: "300.1.2.3", port: 0)) }
            catch { bindError = error }
            return (connectError, bindError)
        }
        #expect(connectError?.errno == EINVAL)
        #expect(connectError?.operation == "connect(to: localhost:80)")
        #expect(bindError?.errno == EINVAL)
        #expect(bindError?.operation == "bind(to: 300.1.2.3:0)")
    }

    @Test func closeWakesATaskSuspendedInRead() async throws {
        let (error, waitersAfter) = try await withLoop { loop in
            let listener = try TCPListener(on: loop)
            defer { try? listener.close() }
            let client = try await TCPConnection.connect(to: listener.address, on: loop)
            let server = try await listener.accept()
            defer { try? client.close() }
            let reader = Task(executorPreference: loop) { () async -> LoopError? in
                do { _ = try await server.read(upToCount: 10); return nil } catch { return error as? LoopError }
            }
            await waitForWaiters(on: loop, count: 1)
            try server.close()
            return (await reader.value, loop.pendingWaiterCount)
        }
        #expect(error != nil)
        #expect(error?.operation.hasPrefix("readable(fd:") == true)
        #expect(waitersAfter == 0)
    }

    @Test func closeWakesATaskSuspendedInAccept() async throws {
        let error = try await withLoop { loop in
            let listener = try TCPListener(on: loop)
            let acceptor = Task(executorPreference: loop) { () async -> LoopError? in
                do { _ = try await listener.accept(); return nil } catch { return error as? LoopError }
            }
            await waitForWaiters(on: loop, count: 1)
            try listener.close()
            return await acceptor.value
        }
        #expect(error != nil)
    }

    @Test func cancellingAcceptThrowsCancellationError() async throws {
        let outcome = try await withLoop { loop in
            let listener = try TCPListener(on: loop)
            defer { try? listener.close() }
            let acceptor = Task(executorPreference: loop) { () async -> String in
                do { _ = try await listener.accept(); return "accepted" }
                catch is CancellationError { return "cancelled" }
                catch { return "\(error)" }
            }
            await waitForWaiters(on: loop, count: 1)
            acceptor.cancel()
            return (await acceptor.value, loop.pendingWaiterCount)
        }
        #expect(outcome.0 == "cancelled")
        #expect(outcome.1 == 0)
    }

    @Test func operationsAfterCloseThrowEBADFNamingTheOperation() async throws {
        let (readError, writeError, fd, closeTwice) = try await withLoop { loop in
            let listener = try TCPListener(on: loop)
            defer { try? listener.close() }
            let client = try await TCPConnection.connect(to: listener.address, on: loop)
            try client.close()
            var readError: LoopError?, writeError: LoopError?
            do { _ = try await client.read(upToCount: 1) } catch let error as LoopError { readError = error }
            do { try await client.write("x") } catch let error as LoopError { writeError = error }
            let closeTwice = Result { try client.close() }       // idempotent
            return (readError, writeError, client.fd, (try? closeTwice.get()) != nil)
        }
        #expect(readError == LoopError(operation: "read(fd: \(fd))", errno: EBADF))
        #expect(writeError == LoopError(operation: "write(fd: \(fd))", errno: EBADF))
        #expect(closeTwice)
    }

    /// A write to a peer that closed must be an error (EPIPE or ECONNRESET), not a SIGPIPE that
    /// would kill the test process.
    @Test func writingToAClosedPeerIsAnErrorNotSIGPIPE() async throws {
        let error = try await withLoop { loop async throws -> LoopError? in
            let listener = try TCPListener(on: loop)
            defer { try? listener.close() }
            let client = try await TCPConnection.connect(to: listener.address, on: loop)
            defer { try? client.close() }
            let server = try await listener.accept()
            try server.close()
            #expect(try await client.read(upToCount: 1).isEmpty)     // the FIN has arrived
            let chunk = [UInt8](repeating: 1, count: 64 * 1024)
            for _ in 0..<100 {
                do { try await client.write(chunk) } catch let error as LoopError { return error }
            }
            return nil
        }
        #expect(error?.errno == EPIPE || error?.errno == ECONNRESET)
        #expect(error?.operation.hasPrefix("write(fd:") == true)
    }

    /// Sockets dropped without `close()` are closed through their loop: the peer sees end-of-file
    /// (observed from the other end, since a freed descriptor number can be reused at once by
    /// tests running in parallel).
    @Test func droppedConnectionIsClosedThroughTheLoop() async throws {
        let eof = try await withLoop { loop in
            let listener = try TCPListener(on: loop)
            defer { try? listener.close() }
            var client: TCPConnection? = try await TCPConnection.connect(to: listener.address, on: loop)
            let server = try await listener.accept()
            defer { try? server.close() }
            try await client!.write("bye")
            client = nil
            var received: [UInt8] = []
            while case let chunk = try await server.read(upToCount: 16), !chunk.isEmpty { received += chunk }
            return String(decoding: received, as: UTF8.self)
        }
        #expect(eof == "bye")
    }

    @Test func manyConcurrentConnectionsOnOneLoop() async throws {
        let (total, accepted) = try await withLoop { loop in
            let listener = try TCPListener(on: loop)
            defer { try? listener.close() }
            let clients = 64
            let server = Task(executorPreference: loop) { () async throws -> Int in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for _ in 0..<clients {
                        let connection = try await listener.accept()
                        group.addTask {
                            defer { try? connection.close() }
                            let bytes = try await connection.read(upToCount: 16)
                            try await connection.write(bytes + bytes)
                        }
                    }
                    try await group.waitForAll()
                }
                return clients
            }
            let total = try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<clients {
                    group.addTask {
                        let connection = try await TCPConnection.connect(to: listener.address, on: loop)
                        defer { try? connection.close() }
                        try await connection.write("\(index % 10)")
                        var reply: [UInt8] = []
                        while case let chunk = try await connection.read(upToCount: 16), !chunk.isEmpty { reply += chunk }
                        return Int(String(decoding: reply, as: UTF8.self))!
                    }
                }
                return try await group.reduce(0, +)
            }
            return (total, try await server.value)
        }
        #expect(total == (0..<64).map { ($0 % 10) * 11 }.reduce(0, +))
        #expect(accepted == 64)
    }
    /// Real sockets on virtual time: an hour-long read timeout (a loop timer that closes the
    /// connection) fires at exactly +3600 s of loop time, in milliseconds of real time.
    @Test func readTimeoutOnATestLoopFiresAtTheVirtualDeadline() async throws {
        let (error, waited, real) = try await withTestLoop { loop in
            // The loop thread's own real time (ContinuousClock.now is virtual here; measured
            // outside, it would include waiting for a cooperative thread under a loaded suite).
            let realStart = realNanoseconds()
            func realElapsed() -> Duration { .nanoseconds(realNanoseconds() - realStart) }
            let listener = try TCPListener(on: loop)
            defer { try? listener.close() }
            let client = try await TCPConnection.connect(to: listener.address, on: loop)
            let server = try await listener.accept()
            defer { try? client.close() }
            let start = loop.now
            let timeout = loop.schedule(after: .seconds(3600)) { try? server.close() }
            defer { timeout.cancel() }
            do {
                _ = try await server.read(upToCount: 16)          // the client never writes
                return (nil as LoopError?, start.duration(to: loop.now), realElapsed())
            } catch let error as LoopError {
                return (error, start.duration(to: loop.now), realElapsed())
            }
        }
        #expect(error?.operation.hasPrefix("readable(fd:") == true)
        #expect(waited == .seconds(3600))
        #expect(real < .seconds(10))
    }

    /// The README's "HTTP server example", verbatim apart from the port (0) and the bound on
    /// connections, served to a client on the same loop.
    @Test func readmeHTTPServerExampleAnswersARequest() async throws {
        let response = try await withLoop { loop in
            let listener = try TCPListener(on: loop, address: .loopback(port: 0))
            let server = Task(executorPreference: loop) {
                await withDiscardingTaskGroup { group in
                    for _ in 0..<1 {
                        guard let connection = try? await listener.accept() else { break }
                        group.addTask { try? await respond(to: connection) }   // one child task per connection
                    }
                }
            }
            let client = try await TCPConnection.connect(to: listener.address, on: loop)
            defer { try? client.close() }
            try await client.write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            var response: [UInt8] = []
            while case let chunk = try await client.read(upToCount: 4096), !chunk.isEmpty { response += chunk }
            await server.value
            try listener.close()
            return String(decoding: response, as: UTF8.self)
        }
        #expect(response == "HTTP/1.1 200 OK\r\nContent-Length: 14\r\nConnection: close\r\n\r\nHello, world!\n")
    }
}

// From the README's "HTTP server example".
private func respond(to connection: TCPConnection) async throws {
    defer { try? connection.close() }
    var head: [UInt8] = []
    while head.firstRange(of: Array("\r\n\r\n".utf8)) == nil {    // read up to the end of the request head
        let chunk = try await connection.read(upToCount: 4096)
        if chunk.isEmpty { return }                                // the client went away
        head += chunk
    }
    try await connection.write("HTTP/1.1 200 OK\r\nContent-Length: 14\r\nConnection: close\r\n\r\nHello, world!\n")
}

/// Returns once `count` tasks are suspended in `readable`/`writable` on `loop` (each pass lets
/// every queued job run and the loop poll once; the waiters register on their first job).
private func waitForWaiters(on loop: Loop, count: Int) async {
    while loop.pendingWaiterCount < count {
        let tick = loop.makeFuture(of: Void.self)
        loop.schedule(after: .zero) { tick.succeed(()) }
        try? await tick.value
    }
}
