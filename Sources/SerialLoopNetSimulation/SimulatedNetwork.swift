@preconcurrency import Glibc
import SerialLoop
import SerialLoopNet

// A deterministic network on a test loop's virtual clock (issue 25).
//
// Model. Hosts have an IPv4 address each; every pair of hosts (a host with itself included) is
// joined by a link with conditions (latency, seeded jitter, bandwidth) and a state (partitioned,
// held). A TCP connection is two `SimulatedEndpoint`s; everything that crosses the network is a
// `Segment` (SYN, SYN-ACK, ACK, data, FIN, RST) sent over the link and delivered by a timer on the
// loop at its arrival time. So the whole network is timers and continuations on one thread: no
// descriptor, no thread, no real time — the same seed gives the same run, event for event.
//
// Invariants
// - Everything runs on the loop's thread: the sockets' operations arrive there (TCPConnection
//   hops first), the fault verbs check it, timers and wake-ups run there.
// - Per direction (host A → host B) segments are delivered in the order they were sent: an arrival
//   time is never earlier than the previous one's (jitter cannot reorder), and once a segment is
//   parked (a held or partitioned link, a crashed receiver) every later one queues behind it until
//   the direction is flushed.
// - The bytes between a writer and its reader — in flight plus unread — never exceed
//   `receiveBufferSize`: a write waits for the reader to drain (backpressure).

/// A simulated network on a test loop: hosts, links between them with latency, jitter and
/// bandwidth, and fault verbs (partition, hold, reset, crash) — all on virtual time, all
/// deterministic for a given ``seed``.
///
/// The unchanged SerialLoopNet API runs over it: a `TCPListener` or `TCPConnection` created in
/// a task running on a ``SimulatedHost`` (``SimulatedHost/run(isolation:_:)``,
/// ``SimulatedHost/spawn(_:)``) is that host's, and crosses the simulated network.
///
/// ```swift
/// try await withTestLoop { loop in
///     let network = SimulatedNetwork(loop: loop, seed: 1)
///     let server = try network.host("server", address: "10.0.0.1")
///     let client = try network.host("client", address: "10.0.0.2")
///     let listener = try server.run { try TCPListener(on: loop, address: SocketAddress(host: "10.0.0.1", port: 80)) }
///     let connection = try await client.run { try await TCPConnection.connect(to: listener.address, on: loop) }
///     // …
///     network.shutdown()
/// }
/// ```
///
/// Every member is used on the loop's thread (the test body of `withTestLoop` or of a `.testLoop`
/// test runs there); a call from elsewhere traps.
public final class SimulatedNetwork: @unchecked Sendable {
    // @unchecked: all mutable state is touched on the loop's thread only (checked at every public
    // entry point; the rest runs from the loop's timers and socket operations).

    /// The test loop whose virtual clock drives the network.
    public let loop: TestLoop
    /// The seed of every random choice (jitter). The same seed gives the same ``trace``.
    public let seed: UInt64
    /// The conditions a link gets when it is first used, unless ``setLink(_:_:_:)`` set them
    /// before (changing this later leaves links already used as they are).
    public var defaultLink: LinkConditions {
        didSet { defaultLink.check("SimulatedNetwork.defaultLink") }
    }
    /// How long a connect waits for an answer (SYNs are retransmitted after 1 s, 3 s, 7 s, … as
    /// Linux does) before failing with `ETIMEDOUT`. Default 127 s, Linux's default
    /// (`tcp_syn_retries` = 6).
    public var connectTimeout: Duration = .seconds(127)
    /// The bytes that may be between a writer and its reader — in flight plus unread — per
    /// direction of a connection (the kernel's send and receive buffers together). A write waits
    /// while it is full. Default 64 KiB.
    public var receiveBufferSize: Int = 65536
    /// The largest data segment: a write is cut into segments of at most this many bytes, each
    /// delivered whole. Default 64 KiB.
    public var segmentSize: Int = 65536
    /// Everything that happened on the network, in order. The same seed and scenario give the
    /// same events.
    public private(set) var events: [TraceEvent] = []
    /// Whether ``events`` are recorded (default `true`). Turn it off for a long run whose trace
    /// nobody reads: it grows by a few events per segment.
    public var recordsEvents = true

