@preconcurrency import Glibc
import Testing
@testable import SerialLoop
import SerialLoopNet

/// Sockets used from tasks that are not on their loop (issue 21, item 7): a plain `Task {}` in a
/// `withLoop` body runs on the global executor, and so do `Task.detached`, actors of their own and a
/// ServiceLifecycle shutdown handler. Every async socket operation hops onto the loop for the
/// operation and resumes the caller where it was; `close()` works from any thread. Real loopback
/// sockets; tasks meet through the sockets themselves (no sleeps); every test runs under a watchdog.
@Suite("Sockets from any task")
struct SocketsFromAnyTaskTests {
    /// The example: `Task { await handle(connection) }` in a plain `withLoop`. The server
    /// side runs entirely in a plain task (accept, read, write, the addresses, half-close, close),
    /// and after every await it is still off the loop's thread: it resumed where it was.
    @Test func aPlainTaskAcceptsReadsWritesAndClosesARealConnection() async throws {
        let outcome = await withWatchdog("a plain task serving a connection") {
            try await withLoop { loop in
                let listener = try TCPListener(on: loop)
                defer { try? listener.close() }
                let server = Task { () async throws -> ServerReport in
                    var report = ServerReport()
                    report.offLoop.append(!loop.isOnLoopThread)
                    let connection = try await listener.accept()
                    report.offLoop.append(!loop.isOnLoopThread)
                    let request = try await connection.read(upToCount: 100)
                    report.offLoop.append(!loop.isOnLoopThread)
                    report.request = String(decoding: request, as: UTF8.self)
                    report.peerIsLoopback = try connection.peerAddress.host == "127.0.0.1"
                        && connection.localAddress == listener.address
                    try await connection.write(request.reversed())
                    report.offLoop.append(!loop.isOnLoopThread)
                    try connection.shutdownWrite()
                    // read(into:) to end-of-file: the client half-closes after our reply.
                    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16, alignment: 1)
                    defer { buffer.deallocate() }
                    report.endOfFile = try await connection.read(into: buffer) == 0
                    report.offLoop.append(!loop.isOnLoopThread)
                    try connection.close()
                    report.closed = connection.isClosed
                    return report
                }
                let client = try await TCPConnection.connect(to: listener.address, on: loop)
                defer { try? client.close() }
                try await client.write("from a plain task")
                var reply: [UInt8] = []
                while case let chunk = try await client.read(upToCount: 100), !chunk.isEmpty { reply += chunk }
                try client.shutdownWrite()
                let report = try await server.value
                return (report, String(decoding: reply, as: UTF8.self))
            }
        }
        let (report, reply) = try #require(try outcome?.get())
        #expect(report.request == "from a plain task")
        #expect(reply == "ksat nialp a morf")
        #expect(report.peerIsLoopback)
        #expect(report.endOfFile)
        #expect(report.closed)
        #expect(report.offLoop == [true, true, true, true, true], "the task resumed on the global executor after each operation")
    }

    /// `connect` from `Task.detached`, the other end accepted on the loop; and an actor of its own
    /// (a default actor, on the global executor) reading and writing: it keeps its isolation across
    /// the hop (the operation itself runs on the loop, not on the actor).
    @Test func detachedTasksAndActorsOffTheLoopConnectReadAndWrite() async throws {
        let outcome = await withWatchdog("a detached connect and an actor's reads") {
            try await withLoop { loop in
                let listener = try TCPListener(on: loop)
                defer { try? listener.close() }
                let connector = Task.detached { try await TCPConnection.connect(to: listener.address, on: loop) }
                let server = try await listener.accept()
                defer { try? server.close() }
                let client = try await connector.value
                let peer = Peer(loop: loop)
                // From a task without a preference (an `async let` here would inherit the body's
                // preference for the loop, and the default actor would run on the loop).
                let echoed = Task.detached { try await peer.echo(client) }
                try await server.write("to an actor")
                let reply = try await server.read(upToCount: 100)
                return (String(decoding: reply, as: UTF8.self), try await echoed.value)
            }
        }
        let (reply, actorReport) = try #require(try outcome?.get())
        #expect(reply == "rotca na ot")
        #expect(actorReport == "isolated and off the loop after read and write")
    }

    /// `listener.close()` from a plain thread (as a signal or ServiceLifecycle's
    /// `onGracefulShutdown` does) while a task waits in `accept()`: no trap; the listener reads as
    /// closed at once; the waiting task wakes with a `LoopError`; new connections are refused.
    @Test func listenerCloseFromAnotherThreadWakesAcceptAndStopsListening() async throws {
        let outcome = await withWatchdog("closing a listener from another thread") {
            try await withLoop { loop in
                let listener = try TCPListener(on: loop)
                let acceptor = Task(executorPreference: loop) { () async -> LoopError? in
                    do { _ = try await listener.accept(); return nil } catch { return error as? LoopError }
                }
                while loop.pendingWaiterCount < 1 { await Task.yield() }
                let closedAtOnce = await onPlainThread {
                    try? listener.close()
                    try? listener.close()                  // idempotent, any thread
                    return listener.isClosed
                }
                let acceptError = await acceptor.value
                let refused = connectRefused(to: listener.address)
                let laterAccept = await Task(executorPreference: loop) { try await listener.accept() }.result
                return (closedAtOnce, acceptError, refused, loopError(laterAccept))
            }
        }
        let (closedAtOnce, acceptError, refused, laterAccept) = try #require(try outcome?.get())
        #expect(closedAtOnce)
        #expect(acceptError?.operation.hasPrefix("readable(fd:") == true, "\(String(describing: acceptError))")
        #expect(refused, "nothing listens after the close")
        #expect(laterAccept?.errno == EBADF)
    }

    /// `close()` from a plain task while another plain task waits in a read on the connection:
    /// the close is ordered with the pending wait (the reader wakes with a `LoopError`, never hangs).
    @Test func connectionCloseFromAPlainTaskWakesAReaderInAnotherPlainTask() async throws {
        let outcome = await withWatchdog("closing a connection from a plain task") {
            try await withLoop { loop in
                let listener = try TCPListener(on: loop)
                defer { try? listener.close() }
                let client = try await TCPConnection.connect(to: listener.address, on: loop)
                defer { try? client.close() }
                let server = try await listener.accept()
                let reader = Task { () async -> LoopError? in
                    do { _ = try await server.read(upToCount: 10); return nil } catch { return error as? LoopError }
                }
                while loop.pendingWaiterCount < 1 { await Task.yield() }
                let closer = Task { () -> Bool in try? server.close(); return server.isClosed }
                let closed = await closer.value
                let readError = await reader.value
                // The peer sees the close as end-of-file.
                let eof = try await client.read(upToCount: 10).isEmpty
                return (closed, readError, eof, loop.pendingWaiterCount)
            }
        }
        let (closed, readError, eof, waiters) = try #require(try outcome?.get())
        #expect(closed)
        #expect(readError?.operation.hasPrefix("readable(fd:") == true, "\(String(describing: readError))")
        #expect(eof)
        #expect(waiters == 0)
    }

    /// A hopped read is part of the caller's task: cancelling the caller cancels the read (it
    /// throws `CancellationError`, its wait is removed), and task-locals are visible on the way.
    @Test func aHoppedReadIsCancelledWithItsTask() async throws {
        let outcome = await withWatchdog("cancelling a hopped read") {
            try await withLoop { loop in
                let listener = try TCPListener(on: loop)
                defer { try? listener.close() }
                let client = try await TCPConnection.connect(to: listener.address, on: loop)
                defer { try? client.close() }
                let server = try await listener.accept()
                defer { try? server.close() }
                let reader = Task { () async -> String in
                    do { _ = try await server.read(upToCount: 10); return "read" }
                    catch is CancellationError { return "cancelled" }
                    catch { return "\(error)" }
                }
                while loop.pendingWaiterCount < 1 { await Task.yield() }
                reader.cancel()
                let result = await reader.value
                return (result, loop.pendingWaiterCount)
            }
        }
        let (result, waiters) = try #require(try outcome?.get())
        #expect(result == "cancelled")
        #expect(waiters == 0)
    }

    /// After the loop has shut down: async operations from any task fail with `loopHasShutDown`
    /// (never a trap, never a hang), and `close()` still closes the socket (with a plain close(2),
    /// the reactor being gone), once.
    @Test func afterShutdownOperationsFailAndCloseStillCloses() async throws {
        let outcome = await withWatchdog("sockets after their loop shut down") {
            let (listener, connection) = try await withLoop { loop in
                let listener = try TCPListener(on: loop)
                let connection = try await TCPConnection.connect(to: listener.address, on: loop)
                return (listener, connection)
            }
            let read = await Task { try await connection.read(upToCount: 1) }.result
            let accept = await Task.detached { try await listener.accept() }.result
            let listeningBefore = !connectRefused(to: listener.address)
            try listener.close()
            try connection.close()
            try listener.close()
            return (loopError(read), loopError(accept), listeningBefore, connectRefused(to: listener.address))
        }
        let (read, accept, listeningBefore, refusedAfter) = try #require(try outcome?.get())
        #expect(read?.isLoopShutDown == true, "\(String(describing: read))")
        #expect(accept?.isLoopShutDown == true, "\(String(describing: accept))")
        #expect(listeningBefore)
        #expect(refusedAfter)
    }

    /// Races, many times over: a plain task reading (hopping onto the loop), another plain thread
    /// asking for the addresses and then closing the connection, the peer writing. Every read ends
    /// with bytes, end-of-file or a `LoopError` (never a trap or a hang), the sync calls either
    /// answer or say EBADF, and no wait is left behind.
    @Test func closeFromAnotherThreadRacingHoppedReadsAndSyncCalls() async throws {
        let outcome = await withWatchdog("close racing hopped reads", limit: .seconds(60)) {
            try await withLoop { loop in
                let listener = try TCPListener(on: loop)
                defer { try? listener.close() }
                var unexpected: [String] = []
                for round in 0..<200 {
                    let client = try await TCPConnection.connect(to: listener.address, on: loop)
                    let server = try await listener.accept()
                    let reader = Task { () async -> String? in
                        do {
                            while true {
                                if try await server.read(upToCount: 64).isEmpty { return nil }
                            }
                        } catch let error as LoopError {
                            return error.errno == EBADF || error.operation.hasPrefix("readable(fd:") ? nil : "read: \(error)"
                        } catch {
                            return "read: \(error)"
                        }
                    }
                    if round % 2 == 0 { try await client.write("x") }
                    let syncOutcome = await onPlainThread { () -> String? in
                        var problem: String?
                        do { _ = try server.peerAddress } catch { if (error as? LoopError)?.errno != EBADF { problem = "peerAddress: \(error)" } }
                        try? server.close()
                        do { _ = try server.localAddress; problem = problem ?? "localAddress answered after close" }
                        catch { if (error as? LoopError)?.errno != EBADF { problem = "localAddress: \(error)" } }
                        return problem
                    }
                    if let syncOutcome { unexpected.append(syncOutcome) }
                    if let problem = await reader.value { unexpected.append(problem) }
                    try client.close()
                }
                return (unexpected, loop.pendingWaiterCount)
            }
        }
        let (unexpected, waiters) = try #require(try outcome?.get())
        #expect(unexpected.isEmpty, "\(unexpected.prefix(5))")
        #expect(waiters == 0)
    }

    /// The runtime check that remains (loop-only APIs such as `schedule(after:)` or
    /// `pendingWaiterCount`, here from a plain `Task {}` in a `withLoop` body) names the fix for
    /// async code — in every build configuration (a `fatalError`, not a stripped `precondition`).
    @Test func aLoopOnlyAPIFromAPlainTaskTrapsNamingTheFix() async throws {
        let run = try await Fixture(program: "SerialLoopModes", scenario: "loop-only-api-from-a-plain-task").run()
        #expect(!run.timedOut)
        #expect(run.exitCode != 0)
        #expect(run.stderr.contains("Loop.pendingWaiterCount must be called on the loop's thread"), "\(run.stderr)")
        #expect(run.stderr.contains("Task(executorPreference: loop)"))
        #expect(run.stderr.contains("withTaskExecutorPreference(loop)"))
        #expect(!run.stdout.contains("unexpected"))
    }
}

