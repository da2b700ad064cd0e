@preconcurrency import Glibc
import SerialLoop
import SerialLoopNet
import Synchronization

// The simulated sockets behind `TCPListener` and `TCPConnection` on a simulated host (the seam is
// SerialLoopNet's SimulationSeam.swift). Their operations run on the network's loop thread; the
// errors are the kernel's, named as on the real path (`read(fd: 5): ECONNRESET (…)`).

/// One end of a simulated TCP connection.
final class SimulatedEndpoint: SimulatedConnectionEndpoint, @unchecked Sendable {
    // @unchecked: state touched on the loop thread only, but `isClosed` (an atomic).
    enum State { case synSent, synReceived, established, closed }

    let network: SimulatedNetwork
    let host: SimulatedHost
    let generation: Int
    let fd: Int32
    let connectionID: Int
    let localAddress: SocketAddress
    let peerAddress: SocketAddress
    let peerHost: SimulatedHost
    var state: State
    /// The other end (strong: a closed end still answers its peer's segments with RST); the
    /// cycle is broken once both ends are closed, or by a shutdown.
    var peer: SimulatedEndpoint?
    /// The listener a server end waits in until accepted.
    weak var listener: SimulatedListener?

    private let closeRequested = Atomic<Bool>(false)
    /// Bytes arrived and not read yet: `receiveBuffer[receiveStart...]`.
    private var receiveBuffer: [UInt8] = []
    private var receiveStart = 0
    private var receivedFIN = false
    /// A reset not reported yet: the next read or write throws it.
    private var pendingError: Int32?
    /// After a reset: reads see end-of-file, writes `EPIPE`.
    private var wasReset = false
    private var sentFIN = false
    /// Bytes this end sent that have not reached the peer's receive buffer.
    var inFlight = 0
    /// Why the socket vanished (its host crashed, the network was shut down).
    private var vanished: String?
    private var connectError: Int32?
    private var connectTimers: [Int] = []
    private let readers = WaitQueue(), writers = WaitQueue(), connecting = WaitQueue()

    init(network: SimulatedNetwork, host: SimulatedHost, fd: Int32, connectionID: Int,
         localAddress: SocketAddress, peerAddress: SocketAddress, peerHost: SimulatedHost, state: State) {
        self.network = network
        self.host = host
        generation = host.generation
        self.fd = fd
        self.connectionID = connectionID
        self.localAddress = localAddress
        self.peerAddress = peerAddress
        self.peerHost = peerHost
        self.state = state
    }

    var isClosed: Bool { closeRequested.load(ordering: .acquiring) }

    /// Whether segments for this end are taken (else the stack answers RST).
    var isAlive: Bool { state != .closed && vanished == nil && !isClosed }

    var unreadCount: Int { receiveBuffer.count - receiveStart }

    // MARK: Connecting

    /// SYN now, retransmitted after 1 s, 3 s, 7 s, … (Linux's doubling RTO) while unanswered, and
    /// `ETIMEDOUT` at the network's connect timeout. Returns once the SYN-ACK arrived.
    nonisolated(nonsending) func connect(port: UInt16, operation: String) async throws {
        let start = network.nowNanoseconds
        let deadline = start + network.connectTimeout.wholeNanoseconds
        sendSYN(port: port)
        var retry: Int64 = 1_000_000_000
        while start + retry < deadline {
            connectTimers.append(network.timer(at: start + retry) { [self] in
                if state == .synSent && vanished == nil { sendSYN(port: port) }
            })
            retry = retry * 2 + 1_000_000_000
        }
        connectTimers.append(network.timer(at: deadline) { [self] in
            guard state == .synSent else { return }
            network.log(host, peerHost, connectionID, "connect timed out")
            fail(connect: ETIMEDOUT)
        })
        do {
            while state == .synSent {
                try checkUsable("connect")
                try await connecting.wait(on: network.loop)
            }
            try checkUsable("connect")
        } catch {
            close()     // a cancelled or failed connect leaves no half-open socket behind
            throw error
        }
        if let connectError { throw LoopError(operation: operation, errno: connectError) }
    }

    private func sendSYN(port: UInt16) {
        network.send(Segment(kind: .syn(port: port), from: self, to: nil, fromHost: host, toHost: peerHost, connectionID: connectionID))
    }