    /// ``events`` as text, one line per event: `<virtual seconds> <from>><to> c<connection> <event>
    /// [bytes]`, e.g. `0.050000000 client>server c1 send data 5`.
    public var trace: [String] { events.map(\.description) }

    /// One event on the network: a segment sent, received, parked or lost, a fault, a listener.
    public struct TraceEvent: Sendable, Equatable, CustomStringConvertible {
        /// When it happened (virtual time).
        public let time: LoopClock.Instant
        /// The host it happened on, or the sending host.
        public let from: String
        /// The receiving host, if any.
        public let to: String?
        /// The connection's number (1, 2, … in the order connects began), if any.
        public let connection: Int?
        /// What happened, e.g. `send`, `recv`, `park`, `partition`, `crash`.
        public let action: String
        /// Of what, e.g. `data`, `syn`, `fin`; empty when the action says it all.
        public let detail: String
        /// The payload's size, 0 when none.
        public let bytes: Int

        /// `0.050000000 client>server c1 send data 5`.
        public var description: String {
            let nanoseconds = time.nanosecondsSinceOrigin
            let fraction = String(nanoseconds % 1_000_000_000)
            var line = "\(nanoseconds / 1_000_000_000).\(String(repeating: "0", count: 9 - fraction.count))\(fraction) \(from)>\(to ?? "-")"
            if let connection { line += " c\(connection)" }
            line += " " + action
            if !detail.isEmpty { line += " " + detail }
            if bytes > 0 { line += " \(bytes)" }
            return line
        }
    }

    var random: SplitMix64
    var hosts: [SimulatedHost] = []
    private var hostsByAddress: [String: SimulatedHost] = [:]
    private var links: [LinkKey: Link] = [:]
    private var directions: [DirectionKey: Direction] = [:]
    var nextConnectionID = 1
    /// The network's pending timers (deliveries, SYN retransmissions, connect timeouts, scheduled
    /// faults), cancelled by ``shutdown()``.
    private var timers: [Int: ScheduledCallback] = [:]
    private var nextTimerID = 0
    /// Set by ``shutdown()``: nothing is sent or scheduled any more.
    private(set) var isShutDown = false

    /// The conditions of a link: how long a segment takes to cross it.
    public struct LinkConditions: Sendable, Equatable {
        /// The fixed one-way delay of every segment.
        public var latency: Duration
        /// A random extra delay in `0...jitter` per segment, drawn from the network's seed; it
        /// never reorders the segments of one direction (a segment waits for the one before it).
        public var jitter: Duration
        /// The link's bandwidth in bytes per second, `nil` for unlimited: a segment of `n` bytes
        /// occupies the direction for `n / bytesPerSecond` seconds before its latency starts, and
        /// segments queue behind each other.
        public var bytesPerSecond: Int?

        /// Conditions for a link.
        /// - Parameters:
        ///   - latency: the fixed one-way delay (default 1 ms).
        ///   - jitter: the largest random extra delay (default none).
        ///   - bytesPerSecond: the bandwidth (default unlimited).
        public init(latency: Duration = .milliseconds(1), jitter: Duration = .zero, bytesPerSecond: Int? = nil) {
            self.latency = latency
            self.jitter = jitter
            self.bytesPerSecond = bytesPerSecond
        }

        /// Traps, naming `operation`, on conditions no link can have: a negative latency or
        /// jitter would deliver before sending, a bandwidth of zero or less never delivers.
        func check(_ operation: String) {
            misuseCheck(latency >= .zero && jitter >= .zero, "\(operation): latency \(latency) and jitter \(jitter) must not be negative")
            misuseCheck((bytesPerSecond ?? 1) > 0, "\(operation): bytesPerSecond \(bytesPerSecond ?? 0) must be positive (nil: unlimited)")
        }
    }

    /// Creates an empty network on `loop`.
    /// - Parameters:
    ///   - loop: the test loop whose virtual clock times every delivery.
    ///   - seed: the seed of every random choice; `nil` takes `SERIAL_LOOP_SEED` from the
    ///     environment if set, else 0. Read it back from ``seed``.
    ///   - defaultLink: the conditions of every link not configured otherwise.
    public init(loop: TestLoop, seed: UInt64? = nil, defaultLink: LinkConditions = LinkConditions()) {
        self.loop = loop
        self.seed = seed ?? SimulatedNetwork.environmentSeed ?? 0
        defaultLink.check("SimulatedNetwork(defaultLink:)")
        self.defaultLink = defaultLink
        random = SplitMix64(seed: self.seed)
    }

