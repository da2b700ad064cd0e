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

    public init(operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
        self.reason = String(cString: strerror(errno))
    }

    public init(operation: String, reason: String) {
        self.operation = operation
        self.errno = nil
        self.reason = reason
    }

    public var description: String {
        if let errno {
            return "\(operation): \(errnoName(errno)) (\(reason))"
        }
        return "\(operation): \(reason)"
    }

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
