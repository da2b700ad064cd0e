@preconcurrency import Glibc

/// An error thrown by a loop operation. It always names the operation, and carries the `errno`
/// when the failure came from the kernel.
///
/// ```
/// readable(fd: 42): EBADF (Bad file descriptor)
/// ```
public struct LoopError: Error, Equatable, CustomStringConvertible, Sendable {
    /// What failed, e.g. `"readable(fd: 42)"` or `"epoll_ctl(ADD, fd: 42)"`.
    public let operation: String
    /// The `errno` reported by the kernel, or `nil` when the failure is the loop's own.
    public let errno: Int32?
    /// Why, in words.
    public let reason: String

    /// An error from the kernel: `reason` is `strerror(errno)`.
    /// - Parameters:
    ///   - operation: what failed, e.g. `"readable(fd: 42)"`.
    ///   - errno: the `errno` the call reported.
    public init(operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
        self.reason = String(cString: strerror(errno))
    }

    /// An error of the loop's own, with no `errno`.
    /// - Parameters:
    ///   - operation: what failed.
    ///   - reason: why, in words.
    public init(operation: String, reason: String) {
        self.operation = operation
        self.errno = nil
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

    /// The descriptor was closed with `close(2)` while this operation waited on it, and the loop
    /// found out (see ``Loop/close(_:)``): EBADF, with a reason that says so.
    static func descriptorClosedBehindTheLoop(_ operation: String) -> LoopError {
        LoopError(operation: operation, errno: EBADF, reason: "the descriptor was closed (not through loop.close) while waiting")
    }

    init(operation: String, errno: Int32, reason: String) {
        self.operation = operation
        self.errno = errno
        self.reason = reason
    }

    /// The loop has shut down (its `withLoop` returned, or `LoopThread.shutdown()` ran): every
    /// `async` loop API called afterwards fails with this at once, and a task that was waiting on
    /// the loop from another executor when shutdown began is resumed with it.
    public static func loopHasShutDown(_ operation: String) -> LoopError {
        LoopError(operation: operation, reason: "the loop has shut down")
    }

    /// Whether this error says the loop had shut down.
    public var isLoopShutDown: Bool { errno == nil && reason == "the loop has shut down" }

    /// The descriptor was closed or deregistered through the loop while this operation waited on it.
    public static func descriptorClosed(_ operation: String) -> LoopError {
        LoopError(operation: operation, reason: "the descriptor was closed or deregistered through the loop while waiting")
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