    /// `SERIAL_LOOP_SEED` from the environment, if it is a number.
    public static var environmentSeed: UInt64? {
        getenv("SERIAL_LOOP_SEED").flatMap { UInt64(String(cString: $0)) }
    }

    // MARK: Hosts

    /// Adds a host.
    /// - Parameters:
    ///   - name: a name for traces and messages.
    ///   - address: its IPv4 literal, e.g. `"10.0.0.1"`; sockets on the host bind and connect
    ///     from it, and other hosts reach it there.
    /// - Throws: ``SerialLoop/LoopError`` of kind `invalidArgument` when `address` is not an IPv4
    ///   literal, is `127.0.0.1` or `0.0.0.0` (which mean "this host" on every host), or another
    ///   host has it.
    public func host(_ name: String, address: String) throws(LoopError) -> SimulatedHost {
        loop.preconditionOnLoopThread("SimulatedNetwork.host(_:address:)")
        var parsed = in_addr()
        guard inet_pton(AF_INET, address, &parsed) == 1 else {
            throw LoopError(.invalidArgument, operation: "SimulatedNetwork.host(\"\(name)\", address: \"\(address)\")", reason: "not an IPv4 literal")
        }
        if address == "127.0.0.1" || address == "0.0.0.0" {
            throw LoopError(.invalidArgument, operation: "SimulatedNetwork.host(\"\(name)\", address: \"\(address)\")", reason: "on a simulated host that address means the host itself: give each host its own address")
        }
        if let other = hostsByAddress[address] {
            throw LoopError(.invalidArgument, operation: "SimulatedNetwork.host(\"\(name)\", address: \"\(address)\")", reason: "host \(other.name) already has that address")
        }
        let host = SimulatedHost(network: self, name: name, address: address, index: hosts.count)
        hosts.append(host)
        hostsByAddress[address] = host
        return host
    }

    /// The host with this address, if any.
    func host(at address: String) -> SimulatedHost? { hostsByAddress[address] }

    // MARK: Links and faults

    /// Sets the conditions of the link between `a` and `b` (both directions). Segments already
    /// sent keep their arrival times.
    public func setLink(_ a: SimulatedHost, _ b: SimulatedHost, _ conditions: LinkConditions) {
        loop.preconditionOnLoopThread("SimulatedNetwork.setLink")
        conditions.check("SimulatedNetwork.setLink(\(a.name), \(b.name))")
        link(a, b).conditions = conditions
        log(a, b, nil, "link latency \(conditions.latency) jitter \(conditions.jitter) bandwidth \(conditions.bytesPerSecond.map(String.init) ?? "unlimited")")
    }

    /// Cuts the link between `a` and `b`: SYNs crossing it are lost (a connect retries, then times
    /// out), and established connections' segments wait — TCP retransmits them — until ``heal(_:_:)``,
    /// then arrive one latency after the heal, in order.
    public func partition(_ a: SimulatedHost, _ b: SimulatedHost) {
        loop.preconditionOnLoopThread("SimulatedNetwork.partition")
        link(a, b).isPartitioned = true
        log(a, b, nil, "partition")
    }

    /// Restores a link cut by ``partition(_:_:)``: what waited is retransmitted and arrives one
    /// latency later, in order.
    public func heal(_ a: SimulatedHost, _ b: SimulatedHost) {
        loop.preconditionOnLoopThread("SimulatedNetwork.heal")
        let link = link(a, b)
        guard link.isPartitioned else { return }
        link.isPartitioned = false
        log(a, b, nil, "heal")
        flush(a, b, after: link.conditions.latency.wholeNanoseconds)
    }

    /// Cuts `host` off from every other host, as a ``partition(_:_:)`` with each (its own
    /// loopback traffic still flows). Undo with ``rejoin(_:)``.
    public func isolate(_ host: SimulatedHost) {
        loop.preconditionOnLoopThread("SimulatedNetwork.isolate")
        host.isIsolated = true
        log(host, host, nil, "isolate")
    }

