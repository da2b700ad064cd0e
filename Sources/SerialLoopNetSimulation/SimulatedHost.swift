@preconcurrency import Glibc
import SerialLoop
import SerialLoopNet

/// A machine on a ``SimulatedNetwork``: an address, ports, and the tasks that run "on" it.
///
/// Code runs on a host inside ``run(isolation:_:)`` or ``spawn(_:)``: there, `TCPListener(on:address:)`
/// binds on this host and `TCPConnection.connect(to:on:)` connects from it, over the simulated
/// network — the same SerialLoopNet code that runs on real sockets. (The host is bound as a
/// task-local: tasks created inside with `Task {}` stay on it, `Task.detached` does not.)
///
/// A listener may bind the host's address, `0.0.0.0` or `127.0.0.1` (all mean this host); its
/// ``SerialLoopNet/TCPListener/address`` is then the host's address and the port, reachable from
/// every host. Port 0 picks a free port from 49152 up.
///
/// ``spawn(_:)``, ``crash()`` and ``restart()`` are called on the network's loop thread (the test
/// body runs there); ``run(isolation:_:)`` anywhere, though its sockets are created on the loop.
public final class SimulatedHost: SimulatedStack, @unchecked Sendable {
    // @unchecked: state touched on the network's loop thread only (see SimulatedNetwork).

    /// The name used in traces and messages.
    public let name: String
    /// The host's IPv4 address.
    public let address: String
    let network: SimulatedNetwork
    /// Whether the host runs (false between ``crash()`` and ``restart()``).
    public private(set) var isUp = true
    var isIsolated = false
    /// Bumped by every crash: sockets of an earlier generation are gone.
    private(set) var generation = 0
    var listeners: [UInt16: SimulatedListener] = [:]
    /// Live connection endpoints, until closed, reset or crashed.
    var endpoints: [ObjectIdentifier: SimulatedEndpoint] = [:]
    private var tasks: [Int: Task<Void, any Error>] = [:]
    private var nextTaskID = 0
    private var nextEphemeralPort: UInt16 = 49152
    private var nextFD: Int32 = 3

    /// The host's number in its network (links are keyed by it).
    let index: Int

    init(network: SimulatedNetwork, name: String, address: String, index: Int) {
        self.network = network
        self.index = index
        self.name = name
        self.address = address
    }

    // MARK: Running code on the host

    /// Runs `body` on this host: sockets it creates are this host's.
    /// - Parameters:
    ///   - isolation: the caller's isolation (leave the default).
    ///   - body: the code to run; its `TCPListener`s and `TCPConnection`s are simulated.
    /// - Returns: what `body` returns.
    /// - Throws: what `body` throws.
    public func run<T>(isolation: isolated (any Actor)? = #isolation, _ body: () async throws -> T) async rethrows -> T {
        try await SimulatedStackContext.$current.withValue(self, operation: body, isolation: isolation)
    }

    /// Runs `body` on this host, synchronously (e.g. to create a listener).
    /// - Parameter body: the code to run; its `TCPListener`s are simulated.
    /// - Returns: what `body` returns.
    /// - Throws: what `body` throws.
    public func run<T>(_ body: () throws -> T) rethrows -> T {
        try SimulatedStackContext.$current.withValue(self, operation: body)
    }

    /// Starts `body` as a task on the network's loop, running on this host. A ``crash()`` cancels
    /// it (with every other task spawned here).
    /// - Parameter body: the host's work, e.g. a server's accept loop.
    /// - Returns: the task.
    @discardableResult
    public func spawn(_ body: sending @escaping () async throws -> Void) -> Task<Void, any Error> {
        network.loop.preconditionOnLoopThread("SimulatedHost.spawn")
        let id = nextTaskID
        nextTaskID += 1
        let task = Task(executorPreference: network.loop) { [self] in
            defer { onLoopThread(self.network.loop) { [self] in self.tasks[id] = nil } }
            try await SimulatedStackContext.$current.withValue(self) { try await body() }
        }
        tasks[id] = task
        return task
    }

    // MARK: Faults

    /// Crashes the host: its sockets vanish without a word to their peers (no FIN, no RST), the
    /// tasks started with ``spawn(_:)`` are cancelled, tasks still using its sockets get a
    /// ``SerialLoop/LoopError`` (kind `descriptorClosed`). Until ``restart()`` segments sent to
    /// it wait (SYNs are lost), so a peer that only reads sees silence; after the restart they
    /// arrive at a host that no longer knows the connection and each is answered with a RST.
    public func crash() {
        network.loop.preconditionOnLoopThread("SimulatedHost.crash")
        guard isUp else { return }
        network.log(self, nil, nil, "crash")
        isUp = false
        dropEverything(reason: "simulated host \(name) crashed")
        cancelTasks()
    }

    /// Cancels the tasks started with `spawn` (a crash, the network's shutdown), in spawn order
    /// so that their wake-ups run in the same order in every process.
    func cancelTasks() {
        let running = tasks.sorted { $0.key < $1.key }
        tasks = [:]
        for (_, task) in running { task.cancel() }
    }

    /// Restarts a crashed host: it has no sockets and no tasks (start its server again), and what
    /// was sent to it meanwhile arrives one latency later (answered by RSTs).
    public func restart() {
        network.loop.preconditionOnLoopThread("SimulatedHost.restart")
        guard !isUp else { return }
        isUp = true
        network.log(self, nil, nil, "restart")
        network.flushTowards(self)
    }

