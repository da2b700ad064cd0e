@preconcurrency import Glibc
import SerialLoop
import CSerialLoopShims

// A thin TCP layer over the loop's readiness API
//
// Every socket here is non-blocking. An operation first tries its system call; only on `EAGAIN` does
// the task suspend in `loop.readable(fd)` / `loop.writable(fd)` and try again — so a read that can
// be served at once costs one syscall and no trip through epoll. Readiness is level-triggered and
// may be spurious, which the retry loop absorbs.
//
// Rules of use
// - Any task may use a socket. Its operations run on the socket's loop: called from a task on the
//   loop (`withLoop` bodies, `Task(executorPreference: loop)`, task-group children there, actors on
//   the loop) an operation runs in place, at no extra cost; called from anywhere else (a plain
//   `Task {}`, `Task.detached`, the main actor, an actor on another executor) it hops onto the loop
//   for the operation and the caller resumes where it was — one executor switch each way.
//   `close()`, `isClosed` and the sync calls (`shutdownWrite()`, the addresses) work from any thread.
// - One reader and one writer at a time per connection (a reader task and a writer task may run
//   side by side). Several concurrent `accept()` calls on one listener are fine.
// - Close with `close()`: it goes through `loop.close(fd)`, so tasks suspended in a read, write or
//   accept on the socket wake with a `LoopError` instead of hanging, and the reactor forgets the
//   descriptor before its number can be reused. A socket dropped without `close()` is closed the
//   same way by its deinit.
// - Errors are `LoopError`s naming the call and the descriptor, e.g.
//   `connect(to: 127.0.0.1:1, fd: 9): ECONNREFUSED (Connection refused)`.
// - Writes use `MSG_NOSIGNAL`: a peer that went away is `EPIPE`, never a `SIGPIPE` that kills the process.

/// A TCP socket listening on an IPv4 address.
///
/// ```swift
/// let listener = try TCPListener(on: loop, address: .loopback(port: 0))
/// print("listening on \(listener.address)")
/// while true {
///     let connection = try await listener.accept()
///     Task(executorPreference: loop) { try await serve(connection) }
/// }
/// ```
public final class TCPListener: Sendable {
    private let endpoint: ListenerEndpoint
    /// The loop the socket is registered with.
    public let loop: Loop
    /// The descriptor; it stays readable after `close()`, for error messages. (On a simulated
    /// host, a number the simulation gave the socket.)
    public let fd: Int32
    /// The address actually bound: with port 0, the port the kernel chose.
    public let address: SocketAddress
    /// Whether `close()` was called. Any thread.
    public var isClosed: Bool {
        switch endpoint {
        case .kernel(let descriptor): descriptor.isClosed
        case .simulated(let simulated): simulated.isClosed
        }
    }

    /// The kernel's socket, or a simulated host's (SimulationSeam.swift).
    private enum ListenerEndpoint: Sendable {
        case kernel(SocketDescriptor)
        case simulated(any SimulatedListenerEndpoint)
    }

    /// The kernel socket; a simulated listener has none (an operation written for descriptors only).
    private var descriptor: SocketDescriptor {
        guard case .kernel(let descriptor) = endpoint else { simulatedSocketMisuse("TCPListener", fd) }
        return descriptor
    }

