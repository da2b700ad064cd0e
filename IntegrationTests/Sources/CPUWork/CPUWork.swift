// The CPU work a request does in the scaling figures (WRK-RESULTS.md, "Past one core"): both HTTP
// servers call this same function from `GET /work/ROUNDS`, so the handler code is identical and
// only the server around it differs.

/// Hashes a 64-byte block derived from `seed` (the request's path) `rounds` times with FNV-1a
/// (64-bit), each round starting from the previous round's hash, and returns the final hash.
///
/// Every round depends on the one before (a chain of multiplies), so the compiler can neither
/// skip nor vectorise it: the cost is linear in `rounds` (about 75 ns per round on the 2-core
/// VM of WRK-RESULTS.md; `serial-loop-http-server --calibrate-work ROUNDS` measures it).
@inline(never)
public func cpuWork(seed: some Sequence<UInt8>, rounds: Int) -> UInt64 {
    var block = [UInt8](repeating: 0, count: 64)
    var index = 0
    for byte in seed {
        block[index % 64] &+= byte
        index += 1
    }
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for _ in 0..<max(0, rounds) {
        for byte in block {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        block[Int(hash % 64)] &+= UInt8(truncatingIfNeeded: hash >> 56)
    }
    return hash
}

/// The body both servers answer `GET /work/ROUNDS` with: the hash in hex and a newline.
public func cpuWorkBody(path: String, rounds: Int) -> String {
    String(cpuWork(seed: path.utf8, rounds: rounds), radix: 16) + "\n"
}

/// The rounds of a `/work/ROUNDS` path, or nil when the path is not one (or ROUNDS is not in
/// 0...1,000,000).
public func workRounds(path: String) -> Int? {
    guard path.hasPrefix("/work/"), let rounds = Int(path.dropFirst("/work/".count)), (0...1_000_000).contains(rounds) else {
        return nil
    }
    return rounds
}
