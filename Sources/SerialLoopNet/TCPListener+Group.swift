import SerialLoop

// Connections across a group's loops: one acceptor handing connections out.
//
// The other way to spread connections is a listener per loop on the same port (`reusePort: true`),
// where the kernel picks the listener; see the article "Loop groups". Here one loop accepts and each
// connection is bound to the loop chosen for it. That works because a socket registers with its
// loop's reactor lazily, on its first wait: a just-accepted descriptor is known to no reactor, so it
// can be handed to another loop's `TCPConnection` before anything waits on it.

extension TCPListener {
    /// Waits for the next incoming connection and returns it bound to `loop`: its operations run
    /// on `loop`, like those of a connection accepted there.
    ///
    /// The accept itself runs on the listener's loop (as ``accept()`` does); the new connection's
    /// descriptor is handed to `loop` before anything waits on it. Serve it from a task on its loop
    /// (`Task(executorPreference: connection.loop)`), where its operations run in place. The same
    /// errors as ``accept()``.
    /// - Parameter loop: the loop the connection's operations run on (any loop, not only one of a group).
    nonisolated(nonsending) public func accept(onto loop: Loop) async throws -> TCPConnection {
        handOff(try await accept(), to: loop)
    }

    /// Waits for the next incoming connection and returns it bound to the group's next loop in
    /// round-robin order (``SerialLoop/LoopGroup/next()``): one acceptor spreading connections
    /// evenly over the loops, the alternative to a `reusePort` listener per loop.
    ///
    /// ```swift
    /// let listener = try TCPListener(on: group.loops[0], address: .loopback(port: 8080))
    /// while let connection = try? await listener.accept(distributingOver: group) {
    ///     Task(executorPreference: connection.loop) { try await serve(connection) }
    /// }
    /// ```
    ///
    /// The round robin is the group's own cursor, shared with every other caller of `next()`: the
    /// connections are spread exactly evenly when nothing else takes loops from it. The same errors
    /// as ``accept()``.
    /// - Parameter group: the group whose loops take the connections.
    nonisolated(nonsending) public func accept(distributingOver group: LoopGroup) async throws -> TCPConnection {
        // The loop is picked once the connection is there: a failed accept takes no turn.
        let connection = try await accept()
        return handOff(connection, to: group.next())
    }

    /// `connection`, just accepted on this listener's loop, bound to `loop` instead.
    private func handOff(_ connection: TCPConnection, to loop: Loop) -> TCPConnection {
        guard loop !== self.loop else { return connection }
        if connection.simulatedEndpoint != nil {
            misuse("TCPListener.accept(onto:) / accept(distributingOver:) on a simulated listener: a simulated network lives on one test loop, so its connections cannot move to another loop; use accept()")
        }
        let descriptor = connection.descriptor
        return TCPConnection(loop: loop, fd: descriptor.relinquish(), chaos: descriptor.chaos)
    }
}