    /// Ends an ``isolate(_:)``: waiting segments to and from `host` arrive one latency later.
    public func rejoin(_ host: SimulatedHost) {
        loop.preconditionOnLoopThread("SimulatedNetwork.rejoin")
        guard host.isIsolated else { return }
        host.isIsolated = false
        log(host, host, nil, "rejoin")
        for other in hosts where other !== host {
            flush(host, other, after: link(host, other).conditions.latency.wholeNanoseconds)
        }
    }

    /// Holds the traffic between `a` and `b` (both directions): every segment that reaches the
    /// end of the link waits there, SYNs included, until ``release(_:_:)``.
    public func hold(_ a: SimulatedHost, _ b: SimulatedHost) {
        loop.preconditionOnLoopThread("SimulatedNetwork.hold")
        link(a, b).isHeld = true
        log(a, b, nil, "hold")
    }

    /// Ends a ``hold(_:_:)``: everything held is delivered now, in order.
    public func release(_ a: SimulatedHost, _ b: SimulatedHost) {
        loop.preconditionOnLoopThread("SimulatedNetwork.release")
        let link = link(a, b)
        guard link.isHeld else { return }
        link.isHeld = false
        log(a, b, nil, "release")
        flush(a, b, after: 0)
    }

    /// Resets `connection` from the outside (as a middlebox's RST would): both ends see
    /// `ECONNRESET` on their next read or write (and a task waiting in one wakes with it), then
    /// end-of-file on reads and `EPIPE` on writes. Traps when `connection` is not simulated.
    public func reset(_ connection: TCPConnection) {
        loop.preconditionOnLoopThread("SimulatedNetwork.reset")
        guard let endpoint = connection.simulatedEndpoint as? SimulatedEndpoint, endpoint.network === self else {
            misuse("SimulatedNetwork.reset: TCPConnection(fd: \(connection.fd)) is not a socket of this simulated network")
        }
        log(endpoint.host, endpoint.peerHost, endpoint.connectionID, "reset (from outside)")
        endpoint.receiveReset()
        endpoint.peer?.receiveReset()
    }

    /// Resets every connection between `a` and `b` now, as a middlebox (a NAT or a load balancer
    /// dropping its state) would: both ends of each see `ECONNRESET` on their next read or write
    /// (a task waiting in one wakes with it), then end-of-file and `EPIPE`, as with
    /// ``reset(_:)``. For a test that cannot reach the `TCPConnection` — a connection inside an
    /// HTTP client or server. Connections are reset in the order they were opened.
    /// - Returns: how many connections were reset.
    @discardableResult
    public func resetConnections(between a: SimulatedHost, _ b: SimulatedHost) -> Int {
        loop.preconditionOnLoopThread("SimulatedNetwork.resetConnections(between:_:)")
        let affected = a.endpoints.values
            .filter { $0.peerHost === b }
            .sorted { ($0.connectionID, $0.fd) < ($1.connectionID, $1.fd) }
        for endpoint in affected {
            log(endpoint.host, endpoint.peerHost, endpoint.connectionID, "reset (from outside)")
            endpoint.receiveReset()
            endpoint.peer?.receiveReset()
        }
        return affected.count
    }

    /// Runs `fault` on the loop at `delay` from now (virtual time): a fault scheduled from the
    /// test, e.g. `network.schedule(after: .seconds(1)) { $0.partition(a, b) }`. Cancelled by
    /// ``shutdown()`` if it has not run.
    public func schedule(after delay: Duration, _ fault: @escaping (SimulatedNetwork) -> Void) {
        loop.preconditionOnLoopThread("SimulatedNetwork.schedule(after:)")
        timer(at: nowNanoseconds + delay.wholeNanoseconds) { fault(self) }
    }

    /// Ends the network: cancels every pending delivery, retransmission, timeout and scheduled
    /// fault (so the test loop ends with nothing pending), wakes every task waiting on a
    /// simulated socket with a ``SerialLoop/LoopError``, and cancels the tasks the hosts spawned.
    /// Idempotent. Call it at the end of a test
    /// (``withSimulatedNetwork(seed:defaultLink:_:)`` does).
    public func shutdown() {
        loop.preconditionOnLoopThread("SimulatedNetwork.shutdown")
        guard !isShutDown else { return }
        isShutDown = true
        for timer in timers.values { timer.cancel() }
        timers = [:]
        for host in hosts {
            host.dropEverything(reason: "the simulated network was shut down")
            host.cancelTasks()
        }
        // Hosts and sockets point back at the network: let go of them (the cycles end here).
        directions = [:]
        links = [:]
        hosts = []
        hostsByAddress = [:]
    }