    /// Creates a socket, binds it to `address` (with `SO_REUSEADDR`, and `SO_REUSEPORT` if asked) and listens. Any thread: the
    /// socket is not registered with the loop until an operation waits on it.
    ///
    /// - Parameters:
    ///   - loop: the loop the listener's operations run on.
    ///   - address: the IPv4 address to bind; with port 0 (the default, on 127.0.0.1) the kernel
    ///     picks a free port, which ``address`` then holds.
    ///   - backlog: the kernel's queue of connections not yet accepted (capped by
    ///     `net.core.somaxconn`).
    ///   - reusePort: sets `SO_REUSEPORT`, so that several listeners (one per loop of a
    ///     ``SerialLoop/LoopGroup``, each created with `reusePort: true` by the same user) can bind
    ///     the same address and port; the kernel then hands each new connection to one of them,
    ///     by a hash of the connection's addresses and ports, so the spread is uneven for few
    ///     connections. To bind the port the first listener chose, pass its ``address``.
    /// - Throws: ``SerialLoop/LoopError`` naming `socket`, `bind` (e.g. `EADDRINUSE`) or `listen` and the errno;
    ///   `EINVAL` when the host is not an IPv4 literal.
    ///
    /// In a task running on a simulated host (SerialLoopNetSimulation's `SimulatedHost.run`), the
    /// listener is that host's: `loop` must be the simulated network's test loop, `reusePort` is
    /// ignored, and a port already bound there is `EADDRINUSE`.
    public init(on loop: Loop, address: SocketAddress = .loopback(), backlog: Int32 = 1024, reusePort: Bool = false) throws(LoopError) {
        self.loop = loop
        if let stack = SimulatedStackContext.current {
            let simulated = try stack.listen(on: loop, address: address, backlog: backlog)
            endpoint = .simulated(simulated)
            fd = simulated.fd
            self.address = simulated.address
            return
        }
        let sockaddr = try address.sockaddr(for: "bind(to: \(address))")
        let fd = try makeTCPSocket("socket() for listening on \(address)")
        do throws(LoopError) {
            var one: Int32 = 1
            _ = try syscall("setsockopt(fd: \(fd), SO_REUSEADDR)") {
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            }
            if reusePort {
                _ = try syscall("setsockopt(fd: \(fd), SO_REUSEPORT)") {
                    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size))
                }
            }
            _ = try syscall("bind(to: \(address), fd: \(fd))") { withSockaddr(sockaddr) { bind(fd, $0, $1) } }
            _ = try syscall("listen(fd: \(fd), backlog: \(backlog))") { Glibc.listen(fd, backlog) }
            self.address = try socketAddress(of: fd, "getsockname", getsockname)
        } catch {
            Glibc.close(fd)     // never seen by the loop: a plain close is right
            throw error
        }
        self.fd = fd
        endpoint = .kernel(SocketDescriptor(loop: loop, fd: fd, owner: "TCPListener", chaos: SocketChaosContext.current))
    }

    /// Waits for the next incoming connection and returns it (non-blocking, `TCP_NODELAY` set).
    ///
    /// Connections that were reset before they could be accepted are skipped. Any task: off the
    /// loop's thread the call hops onto the loop and back (see "Rules of use" in Socket.swift).
    /// - Throws: ``SerialLoop/LoopError`` naming `accept` and the errno (e.g. `EMFILE` when out of descriptors),
    ///   or naming `readable` when the listener is closed while waiting, or
    ///   ``SerialLoop/LoopError/loopHasShutDown(_:)``; `CancellationError` when the task is cancelled.
    nonisolated(nonsending) public func accept() async throws -> TCPConnection {
        guard loop.isOnLoopThread else { return try await onLoop(loop, "accept") { try await self.accept() } }
        if case .simulated(let simulated) = endpoint { return TCPConnection(loop: loop, simulated: try await simulated.accept()) }
        // `accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)` would save two fcntls, but Glibc's Swift module
        // does not declare it (it needs _GNU_SOURCE in the C shim).
        let descriptor = self.descriptor, fd = descriptor.fd
        let connection = try await descriptor.perform("accept", .accept, waitingFor: .read, retrying: [ECONNABORTED, EPROTO]) { _ in
            Glibc.accept(fd, nil, nil)
        }
        // Closes it if we throw below; takes the listener's fault injector (ChaosSeam.swift).
        let accepted = TCPConnection(loop: loop, fd: connection, chaos: descriptor.chaos)
        _ = try syscall("fcntl(fd: \(connection), F_SETFL, O_NONBLOCK)") {
            fcntl(connection, F_SETFL, fcntl(connection, F_GETFL) | O_NONBLOCK)
        }
        _ = try syscall("fcntl(fd: \(connection), F_SETFD, FD_CLOEXEC)") { fcntl(connection, F_SETFD, FD_CLOEXEC) }
        setNoDelay(connection)
        return accepted
    }

    /// Stops listening: closes the socket through the loop, so tasks waiting in ``accept()`` wake
    /// with a ``SerialLoop/LoopError``. Idempotent. Any thread (a ServiceLifecycle `onGracefulShutdown`
    /// handler, a signal task): off the loop's thread the listener is marked closed at once (later
    /// calls fail with `EBADF`) and the loop closes the socket after the work already queued on it;
    /// the call does not wait for that. Once the loop has shut down, it closes the socket at once.
    /// - Throws: ``SerialLoop/LoopError`` naming `close` if the kernel refuses (only on the loop's thread).
    public func close() throws(LoopError) {
        switch endpoint {
        case .kernel(let descriptor): try descriptor.close()
        case .simulated(let simulated): simulated.close()
        }
    }
}