    private func fail(connect code: Int32) {
        connectError = code
        state = .closed
        cancelConnectTimers()
        host.endpoints[ObjectIdentifier(self)] = nil
        connecting.wakeAll()
    }

    private func cancelConnectTimers() {
        for id in connectTimers { network.cancelTimer(id) }
        connectTimers = []
    }

    // MARK: Segments arriving

    /// A SYN-ACK, ACK, data or FIN for this (alive) end.
    func receive(_ segment: Segment) {
        switch segment.kind {
        case .synAck:
            guard state == .synSent else { return }     // a duplicate answer to a retransmitted SYN
            peer = segment.from
            state = .established
            cancelConnectTimers()
            network.send(Segment(kind: .ack, from: self, to: segment.from, fromHost: host, toHost: peerHost, connectionID: connectionID))
            connecting.wakeAll()
        case .ack:
            guard state == .synReceived else { return }
            state = .established
            listener?.established(self)
        case .data(let bytes):
            segment.from.inFlight -= bytes.count
            receiveBuffer.append(contentsOf: bytes)
            readers.wakeAll()
        case .fin:
            receivedFIN = true
            readers.wakeAll()
        case .syn, .rst:
            break   // handled by the host and `receiveReset`
        }
    }

    /// A RST arrived (or the network reset the connection from outside).
    func receiveReset() {
        guard isAlive else { return }
        switch state {
        case .synSent:
            network.log(host, peerHost, connectionID, "connection refused")
            fail(connect: ECONNREFUSED)
        case .synReceived:
            state = .closed
            listener?.remove(self)
            host.endpoints[ObjectIdentifier(self)] = nil
        case .established:
            pendingError = ECONNRESET
            wasReset = true
            state = .closed
            host.endpoints[ObjectIdentifier(self)] = nil
            readers.wakeAll()
            writers.wakeAll()
            breakCycleIfBothClosed()
        case .closed:
            break
        }
    }

    /// The host crashed or the network shut down: no segment goes out, waiters fail.
    func vanish(reason: String) {
        guard vanished == nil else { return }
        vanished = reason
        state = .closed
        cancelConnectTimers()
        readers.failAll(LoopError(.descriptorClosed, operation: "read(fd: \(fd))", reason: reason))
        writers.failAll(LoopError(.descriptorClosed, operation: "write(fd: \(fd))", reason: reason))
        connecting.failAll(LoopError(.descriptorClosed, operation: "connect(fd: \(fd))", reason: reason))
        if network.isShutDown { peer = nil }
    }

    /// Sends a RST to the peer and forgets the connection (a listener closed with it unaccepted).
    func abort() {
        guard isAlive else { return }
        if let peer { network.send(Segment(kind: .rst, from: self, to: peer, fromHost: host, toHost: peerHost, connectionID: connectionID)) }
        state = .closed
        host.endpoints[ObjectIdentifier(self)] = nil
        breakCycleIfBothClosed()
    }

    private func breakCycleIfBothClosed() {
        if let peer, peer.state == .closed {
            peer.peer = nil
            self.peer = nil
        }
    }

    // MARK: Operations (SerialLoopNet's seam)

    /// EBADF after `close()`; the crash's error once the socket vanished.
    private func checkUsable(_ operation: String) throws(LoopError) {
        if isClosed { throw LoopError(operation: "\(operation)(fd: \(fd))", errno: EBADF) }
        if let vanished { throw LoopError(.descriptorClosed, operation: "\(operation)(fd: \(fd))", reason: vanished) }
    }

    nonisolated(nonsending) func read(into buffer: UnsafeMutableRawBufferPointer) async throws -> Int {
        try await waitForReadable()
        let count = min(buffer.count, unreadCount)
        if count > 0 {
            receiveBuffer.withUnsafeBytes { bytes in
                buffer.baseAddress!.copyMemory(from: bytes.baseAddress! + receiveStart, byteCount: count)
            }
            consumed(count)
        }
        return count
    }

    nonisolated(nonsending) func read(upToCount maxCount: Int) async throws -> [UInt8] {
        try await waitForReadable()
        let count = min(maxCount, unreadCount)
        let bytes = Array(receiveBuffer[receiveStart ..< receiveStart + count])
        if count > 0 { consumed(count) }
        return bytes
    }