    // MARK: Links (internal)

    struct LinkKey: Hashable {
        let low: Int, high: Int
        init(_ a: SimulatedHost, _ b: SimulatedHost) {
            (low, high) = a.index <= b.index ? (a.index, b.index) : (b.index, a.index)
        }
    }

    /// The shared state of the link between two hosts (both directions).
    final class Link {
        var conditions: LinkConditions
        var isPartitioned = false
        var isHeld = false
        init(conditions: LinkConditions) { self.conditions = conditions }
    }

    struct DirectionKey: Hashable {
        let from: Int, to: Int
    }

    /// One direction of a link: its serialisation queue (bandwidth), the last arrival time (so
    /// jitter never reorders) and the segments parked at its end.
    final class Direction {
        var busyUntil: Int64 = 0
        var lastArrival: Int64 = 0
        var parked: [Segment] = []
        var flushPending = false
    }

    func link(_ a: SimulatedHost, _ b: SimulatedHost) -> Link {
        let key = LinkKey(a, b)
        if let link = links[key] { return link }
        let link = Link(conditions: defaultLink)
        links[key] = link
        return link
    }

    private func direction(_ from: SimulatedHost, _ to: SimulatedHost) -> Direction {
        let key = DirectionKey(from: from.index, to: to.index)
        if let direction = directions[key] { return direction }
        let direction = Direction()
        directions[key] = direction
        return direction
    }

    /// Whether segments from `from` to `to` must wait at the end of the link.
    private func isBlocked(_ from: SimulatedHost, _ to: SimulatedHost) -> (blocked: Bool, losesSYN: Bool) {
        let link = link(from, to)
        let cut = link.isPartitioned || (from !== to && (from.isIsolated || to.isIsolated))
        return (cut || link.isHeld || !to.isUp, cut || !to.isUp)
    }

    // MARK: Sending and delivering

    var nowNanoseconds: Int64 { loop.now.nanosecondsSinceOrigin }

    /// Puts `segment` on the link from its sender's host to its receiver's: it arrives after the
    /// serialisation delay (bandwidth), the latency and the jitter, never before the previous
    /// segment of the direction.
    func send(_ segment: Segment) {
        guard !isShutDown else { return }
        let from = segment.fromHost, to = segment.toHost
        let conditions = link(from, to).conditions
        let direction = direction(from, to)
        let now = nowNanoseconds
        var departure = now
        if let bandwidth = conditions.bytesPerSecond, segment.payloadCount > 0 {
            let start = max(now, direction.busyUntil)
            departure = start + Int64(segment.payloadCount) * 1_000_000_000 / Int64(max(bandwidth, 1))
            direction.busyUntil = departure
        }
        var arrival = departure + conditions.latency.wholeNanoseconds
        let jitter = conditions.jitter.wholeNanoseconds
        if jitter > 0 { arrival += Int64(random.next() % UInt64(jitter + 1)) }
        arrival = max(arrival, direction.lastArrival)
        direction.lastArrival = arrival
        log(from, to, segment.connectionID, "send", segment.kindName, segment.payloadCount)
        timer(at: arrival) { self.arrive(segment, direction) }
    }

    /// A segment reached the end of its link: delivered, or parked behind the direction's parked
    /// segments, or (a SYN into a cut link or a down host) lost.
    private func arrive(_ segment: Segment, _ direction: Direction) {
        let (blocked, losesSYN) = isBlocked(segment.fromHost, segment.toHost)
        if case .syn = segment.kind, losesSYN {
            log(segment.fromHost, segment.toHost, segment.connectionID, "lost", "syn")
            return
        }
        if blocked || !direction.parked.isEmpty {
            direction.parked.append(segment)
            log(segment.fromHost, segment.toHost, segment.connectionID, "park", segment.kindName, segment.payloadCount)
            return
        }
        deliver(segment)
    }