/// A connected TCP stream: read, write, half-close, close.
///
/// ```swift
/// let connection = try await TCPConnection.connect(to: .loopback(port: 8080), on: loop)
/// defer { try? connection.close() }
/// try await connection.write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
/// var response: [UInt8] = []
/// while case let chunk = try await connection.read(upToCount: 65536), !chunk.isEmpty {
///     response += chunk
/// }
/// ```
public final class TCPConnection: Sendable {
    private let endpoint: ConnectionEndpoint
    /// The loop the socket is registered with.
    public let loop: Loop
    /// The descriptor; it stays readable after `close()`, for error messages. (On a simulated
    /// host, a number the simulation gave the socket.)
    public let fd: Int32
    /// Whether `close()` was called. Any thread.
    public var isClosed: Bool {
        switch endpoint {
        case .kernel(let descriptor): descriptor.isClosed
        case .simulated(let simulated): simulated.isClosed
        }
    }

    /// The kernel's socket, or a simulated host's (SimulationSeam.swift).
    private enum ConnectionEndpoint: Sendable {
        case kernel(SocketDescriptor)
        case simulated(any SimulatedConnectionEndpoint)
    }

    /// The kernel socket; a simulated connection has none (an operation written for descriptors only).
    var descriptor: SocketDescriptor {
        guard case .kernel(let descriptor) = endpoint else { simulatedSocketMisuse("TCPConnection", fd) }
        return descriptor
    }

    init(loop: Loop, fd: Int32, chaos: (any SocketFaultInjector)?) {
        self.loop = loop
        self.fd = fd
        endpoint = .kernel(SocketDescriptor(loop: loop, fd: fd, owner: "TCPConnection", chaos: chaos))
    }

    init(loop: Loop, simulated: any SimulatedConnectionEndpoint) {
        self.loop = loop
        fd = simulated.fd
        endpoint = .simulated(simulated)
    }

    /// The simulated endpoint behind this connection, `nil` for a kernel socket: what the
    /// simulation's fault verbs (reset a connection) act on.
    package var simulatedEndpoint: (any SimulatedConnectionEndpoint)? {
        if case .simulated(let simulated) = endpoint { return simulated }
        return nil
    }

    /// Connects to `address` without blocking the loop (`TCP_NODELAY` set on the new socket).
    ///
    /// Any task: off the loop's thread the call hops onto the loop and back.
    /// - Throws: ``SerialLoop/LoopError`` naming `connect(to:)` and the errno — `ECONNREFUSED` when nothing
    ///   listens, `EINVAL` when the host is not an IPv4 literal; ``SerialLoop/LoopError/loopHasShutDown(_:)``;
    ///   `CancellationError` when the task is cancelled (the half-open socket is closed).
    ///   In a task running on a simulated host (SerialLoopNetSimulation), the connection crosses
    ///   the simulated network, with the same errors (and `ETIMEDOUT` when no answer comes back
    ///   within the network's connect timeout).
    nonisolated(nonsending) public static func connect(to address: SocketAddress, on loop: Loop) async throws -> TCPConnection {
        guard loop.isOnLoopThread else {
            return try await onLoop(loop, "connect(to: \(address))") { try await connect(to: address, on: loop) }
        }
        if let stack = SimulatedStackContext.current {
            return TCPConnection(loop: loop, simulated: try await stack.connect(to: address, on: loop))
        }
        let sockaddr = try address.sockaddr(for: "connect(to: \(address))")
        let fd = try makeTCPSocket("socket() for connecting to \(address)")
        let connection = TCPConnection(loop: loop, fd: fd, chaos: SocketChaosContext.current)   // closes fd through the loop on failure
        var code: Int32 = withSockaddr(sockaddr, { Glibc.connect(fd, $0, $1) }) == 0 ? 0 : c_serial_loop_errno()
        // Chaos (ChaosSeam.swift) turns a success or EINPROGRESS into what the kernel may also say
        // then: the connection proceeds either way.
        if code == 0 || code == EINPROGRESS, connection.descriptor.chaos != nil, connection.descriptor.chaosLimit(.connect) == nil {
            code = c_serial_loop_errno()
        }
        if code != 0 {
            // EINTR: the connection still proceeds in the background, exactly as with EINPROGRESS
            // (calling connect again would only say EALREADY).
            guard code == EINPROGRESS || code == EINTR else {
                throw LoopError(operation: "connect(to: \(address), fd: \(fd))", errno: code)
            }
            // The outcome arrives as writability; SO_ERROR says which.
            try await loop.writable(fd)
            var pending: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            _ = try syscall("getsockopt(fd: \(fd), SO_ERROR)") { getsockopt(fd, SOL_SOCKET, SO_ERROR, &pending, &length) }
            if pending != 0 { throw LoopError(operation: "connect(to: \(address), fd: \(fd))", errno: pending) }
        }
        setNoDelay(fd)
        return connection
    }