    /// Returns when bytes are there to read, or end-of-file (then `unreadCount` is 0); throws a
    /// reset once.
    private nonisolated(nonsending) func waitForReadable() async throws {
        while true {
            try checkUsable("read")
            if unreadCount > 0 { return }
            if let code = pendingError {
                pendingError = nil
                throw LoopError(operation: "read(fd: \(fd))", errno: code)
            }
            if receivedFIN || wasReset || state == .closed { return }
            try await readers.wait(on: network.loop)
        }
    }

    /// `count` bytes left the receive buffer: room for the peer's writer.
    private func consumed(_ count: Int) {
        receiveStart += count
        if receiveStart == receiveBuffer.count {
            receiveBuffer.removeAll(keepingCapacity: true)
            receiveStart = 0
        } else if receiveStart >= 65536 && receiveStart * 2 >= receiveBuffer.count {
            receiveBuffer.removeFirst(receiveStart)
            receiveStart = 0
        }
        peer?.writers.wakeAll()
    }

    nonisolated(nonsending) func write(_ bytes: [UInt8]) async throws {
        var offset = 0
        while offset < bytes.count {
            try checkUsable("write")
            if let code = pendingError {
                pendingError = nil
                throw LoopError(operation: "write(fd: \(fd))", errno: code)
            }
            guard state == .established, !sentFIN, let peer else {
                throw LoopError(operation: "write(fd: \(fd))", errno: EPIPE)
            }
            let window = network.receiveBufferSize - peer.unreadCount - inFlight
            if window <= 0 {
                try await writers.wait(on: network.loop)
                continue
            }
            let count = min(window, bytes.count - offset)
            var sent = 0
            while sent < count {
                let size = min(network.segmentSize, count - sent)
                let start = offset + sent
                network.send(Segment(kind: .data(Array(bytes[start ..< start + size])), from: self, to: peer, fromHost: host, toHost: peerHost, connectionID: connectionID))
                sent += size
            }
            inFlight += count
            offset += count
        }
    }

    func shutdownWrite() throws(LoopError) {
        if isClosed { throw LoopError(operation: "shutdown(fd: \(fd), SHUT_WR)", errno: EBADF) }
        guard network.loop.isOnLoopThread else {
            onLoopThread(network.loop) { [self] in sendFIN() }
            return
        }
        if let vanished { throw LoopError(.descriptorClosed, operation: "shutdown(fd: \(fd), SHUT_WR)", reason: vanished) }
        guard state == .established || sentFIN else { throw LoopError(operation: "shutdown(fd: \(fd), SHUT_WR)", errno: ENOTCONN) }
        sendFIN()
    }

    /// The FIN follows every byte written before (the link keeps order).
    private func sendFIN() {
        guard state == .established, !sentFIN, vanished == nil, let peer else { return }
        sentFIN = true
        network.send(Segment(kind: .fin, from: self, to: peer, fromHost: host, toHost: peerHost, connectionID: connectionID))
    }

    func close() {
        guard !closeRequested.exchange(true, ordering: .acquiringAndReleasing) else { return }
        onLoopThread(network.loop) { [self] in closeOnLoop() }
    }

    /// As Linux: unread bytes → RST (the peer's next read or write fails), else a FIN after what
    /// was written. Waiting tasks wake with a `descriptorClosed` error naming `readable`/`writable`.
    private func closeOnLoop() {
        host.endpoints[ObjectIdentifier(self)] = nil
        cancelConnectTimers()
        readers.failAll(LoopError.descriptorClosed("readable(fd: \(fd))"))
        writers.failAll(LoopError.descriptorClosed("writable(fd: \(fd))"))
        connecting.failAll(LoopError.descriptorClosed("writable(fd: \(fd))"))
        guard vanished == nil else { return }
        switch state {
        case .synSent:
            state = .closed
        case .synReceived:
            listener?.remove(self)
            abort()
        case .established:
            if unreadCount > 0, let peer {
                network.log(host, peerHost, connectionID, "close", "with unread bytes: rst", unreadCount)
                network.send(Segment(kind: .rst, from: self, to: peer, fromHost: host, toHost: peerHost, connectionID: connectionID))
            } else {
                sendFIN()
            }
            state = .closed
            breakCycleIfBothClosed()
        case .closed:
            breakCycleIfBothClosed()
        }
    }
}