    /// Delivers the segments parked between `a` and `b` (both directions) `delay` from now,
    /// unless the link is blocked again by then.
    private func flush(_ a: SimulatedHost, _ b: SimulatedHost, after delay: Int64) {
        for (from, to) in a === b ? [(a, b)] : [(a, b), (b, a)] {
            let direction = direction(from, to)
            guard !direction.parked.isEmpty, !direction.flushPending else { continue }
            direction.flushPending = true
            timer(at: nowNanoseconds + delay) {
                direction.flushPending = false
                guard !self.isBlocked(from, to).blocked else { return }
                let parked = direction.parked
                direction.parked = []
                for segment in parked {
                    if case .syn = segment.kind, self.isBlocked(from, to).losesSYN { continue }
                    self.deliver(segment)
                }
            }
        }
    }

    /// Segments parked towards `host` (it was down) are delivered one latency from now.
    func flushTowards(_ host: SimulatedHost) {
        for other in hosts {
            flush(other, host, after: link(other, host).conditions.latency.wholeNanoseconds)
        }
    }

    /// What a segment does at its receiver.
    private func deliver(_ segment: Segment) {
        let to = segment.toHost
        log(segment.fromHost, to, segment.connectionID, "recv", segment.kindName, segment.payloadCount)
        switch segment.kind {
        case .syn(let port):
            to.receiveSYN(from: segment.from, port: port)
        case .synAck, .ack, .data, .fin:
            guard let target = segment.to, target.isAlive else {
                // A segment for a socket that no longer exists: the receiving stack answers RST.
                if case .data(let bytes) = segment.kind { segment.from.inFlight -= bytes.count }
                replyReset(to: segment)
                return
            }
            target.receive(segment)
        case .rst:
            guard let target = segment.to, target.isAlive else { return }
            target.receiveReset()
        }
    }

    /// Sends a RST back to the sender of `segment` (whose receiver has no socket for it).
    func replyReset(to segment: Segment) {
        // For a SYN there is no receiving socket: the RST then names the sender on both ends (only
        // `to` matters to a RST).
        let sender = segment.to ?? segment.from
        send(Segment(kind: .rst, from: sender, to: segment.from, fromHost: segment.toHost, toHost: segment.fromHost, connectionID: segment.connectionID, reply: true))
    }

    // MARK: Timers and the trace

    /// A timer of the network's own (cancelled by `shutdown`).
    @discardableResult
    func timer(at nanoseconds: Int64, _ body: @escaping () -> Void) -> Int {
        let id = nextTimerID
        nextTimerID += 1
        guard !isShutDown else { return id }
        timers[id] = loop.schedule(at: LoopClock.Instant(nanosecondsSinceOrigin: nanoseconds)) { [self] in
            self.timers[id] = nil
            body()
        }
        return id
    }

    func cancelTimer(_ id: Int?) {
        guard let id, let timer = timers.removeValue(forKey: id) else { return }
        timer.cancel()
    }

    /// Records one event (formatted only when ``trace`` is read: a segment's events are string
    /// literals, so recording one allocates nothing but the array's growth).
    func log(_ from: SimulatedHost, _ to: SimulatedHost?, _ connection: Int?, _ action: String, _ detail: String = "", _ bytes: Int = 0) {
        guard recordsEvents else { return }
        events.append(TraceEvent(time: loop.now, from: from.name, to: to?.name, connection: connection, action: action, detail: detail, bytes: bytes))
    }
}

/// What crosses a link.
struct Segment {
    enum Kind {
        /// A connection request to a port of the receiving host.
        case syn(port: UInt16)
        case synAck, ack
        case data([UInt8])
        case fin, rst
    }
    let kind: Kind
    /// The sending socket (for a SYN, the connecting one).
    let from: SimulatedEndpoint
    /// The receiving socket; `nil` for a SYN (the listener is looked up on arrival).
    let to: SimulatedEndpoint?
    let fromHost: SimulatedHost
    let toHost: SimulatedHost
    let connectionID: Int
    /// A RST the stack sent in answer to a segment for no socket (for the trace only).
    var reply = false

    var payloadCount: Int {
        if case .data(let bytes) = kind { return bytes.count }
        return 0
    }

    var kindName: String {
        switch kind {
        case .syn: "syn"
        case .synAck: "syn-ack"
        case .ack: "ack"
        case .data: "data"
        case .fin: "fin"
        case .rst: reply ? "rst (no socket)" : "rst"
        }
    }
}

extension Duration {
    /// Whole nanoseconds, saturating.
    var wholeNanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (product, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        return product.addingReportingOverflow(attoseconds / 1_000_000_000).partialValue
    }
}