    /// Reads what has arrived, up to `buffer.count` bytes, waiting until at least one byte (or
    /// end-of-file) is there. Returns the count; `0` means the peer closed its side.
    ///
    /// Any task: off the loop's thread the call hops onto the loop (where the bytes are copied into
    /// `buffer`) and back.
    /// - Precondition: `buffer` stays valid, and untouched by others, until the call returns.
    /// - Throws: ``SerialLoop/LoopError`` naming `read` and the errno (e.g. `ECONNRESET`), or naming
    ///   `readable` when the connection is closed while waiting, or
    ///   ``SerialLoop/LoopError/loopHasShutDown(_:)``; `CancellationError`.
    nonisolated(nonsending) public func read(into buffer: UnsafeMutableRawBufferPointer) async throws -> Int {
        guard loop.isOnLoopThread else {
            nonisolated(unsafe) let buffer = buffer     // the caller waits: only the loop touches it meanwhile
            return try await onLoop(loop, "read(fd: \(fd))") { try await self.read(into: buffer) }
        }
        if case .simulated(let simulated) = endpoint { return try await simulated.read(into: buffer) }
        let fd = self.fd
        return try await descriptor.perform("read", .read, waitingFor: .read) { limit in
            Glibc.read(fd, buffer.baseAddress, min(buffer.count, limit))
        }
    }

    /// Reads what has arrived, up to `maxCount` bytes (at least one: waits for data). An empty
    /// array means end-of-file. The same errors as ``read(into:)``; any task, as there.
    /// - Precondition: `maxCount > 0` (a trap otherwise).
    nonisolated(nonsending) public func read(upToCount maxCount: Int) async throws -> [UInt8] {
        if maxCount <= 0 { fatalError("TCPConnection.read(upToCount:) needs a positive count, got \(maxCount)") }
        guard loop.isOnLoopThread else {
            return try await onLoop(loop, "read(fd: \(fd))") { try await self.read(upToCount: maxCount) }
        }
        if case .simulated(let simulated) = endpoint { return try await simulated.read(upToCount: maxCount) }
        let fd = self.fd, descriptor = self.descriptor
        while true {
            try descriptor.checkOpen("read")
            var code: Int32 = 0
            let bytes = [UInt8](unsafeUninitializedCapacity: maxCount) { buffer, initialized in
                let count = descriptor.chaos == nil ? Glibc.read(fd, buffer.baseAddress, maxCount)
                    : descriptor.chaosLimit(.read).map { Glibc.read(fd, buffer.baseAddress, min(maxCount, $0)) } ?? -1
                if count < 0 { code = c_serial_loop_errno() }
                initialized = max(count, 0)
            }
            if code == 0 { return bytes }
            try await descriptor.wait(afterFailureWith: code, "read", for: .read)
        }
    }