/// A simulated listening socket.
final class SimulatedListener: SimulatedListenerEndpoint, @unchecked Sendable {
    let host: SimulatedHost
    let fd: Int32
    let address: SocketAddress
    let backlog: Int
    /// Connections whose SYN was answered and whose ACK has not arrived.
    var pending: [SimulatedEndpoint] = []
    /// Established connections waiting for `accept()`.
    var ready: [SimulatedEndpoint] = []
    /// The connection ids answered, so a retransmitted SYN is not answered twice.
    var answered: Set<Int> = []
    private let acceptors = WaitQueue()
    private let closeRequested = Atomic<Bool>(false)
    private var vanished: String?

    init(host: SimulatedHost, fd: Int32, address: SocketAddress, backlog: Int) {
        self.host = host
        self.fd = fd
        self.address = address
        self.backlog = backlog
    }

    var isClosed: Bool { closeRequested.load(ordering: .acquiring) }

    nonisolated(nonsending) func accept() async throws -> any SimulatedConnectionEndpoint {
        while true {
            if isClosed { throw LoopError(operation: "accept(fd: \(fd))", errno: EBADF) }
            if let vanished { throw LoopError(.descriptorClosed, operation: "accept(fd: \(fd))", reason: vanished) }
            if !ready.isEmpty {
                let connection = ready.removeFirst()
                connection.listener = nil
                return connection
            }
            try await acceptors.wait(on: host.network.loop)
        }
    }

    func established(_ connection: SimulatedEndpoint) {
        pending.removeAll { $0 === connection }
        ready.append(connection)
        acceptors.wakeAll()
    }

    func remove(_ connection: SimulatedEndpoint) {
        pending.removeAll { $0 === connection }
        ready.removeAll { $0 === connection }
    }

    func close() {
        guard !closeRequested.exchange(true, ordering: .acquiringAndReleasing) else { return }
        onLoopThread(host.network.loop) { [self] in closeOnLoop() }
    }

    /// Stops listening; connections not accepted yet are reset (as Linux does).
    private func closeOnLoop() {
        acceptors.failAll(LoopError.descriptorClosed("readable(fd: \(fd))"))
        guard vanished == nil else { return }
        if host.listeners[address.port] === self { host.listeners[address.port] = nil }
        host.network.log(host, nil, nil, "close listener", address.description)
        let unaccepted = pending + ready
        pending = []
        ready = []
        for connection in unaccepted { connection.abort() }
    }

    func vanish(reason: String) {
        vanished = reason
        pending = []
        ready = []
        acceptors.failAll(LoopError(.descriptorClosed, operation: "accept(fd: \(fd))", reason: reason))
    }
}

/// Tasks waiting for a socket's state to change. Loop thread only; woken tasks re-check the state.
final class WaitQueue: @unchecked Sendable {
    // @unchecked: touched on the loop thread only (the cancellation handler hops there).
    private var waiting: [(id: Int, continuation: UnsafeContinuation<Void, any Error>)] = []
    private var nextID = 0

    /// Suspends until woken or failed; `CancellationError` when the task is cancelled.
    nonisolated(nonsending) func wait(on loop: Loop) async throws {
        let id = nextID
        nextID += 1
        try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Void, any Error>) in
                if Task.isCancelled {
                    continuation.resume(throwing: CancellationError())
                } else {
                    waiting.append((id, continuation))
                }
            }
        } onCancel: {
            onLoopThread(loop) { self.cancel(id) }
        }
    }

    private func cancel(_ id: Int) {
        guard let index = waiting.firstIndex(where: { $0.id == id }) else { return }
        waiting.remove(at: index).continuation.resume(throwing: CancellationError())
    }

    func wakeAll() {
        guard !waiting.isEmpty else { return }
        let woken = waiting
        waiting = []
        for waiter in woken { waiter.continuation.resume() }
    }

    func failAll(_ error: any Error) {
        guard !waiting.isEmpty else { return }
        let failed = waiting
        waiting = []
        for waiter in failed { waiter.continuation.resume(throwing: error) }
    }
}

/// Runs `body` on the loop's thread: now when called there, else queued (dropped once the loop
/// has shut down: the network is gone with it).
func onLoopThread(_ loop: Loop, _ body: @escaping @Sendable () -> Void) {
    if loop.isOnLoopThread {
        body()
    } else if !loop.hasShutDown {
        loop.execute(body)
    }
}