private struct ServerReport: Sendable {
    var offLoop: [Bool] = []
    var request = ""
    var peerIsLoopback = false
    var endOfFile = false
    var closed = false
}

/// A default actor: no executor preference, so it runs on the global executor.
private actor Peer {
    let loop: Loop
    var steps = 0

    init(loop: Loop) { self.loop = loop }

    func echo(_ connection: TCPConnection) async throws -> String {
        let bytes = try await connection.read(upToCount: 100)
        steps += 1
        let afterRead = !loop.isOnLoopThread
        try await connection.write(bytes.reversed())
        steps += 1
        self.assertIsolated()
        let afterWrite = !loop.isOnLoopThread
        return steps == 2 && afterRead && afterWrite ? "isolated and off the loop after read and write" : "read: \(afterRead), write: \(afterWrite)"
    }
}

/// Whether a blocking connect to `address` is refused (nothing listens there).
private func connectRefused(to address: SocketAddress) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
    defer { close(fd) }
    var raw = sockaddr_in()
    raw.sin_family = sa_family_t(AF_INET)
    raw.sin_port = address.port.bigEndian
    inet_pton(AF_INET, address.host, &raw.sin_addr)
    let result = withUnsafePointer(to: &raw) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    return result != 0 && errno == ECONNREFUSED
}

/// Runs `body` on a new plain thread (no task, no executor) and returns its value.
private func onPlainThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        _ = startDetachedThread { continuation.resume(returning: body()) }
    }
}

/// Issue 21, item 6: `Loop.close` never retries `close(2)`. On Linux the number is released even
/// when close reports `EINTR`, so a retry could close a number another thread was just given.
@Suite("Loop.close and EINTR")
struct CloseEINTRTests {
    @Test func closeReportingEINTRIsCalledOnceAndSucceeds() throws {
        let loop = try Loop()
        defer { _ = loop.shutdown() }
        var calls = 0
        try loop.closeOnce(12345) { _ in
            calls += 1
            errno = EINTR
            return -1
        }
        #expect(calls == 1, "close(2) is never retried")
    }

    @Test func otherCloseFailuresAreThrownNamingTheCall() throws {
        let loop = try Loop()
        defer { _ = loop.shutdown() }
        var calls = 0
        let error = #expect(throws: LoopError.self) {
            try loop.closeOnce(12345) { _ in calls += 1; errno = EIO; return -1 }
        }
        #expect(calls == 1)
        #expect(error?.errno == EIO)
        #expect(error?.operation == "close(fd: 12345)")
    }
}