    /// Forgets every socket (crash, network shutdown), waking their waiters with an error.
    func dropEverything(reason: String) {
        generation += 1
        let dropped = endpoints.values.sorted { $0.fd < $1.fd }
        endpoints = [:]
        for endpoint in dropped { endpoint.vanish(reason: reason) }
        let closed = listeners.values.sorted { $0.fd < $1.fd }
        listeners = [:]
        for listener in closed { listener.vanish(reason: reason) }
    }

    // MARK: The stack (SerialLoopNet's seam)

    func makeFD() -> Int32 {
        defer { nextFD += 1 }
        return nextFD
    }

    /// Binds and listens (see the type's comment for the addresses accepted).
    package func listen(on loop: Loop, address: SocketAddress, backlog: Int32) throws(LoopError) -> any SimulatedListenerEndpoint {
        let operation = "bind(to: \(address)) on simulated host \(name)"
        try checkUsable(loop: loop, operation)
        guard [self.address, "0.0.0.0", "127.0.0.1"].contains(address.host) else {
            throw LoopError(operation: operation, errno: EADDRNOTAVAIL)
        }
        var port = address.port
        if port == 0 {
            port = try freePort(operation)
        } else if listeners[port] != nil {
            throw LoopError(operation: "bind(to: \(address), fd: \(nextFD)) on simulated host \(name)", errno: EADDRINUSE)
        }
        let listener = SimulatedListener(host: self, fd: makeFD(), address: SocketAddress(host: self.address, port: port), backlog: Int(max(backlog, 1)))
        listeners[port] = listener
        network.log(self, nil, nil, "listen", listener.address.description)
        return listener
    }

    /// Connects from this host: SYN, SYN-ACK, ACK over the network; the call returns when the
    /// SYN-ACK arrives (one round trip).
    package nonisolated(nonsending) func connect(to address: SocketAddress, on loop: Loop) async throws -> any SimulatedConnectionEndpoint {
        let fd = nextFD
        let operation = "connect(to: \(address), fd: \(fd))"
        try checkUsable(loop: loop, operation)
        var raw = in_addr()
        guard inet_pton(AF_INET, address.host, &raw) == 1 else { throw LoopError(operation: operation, errno: EINVAL) }
        let target: SimulatedHost
        if address.host == "127.0.0.1" {
            target = self
        } else if let found = network.host(at: address.host) {
            target = found
        } else {
            throw LoopError(.invalidArgument, operation: operation + " on simulated host \(name)",
                            reason: "no host of the simulated network has the address \(address.host) (add one with network.host(_:address:))")
        }
        let endpoint = SimulatedEndpoint(
            network: network, host: self, fd: makeFD(), connectionID: network.nextConnectionID,
            localAddress: SocketAddress(host: self.address, port: try freePort(operation)),
            peerAddress: SocketAddress(host: target.address, port: address.port), peerHost: target, state: .synSent)
        network.nextConnectionID += 1
        endpoints[ObjectIdentifier(endpoint)] = endpoint
        try await endpoint.connect(port: address.port, operation: operation)
        return endpoint
    }

    /// A simulated socket is used on its network's loop thread, while the host runs.
    private func checkUsable(loop: Loop, _ operation: String) throws(LoopError) {
        guard loop === network.loop else {
            throw LoopError(.invalidArgument, operation: operation,
                            reason: "simulated host \(name) belongs to another loop's network: use the simulated network's test loop")
        }
        guard loop.isOnLoopThread else {
            throw LoopError(.invalidArgument, operation: operation,
                            reason: "simulated sockets are created on the network's loop thread (a task on the loop or the test body)")
        }
        guard !network.isShutDown else {
            throw LoopError(.invalidArgument, operation: operation, reason: "the simulated network was shut down")
        }
        guard isUp else { throw LoopError(operation: operation + " on crashed simulated host \(name)", errno: ENETDOWN) }
    }

    /// The next port from 49152 up that no listener or connection of the host uses.
    private func freePort(_ operation: String) throws(LoopError) -> UInt16 {
        let used = Set(endpoints.values.map(\.localAddress.port))
        for _ in 0..<16384 {
            let port = nextEphemeralPort
            nextEphemeralPort = nextEphemeralPort == 65535 ? 49152 : nextEphemeralPort + 1
            if listeners[port] == nil && !used.contains(port) { return port }
        }
        throw LoopError(operation: operation, errno: EADDRNOTAVAIL)
    }

    /// A SYN arrived for `port`: a listener with room answers SYN-ACK (and queues the connection,
    /// accepted once the ACK arrives); no listener answers RST; a full backlog drops the SYN (the
    /// client retransmits).
    func receiveSYN(from client: SimulatedEndpoint, port: UInt16) {
        let syn = Segment(kind: .syn(port: port), from: client, to: nil, fromHost: client.host, toHost: self, connectionID: client.connectionID)
        guard let listener = listeners[port] else {
            network.replyReset(to: syn)
            return
        }
        // A retransmitted SYN for a connection already answered: the answer is on its way.
        if listener.answered.contains(client.connectionID) { return }
        guard listener.pending.count + listener.ready.count < listener.backlog else {
            network.log(client.host, self, client.connectionID, "drop", "syn (backlog full)")
            return
        }
        let server = SimulatedEndpoint(
            network: network, host: self, fd: makeFD(), connectionID: client.connectionID,
            localAddress: listener.address, peerAddress: client.localAddress, peerHost: client.host, state: .synReceived)
        server.peer = client
        server.listener = listener
        listener.pending.append(server)
        listener.answered.insert(client.connectionID)
        endpoints[ObjectIdentifier(server)] = server
        network.send(Segment(kind: .synAck, from: server, to: client, fromHost: self, toHost: client.host, connectionID: client.connectionID))
    }
}
