@preconcurrency import Glibc

/// An error thrown by a loop operation. It always names the operation, says what kind of failure
/// it is, and carries the `errno` when the failure came from the kernel.
///
/// ```
/// readable(fd: 42): EBADF (Bad file descriptor)
/// ```
///
/// Tell failures apart by ``kind``, not by the message:
///
/// ```swift
/// do {
///     try await loop.readable(fd)
/// } catch let error as LoopError {
///     switch error.kind {
///     case .shutDown: return                        // the program is ending
///     case .descriptorClosed, .system(errno: EBADF): reconnect()
///     default: throw error
///     }
/// }
/// ```
public struct LoopError: Error, Equatable, CustomStringConvertible, Sendable {
    /// What kind of failure a ``LoopError`` is: the part a program switches over. The loop throws
    /// every kind below and no other; ``LoopError/reason`` says the same in words.
    public enum Kind: Equatable, Hashable, Sendable {
        /// The loop has shut down (its `withLoop` returned, or ``LoopThread/shutdown()`` ran):
        /// every `async` loop API called afterwards fails with it at once, ``Loop/offload(isolation:_:)``
        /// and ``Loop/signals(_:)`` included, and a task waiting on the loop from another executor
        /// when shutdown began is resumed with it.
        case shutDown
        /// The descriptor was closed while the operation waited on it: through the loop
        /// (``Loop/close(_:)``; ``LoopError/errno`` is `nil`), or with `close(2)` behind its back
        /// and the loop found out (``LoopError/errno`` is `EBADF`).
        case descriptorClosed
        /// The kernel refused the call ``LoopError/operation`` names, with this `errno`. The loop
        /// answers as the kernel would for what it checks itself: an invalid descriptor or a socket
        /// used after its `close()` is `EBADF`, a regular file given to ``Loop/addReader(_:_:file:line:)`` `EPERM`.
        case system(errno: Int32)
        /// `run(until:)` on a test loop ended because nothing could make progress (virtual time
        /// could not move and no work was ready); ``LoopError/reason`` says what was pending.
        case stalled
        /// `run(until:)` ended because ``Loop/stop()`` was called before what it waited for completed.
        case stopped
        /// An argument the loop refuses before doing anything, e.g. no signal or a signal number
        /// that cannot be caught (``Loop/signals(_:)``).
        case invalidArgument
        /// A virtual-time loop was asked for in a program that does not link virtual time (the
        /// `SerialLoopTesting` or `SerialLoopVirtualTime` product); the reason says which to add.
        case virtualTimeNotLinked
        /// The last handle to an uncompleted ``LoopFuture`` that had awaiters or callbacks went
        /// away, so nothing could complete it: they get this error instead of hanging.
        case futureAbandoned
    }

    /// What failed, e.g. `"readable(fd: 42)"` or `"epoll_ctl(ADD, fd: 42)"`.
    public let operation: String
    /// What kind of failure this is.
    public let kind: Kind
    /// The `errno` reported by the kernel, or `nil` when the failure is the loop's own.
    public let errno: Int32?
    /// Why, in words.
    public let reason: String

    /// An error from the kernel, of kind ``Kind/system(errno:)``: `reason` is `strerror(errno)`.
    /// - Parameters:
    ///   - operation: what failed, e.g. `"readable(fd: 42)"`.
    ///   - errno: the `errno` the call reported.
    public init(operation: String, errno: Int32) {
        self.init(operation: operation, kind: .system(errno: errno), errno: errno, reason: String(cString: strerror(errno)))
    }

    /// An error of the loop's own, with no `errno`.
    package init(_ kind: Kind, operation: String, reason: String) {
        self.init(operation: operation, kind: kind, errno: nil, reason: reason)
    }

    private init(operation: String, kind: Kind, errno: Int32?, reason: String) {
        self.operation = operation
        self.kind = kind
        self.errno = errno
        self.reason = reason
    }

    /// `operation: ENAME (reason)` for a kernel error, `operation: reason` otherwise, e.g.
    /// `readable(fd: 42): EBADF (Bad file descriptor)`.
    public var description: String {
        if let errno {
            return "\(operation): \(errnoName(errno)) (\(reason))"
        }
        return "\(operation): \(reason)"
    }

    /// A ``Kind/shutDown`` error: the loop has shut down (see the kind).
    public static func loopHasShutDown(_ operation: String) -> LoopError {
        LoopError(.shutDown, operation: operation, reason: "the loop has shut down")
    }

    /// ``Kind/shutDown``, as ``Loop/offload(isolation:_:)`` reports it.
    static let offloadAfterShutdown = LoopError(.shutDown, operation: "offload", reason: "the loop has shut down, and its offload threads with it")

    /// Whether this error says the loop had shut down (its ``kind`` is ``Kind/shutDown``).
    public var isLoopShutDown: Bool {
        if case .shutDown = kind { return true }
        return false
    }

    /// A ``Kind/descriptorClosed`` error: the descriptor was closed or deregistered through the
    /// loop while this operation waited on it.
    public static func descriptorClosed(_ operation: String) -> LoopError {
        LoopError(.descriptorClosed, operation: operation, reason: "the descriptor was closed or deregistered through the loop while waiting")
    }

    /// A ``Kind/descriptorClosed`` error with `errno` EBADF: the descriptor was closed with
    /// `close(2)` while this operation waited on it, and the loop found out (see ``Loop/close(_:)``).
    static func descriptorClosedBehindTheLoop(_ operation: String) -> LoopError {
        LoopError(operation: operation, kind: .descriptorClosed, errno: EBADF, reason: "the descriptor was closed (not through loop.close) while waiting")
    }
}

/// The symbolic name of the errnos a loop is likely to meet; the number otherwise.
func errnoName(_ code: Int32) -> String {
    switch code {
    case EBADF: "EBADF"
    case EINVAL: "EINVAL"
    case EPERM: "EPERM"
    case ENOENT: "ENOENT"
    case EEXIST: "EEXIST"
    case EMFILE: "EMFILE"
    case ENFILE: "ENFILE"
    case ENOMEM: "ENOMEM"
    case EAGAIN: "EAGAIN"
    case EINTR: "EINTR"
    case EPIPE: "EPIPE"
    case ECONNREFUSED: "ECONNREFUSED"
    case ECONNRESET: "ECONNRESET"
    case EADDRINUSE: "EADDRINUSE"
    case ENOTSOCK: "ENOTSOCK"
    case ELOOP: "ELOOP"
    case ETIMEDOUT: "ETIMEDOUT"
    case EINPROGRESS: "EINPROGRESS"
    case EALREADY: "EALREADY"
    case ECONNABORTED: "ECONNABORTED"
    case ENETUNREACH: "ENETUNREACH"
    case EHOSTUNREACH: "EHOSTUNREACH"
    case ENOTCONN: "ENOTCONN"
    case EISCONN: "EISCONN"
    case EACCES: "EACCES"
    case ENOSYS: "ENOSYS"
    default: "errno \(code)"
    }
}
