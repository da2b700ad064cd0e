@preconcurrency import Glibc
import SerialLoop

/// An IPv4 address and TCP port, such as `127.0.0.1:8080`.
///
/// The socket layer is deliberately thin: it takes address *literals* only and never resolves
/// names (name resolution blocks; do it before you come to the loop).
public struct SocketAddress: Sendable, Hashable, CustomStringConvertible {
    /// The dotted-quad host, e.g. `"127.0.0.1"`.
    public var host: String
    /// The port; `0` asks the kernel for a free one when binding.
    public var port: UInt16

    /// An address from an IPv4 literal and a port; nothing is checked until a socket uses it.
    /// - Parameters:
    ///   - host: a dotted-quad literal such as `"127.0.0.1"` (a name is refused with `EINVAL` when
    ///     the address is used).
    ///   - port: the TCP port; `0` asks the kernel for a free one when binding.
    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// `127.0.0.1:port`. Port `0` binds to a free port chosen by the kernel.
    public static func loopback(port: UInt16 = 0) -> SocketAddress {
        SocketAddress(host: "127.0.0.1", port: port)
    }

    /// `host:port`, e.g. `127.0.0.1:8080`.
    public var description: String { "\(host):\(port)" }

    /// The kernel's form of the address.
    /// - Throws: ``SerialLoop/LoopError`` naming `operation` (with `EINVAL`) when `host` is not an IPv4 literal.
    func sockaddr(for operation: @autoclosure () -> String) throws(LoopError) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            throw LoopError(operation: operation(), errno: EINVAL)
        }
        return address
    }

    /// Reads an address the kernel filled in (`getsockname`, `getpeername`, `accept`).
    init(_ address: sockaddr_in) {
        var raw = address.sin_addr
        var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        let host = inet_ntop(AF_INET, &raw, &text, socklen_t(text.count)).map { String(cString: $0) } ?? "?"
        self.init(host: host, port: UInt16(bigEndian: address.sin_port))
    }
}

/// Calls `getsockname` or `getpeername` on `fd`.
func socketAddress(
    of fd: Int32,
    _ name: String,
    _ call: (Int32, UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> Int32
) throws(LoopError) -> SocketAddress {
    var address = sockaddr_in()
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = try syscall("\(name)(fd: \(fd))") {
        withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { call(fd, $0, &length) }
        }
    }
    return SocketAddress(address)
}
