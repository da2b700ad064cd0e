@preconcurrency import Glibc
import SerialLoop

// The seam fault injection on real sockets plugs into (SerialLoopNetSimulation's `withSocketChaos`;
// issue 25).
//
// A socket reads `SocketChaosContext.current` once, when it is created (`TCPListener.init`,
// `TCPConnection.connect`; an accepted connection takes its listener's), and keeps the injector for
// its life. Before each of its system calls (accept, connect, read, send) the socket asks the
// injector — only when it has one: on the real path the cost is one load and one predictable branch
// per call. The injector answers with what the kernel may legally answer instead (`EAGAIN`, `EINTR`,
// `ECONNRESET`, a shorter count), and the socket layer's ordinary handling takes it from there.
// Nothing here injects anything: a program that does not link SerialLoopNetSimulation carries no
// chaos code.

/// The system calls a fault can be injected into.
package enum SocketCall: Int, Sendable, CaseIterable {
    case accept, connect, read, write
}

/// What a socket does instead of (or to) one system call.
package enum SocketFault: Sendable, Equatable {
    /// Fails with this errno without calling the kernel (for `connect`: after calling it, so the
    /// connection still proceeds in the background, as after a real `EINTR`).
    case fail(errno: Int32)
    /// Calls the kernel with this smaller count (at least 1): a short read or write.
    case shorten(to: Int)
}

/// Decides the faults of the sockets created under it. Called on the sockets' loop threads (several
/// loops may share one injector).
package protocol SocketFaultInjector: AnyObject, Sendable {
    /// The fault for this call on descriptor `fd`, or `nil`: call the kernel as asked.
    func fault(for call: SocketCall, fd: Int32) -> SocketFault?
}

/// The injector new sockets take: `nil` (none) unless `withSocketChaos` bound one.
package enum SocketChaosContext {
    @TaskLocal package static var current: (any SocketFaultInjector)?
}

extension SocketDescriptor {
    /// The most bytes this call may ask the kernel for (`Int.max`: no limit), or `nil` with
    /// `errno` set: fail without calling it. Not inlined: the real path only tests `chaos` for nil
    /// (in `perform`) and never comes here.
    @inline(never)
    func chaosLimit(_ call: SocketCall) -> Int? {
        guard let chaos else { return .max }
        switch chaos.fault(for: call, fd: fd) {
        case nil: return .max
        case .shorten(let limit): return max(1, limit)
        case .fail(let code):
            errno = code
            return nil
        }
    }
}
