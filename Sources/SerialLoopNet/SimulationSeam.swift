import SerialLoop

// The seam a simulated network plugs into (the SerialLoopNetSimulation product; issue 25).
//
// `TCPListener(on:address:)` and `TCPConnection.connect(to:on:)` read one task-local: when the
// calling task runs "on a simulated host" (`SimulatedHost.run { … }` binds it), the socket is an
// endpoint of that host's simulated stack instead of a kernel descriptor, and every later operation
// on the `TCPListener` / `TCPConnection` goes to that endpoint (one enum branch per operation on the
// real path). Nothing here simulates anything: this module only knows the shape of a stack, so a
// program that does not link SerialLoopNetSimulation carries no simulation code.
//
// Calling conventions, as for the kernel path: the async operations are called on the socket's
// loop thread (the `TCPListener` / `TCPConnection` method hops there first); `close()`,
// `shutdownWrite()` and the addresses may be called from any thread.

/// A network stack the socket types can run over instead of the kernel's.
package protocol SimulatedStack: AnyObject, Sendable {
    /// Binds and listens, as `socket` + `bind` + `listen` would. Any thread.
    func listen(on loop: Loop, address: SocketAddress, backlog: Int32) throws(LoopError) -> any SimulatedListenerEndpoint
    /// Connects, as `socket` + `connect` would. Loop thread.
    nonisolated(nonsending) func connect(to address: SocketAddress, on loop: Loop) async throws -> any SimulatedConnectionEndpoint
}

/// The stack new sockets are created on: `nil` (the kernel) unless a simulated host bound one.
package enum SimulatedStackContext {
    @TaskLocal package static var current: (any SimulatedStack)?
}

/// A listening socket of a simulated stack.
package protocol SimulatedListenerEndpoint: AnyObject, Sendable {
    /// A number that stands for the descriptor in messages.
    var fd: Int32 { get }
    /// The address bound (the port chosen when port 0 was asked).
    var address: SocketAddress { get }
    /// Whether `close()` was called. Any thread.
    var isClosed: Bool { get }
    /// The next established connection. Loop thread.
    nonisolated(nonsending) func accept() async throws -> any SimulatedConnectionEndpoint
    /// Stops listening; waiting accepts fail. Any thread.
    func close()
}

/// A connected socket of a simulated stack.
package protocol SimulatedConnectionEndpoint: AnyObject, Sendable {
    /// A number that stands for the descriptor in messages.
    var fd: Int32 { get }
    /// Whether `close()` was called. Any thread.
    var isClosed: Bool { get }
    /// As `TCPConnection.read(into:)`. Loop thread.
    nonisolated(nonsending) func read(into buffer: UnsafeMutableRawBufferPointer) async throws -> Int
    /// As `TCPConnection.read(upToCount:)` (`maxCount > 0`, checked by the caller). Loop thread.
    nonisolated(nonsending) func read(upToCount maxCount: Int) async throws -> [UInt8]
    /// As `TCPConnection.write(_:)`. Loop thread.
    nonisolated(nonsending) func write(_ bytes: [UInt8]) async throws
    /// As `TCPConnection.shutdownWrite()`. Any thread.
    func shutdownWrite() throws(LoopError)
    /// This end's address. Any thread.
    var localAddress: SocketAddress { get }
    /// The peer's address. Any thread.
    var peerAddress: SocketAddress { get }
    /// As `TCPConnection.close()`. Any thread.
    func close()
}