    /// Writes all of `bytes`, waiting for the socket to drain as often as needed. Any task: off
    /// the loop's thread the call hops onto the loop and back.
    ///
    /// - Throws: ``SerialLoop/LoopError`` naming `write` and the errno (`EPIPE` or `ECONNRESET` when the
    ///   peer went away), or naming `writable` when the connection is closed while waiting, or
    ///   ``SerialLoop/LoopError/loopHasShutDown(_:)``; `CancellationError` (part of the bytes may have been sent).
    nonisolated(nonsending) public func write(_ bytes: [UInt8]) async throws {
        guard loop.isOnLoopThread else {
            return try await onLoop(loop, "write(fd: \(fd))") { try await self.write(bytes) }
        }
        if case .simulated(let simulated) = endpoint { return try await simulated.write(bytes) }
        let fd = self.fd, descriptor = self.descriptor
        var offset = 0
        while offset < bytes.count {
            offset += try await descriptor.perform("write", .write, waitingFor: .write) { limit in
                bytes.withUnsafeBytes { raw in send(fd, raw.baseAddress! + offset, min(raw.count - offset, limit), Int32(MSG_NOSIGNAL)) }
            }
        }
    }

    /// Writes the UTF-8 bytes of `text`; see the `[UInt8]` overload.
    nonisolated(nonsending) public func write(_ text: String) async throws {
        try await write(Array(text.utf8))
    }

    /// Half-closes the connection: the peer reads end-of-file (after every byte already written),
    /// while this side can still read. Any thread.
    /// - Throws: ``SerialLoop/LoopError`` naming `shutdown`; `EBADF` after ``close()``.
    public func shutdownWrite() throws(LoopError) {
        if case .simulated(let simulated) = endpoint { return try simulated.shutdownWrite() }
        _ = try descriptor.withOpenNumber("shutdownWrite") { fd throws(LoopError) in
            try syscall("shutdown(fd: \(fd), SHUT_WR)") { shutdown(fd, Int32(SHUT_WR)) }
        }
    }

    /// This end's address. Any thread.
    public var localAddress: SocketAddress {
        get throws(LoopError) {
            if case .simulated(let simulated) = endpoint { return simulated.localAddress }
            return try descriptor.withOpenNumber("localAddress") { fd throws(LoopError) in
                try socketAddress(of: fd, "getsockname", getsockname)
            }
        }
    }

    /// The peer's address. Any thread.
    public var peerAddress: SocketAddress {
        get throws(LoopError) {
            if case .simulated(let simulated) = endpoint { return simulated.peerAddress }
            return try descriptor.withOpenNumber("peerAddress") { fd throws(LoopError) in
                try socketAddress(of: fd, "getpeername", getpeername)
            }
        }
    }

    /// Closes the connection through the loop: tasks suspended in a read or write on it wake with
    /// a ``SerialLoop/LoopError``. Idempotent. Any thread: off the loop's thread the connection is marked
    /// closed at once (later calls fail with `EBADF`) and the loop closes the socket after the work
    /// already queued on it; the call does not wait for that. Once the loop has shut down, it closes
    /// the socket at once.
    /// - Throws: ``SerialLoop/LoopError`` naming `close` if the kernel refuses (only on the loop's thread).
    public func close() throws(LoopError) {
        switch endpoint {
        case .kernel(let descriptor): try descriptor.close()
        case .simulated(let simulated): simulated.close()
        }
    }
}

// MARK: Helpers

/// A new non-blocking, close-on-exec IPv4 TCP socket.
private func makeTCPSocket(_ operation: @autoclosure () -> String) throws(LoopError) -> Int32 {
    try syscall(operation()) { socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0) }
}

/// Small writes (an HTTP response, an RPC) go out at once instead of waiting for Nagle's timer.
/// Best effort: a socket that refuses still works.
private func setNoDelay(_ fd: Int32) {
    var one: Int32 = 1
    _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
}

/// Out of line, so that the `descriptor` accessors stay small enough to inline on every operation.
@inline(never)
private func simulatedSocketMisuse(_ owner: StaticString, _ fd: Int32) -> Never {
    misuse("\(owner)(fd: \(fd)) is a simulated socket: this operation needs a kernel descriptor")
}

private func withSockaddr<R>(_ address: sockaddr_in, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
    withUnsafePointer(to: address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
}
