@preconcurrency import Glibc

/// The 64-bit FNV-1a hash of a file's bytes, read with plain blocking `read(2)` calls: the kind of
/// work that must not run on the loop thread, so the app runs it through `loop.offload`.
/// - Throws: `FileHashError` naming the call and the errno.
func fnv1a64(ofFileAt path: String) throws(FileHashError) -> (hash: UInt64, byteCount: Int) {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw FileHashError(operation: "open(\(path))", errno: errno) }
    defer { close(fd) }
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    var total = 0
    var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    while true {
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count == 0 { break }
        if count < 0 {
            if errno == EINTR { continue }
            throw FileHashError(operation: "read(\(path))", errno: errno)
        }
        for byte in buffer[..<count] {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        total += count
    }
    return (hash, total)
}

struct FileHashError: Error, CustomStringConvertible {
    let operation: String
    let errno: Int32
    var description: String { "\(operation): \(String(cString: strerror(errno)))" }
}
