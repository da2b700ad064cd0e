@preconcurrency import Glibc
import SerialLoop

/// A small HTTP/1.1 server on SerialLoop's socket layer: one task per connection on the loop,
/// keep-alive, pipelining, `Content-Length` bodies, `Expect: 100-continue`, and an idle timeout so a client that stops
/// sending cannot hold a connection forever (a slow client that keeps sending is served).
///
/// ```swift
/// try withLoop { loop in
///     let server = try HTTPServer(on: loop, address: .loopback(port: 8080)) { request in
///         HTTPResponse(status: 200, text: "Hello, world!\n")
///     }
///     try await server.run()
/// }
/// ```
public final class HTTPServer: @unchecked Sendable {
    public typealias Handler = @Sendable (HTTPRequest) async -> HTTPResponse

    public let loop: Loop
    public let listener: TCPListener
    /// A connection with no bytes arriving for this long while waiting for a request is closed.
    public var idleTimeout: Duration
    private let handler: Handler
    /// Loop thread only.
    public private(set) var requestsServed = 0
    public private(set) var connectionsAccepted = 0

    public init(on loop: Loop, address: SocketAddress, idleTimeout: Duration = .seconds(30), handler: @escaping Handler) throws {
        self.loop = loop
        self.listener = try TCPListener(on: loop, address: address)
        self.idleTimeout = idleTimeout
        self.handler = handler
    }

    /// Accepts and serves connections until the listener is closed or the task is cancelled.
    public func run() async throws {
        await withDiscardingTaskGroup { group in
            while true {
                let connection: TCPConnection
                do {
                    connection = try await listener.accept()
                } catch is CancellationError {
                    break
                } catch {
                    if listener.isClosed { break }
                    logError("accept: \(error)")     // e.g. EMFILE: keep serving the others
                    try? await loop.sleep(for: .milliseconds(10))
                    continue
                }
                connectionsAccepted += 1
                group.addTask { await self.serve(connection) }
            }
            group.cancelAll()
        }
    }

    private func serve(_ connection: TCPConnection) async {
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        defer {
            scratch.deallocate()
            try? connection.close()
        }
        var parser = HTTPRequestParser()
        do {
            while true {
                while let request = try parser.nextRequest() {
                    let response = await handler(request)
                    let keepAlive = request.wantsKeepAlive
                    try await connection.write(response.serialized(keepAlive: keepAlive, http10KeepAlive: request.minorVersion == 0))
                    requestsServed += 1
                    if !keepAlive { return }
                }
                if parser.takeContinueRequest() {
                    try await connection.write("HTTP/1.1 100 Continue\r\n\r\n")
                }
                let count = try await readWithIdleTimeout(connection, into: scratch)
                if count == 0 { return }            // the client closed its side
                parser.append(UnsafeRawBufferPointer(rebasing: scratch[..<count]))
            }
        } catch let error as HTTPParseError {
            let response = HTTPResponse(status: error.status, text: "\(error)\n")
            try? await connection.write(response.serialized(keepAlive: false, http10KeepAlive: false))
        } catch is CancellationError {
        } catch {
            if !connection.isClosed { logError("connection fd \(connection.fd): \(error)") }
        }
    }

    /// A read that gives up when nothing arrives for `idleTimeout`: a loop timer closes the
    /// connection, which wakes the read with an error.
    ///
    /// The `armed` flag is belt and braces: SerialLoop (at the time of writing) still runs a
    /// scheduled callback that is cancelled in the same tick that collected it as due, which would
    /// close a connection whose read had just succeeded — mid-response.
    private func readWithIdleTimeout(_ connection: TCPConnection, into scratch: UnsafeMutableRawBufferPointer) async throws -> Int {
        let armed = IdleTimer()
        let timer = loop.schedule(after: idleTimeout) { if armed.isArmed { try? connection.close() } }
        defer {
            armed.isArmed = false
            timer.cancel()
        }
        return try await connection.read(into: scratch)
    }
}

/// Whether an idle timeout still applies. Loop thread only.
private final class IdleTimer {
    var isArmed = true
}

func logError(_ message: String) {
    fputs("serial-loop-http-server: \(message)\n", stderr)
}
