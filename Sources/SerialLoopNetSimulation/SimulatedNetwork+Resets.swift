import SerialLoop

extension SimulatedNetwork {
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
}
