@preconcurrency import Glibc
import SerialLoop
import CSerialLoopShims

/// What a listener and a connection share: their loop, their descriptor, the rules for using it
/// (loop thread only, nothing after `close()`), the one way non-blocking calls wait and fail, and
/// closing through the loop.
final class SocketDescriptor {
    let loop: Loop
    /// Stays readable after `close()`, for error messages.
    let fd: Int32
    private(set) var isClosed = false
    /// "TCPListener" or "TCPConnection": names the API in precondition messages.
    private let owner: StaticString

    init(loop: Loop, fd: Int32, owner: StaticString) {
        self.loop = loop
        self.fd = fd
        self.owner = owner
    }

    /// Closes through the loop, so tasks suspended on the descriptor wake with a ``LoopError`` and
    /// the reactor forgets it before its number can be reused. Idempotent.
    func close() throws(LoopError) {
        loop.preconditionOnLoopThread("\(owner).close()")
        guard !isClosed else { return }
        isClosed = true
        try loop.close(fd)
    }

    /// Every operation starts here: on the loop's thread (traps otherwise) and not closed (`EBADF`).
    func checkOpen(_ operation: String) throws(LoopError) {
        loop.preconditionOnLoopThread("\(owner).\(operation)")
        if isClosed { throw LoopError(operation: "\(operation)(fd: \(fd))", errno: EBADF) }
    }

    /// A non-blocking call under the syscall discipline, plus readiness: `EAGAIN` suspends until
    /// the descriptor is ready for `interest`, `EINTR` (and any errno in `retrying`) tries again,
    /// anything else is a ``LoopError`` naming the call, the descriptor and the errno.
    /// - Returns: the call's non-negative result.
    nonisolated(nonsending) func perform<T: FixedWidthInteger>(
        _ operation: String, waitingFor interest: Interest, retrying: [Int32] = [], _ call: () -> T
    ) async throws -> T {
        while true {
            try checkOpen(operation)
            let result = call()
            if result >= 0 { return result }
            let code = c_serial_loop_errno()
            if retrying.contains(code) { continue }
            try await wait(afterFailureWith: code, operation, for: interest)
        }
    }

    enum Interest { case read, write }

    /// After a failed call: waits for readiness on `EAGAIN`, returns at once on `EINTR` (the
    /// caller retries), throws for anything else.
    nonisolated(nonsending) func wait(afterFailureWith code: Int32, _ operation: String, for interest: Interest) async throws {
        switch code {
        case EAGAIN, EWOULDBLOCK:
            switch interest {
            case .read: try await loop.readable(fd)
            case .write: try await loop.writable(fd)
            }
        case EINTR:
            return
        default:
            throw LoopError(operation: "\(operation)(fd: \(fd))", errno: code)
        }
    }

    /// A socket dropped without `close()` is closed the same way: through its loop (a plain
    /// `close(2)` would let a reused number inherit stale registrations).
    deinit {
        guard !isClosed else { return }
        let loop = self.loop, fd = self.fd
        if loop.isOnLoopThread {
            try? loop.close(fd)
        } else {
            loop.execute { try? loop.close(fd) }
        }
    }
}
