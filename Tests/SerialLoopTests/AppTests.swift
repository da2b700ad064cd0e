@preconcurrency import Glibc
import Testing
@testable import SerialLoop
import SerialLoopNet

/// The example app (`serial-loop-app`, built beside this test binary) as a child process: what a
/// deployment does to it — requests, then SIGTERM while some are in flight.
@Suite("serial-loop-app")
struct AppTests {
    /// SIGTERM while three slow requests are in flight: the listener closes (new connections are
    /// refused), the three are answered in full, and the process exits 0. Also checks `/hash` (an
    /// offloaded FNV-1a over a file) against a hash computed here.
    @Test func sigtermAnswersInFlightRequestsAndExitsZero() async throws {
        try await withWatchdog(seconds: 60) {
            let binary = appBinaryPath()
            guard access(binary, X_OK) == 0 else {
                Issue.record("\(binary) is missing: build it first (swift build --build-tests builds every product)")
                return
            }
            try await withLoop { loop in
                let app = try AppProcess(binary: binary, loop: loop)
                defer { app.killIfRunning() }
                let port = try await app.port()

                // The offloaded hash, checked against the same function computed here.
                let file = "/tmp/serial-loop-app-test-\(getpid()).bin"
                let content = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
                #expect(FileManagerless.write(content, to: file))
                defer { unlink(file) }
                var expected: UInt64 = 0xcbf2_9ce4_8422_2325
                for byte in content { expected = (expected ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
                let hashResponse = try await get("/hash?path=\(file)", port: port, loop: loop)
                #expect(hashResponse.hasPrefix("HTTP/1.1 200 OK"))
                #expect(hashResponse.hasSuffix("fnv1a64=\(String(expected, radix: 16)) bytes=100000 path=\(file)\n"))

                // Three requests in flight: each is answered after 500 ms on the app's loop.
                var slow: [TCPConnection] = []
                for _ in 0..<3 {
                    let connection = try await TCPConnection.connect(to: .loopback(port: port), on: loop)
                    try await connection.write("GET /slow/500 HTTP/1.1\r\nHost: app\r\n\r\n")
                    slow.append(connection)
                }
                for _ in 0..<3 { _ = try await app.line(containing: "GET /slow/500") }   // the app has them

                kill(app.pid, SIGTERM)
                let draining = try await app.line(containing: "received SIGTERM")
                #expect(draining == "received SIGTERM, draining 3 request(s)")
                // The listener is closed: a new connection is refused.
                await #expect(throws: LoopError.self) {
                    _ = try await TCPConnection.connect(to: .loopback(port: port), on: loop)
                }
                for connection in slow {
                    let response = try await readToEnd(connection)
                    try connection.close()
                    #expect(response.hasPrefix("HTTP/1.1 200 OK"))
                    #expect(response.hasSuffix("\r\n\r\nslept 500 ms\n"))
                }
                let status = try await app.exitStatus()
                #expect(status == .exited(0))
                let last = try await app.line(containing: "stopped after")
                #expect(last == "stopped after 4 request(s)")
            }
        }
    }
}

/// The app binary: the build directory holds the test bundle and every product side by side.
private func appBinaryPath() -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    let exe = count > 0 ? String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
    let directory = exe.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
    return directory + "/serial-loop-app"
}

private enum FileManagerless {
    static func write(_ bytes: [UInt8], to path: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == bytes.count
    }
}

private func get(_ target: String, port: UInt16, loop: Loop) async throws -> String {
    let connection = try await TCPConnection.connect(to: .loopback(port: port), on: loop)
    defer { try? connection.close() }
    try await connection.write("GET \(target) HTTP/1.1\r\nHost: app\r\n\r\n")
    return try await readToEnd(connection)
}

private func readToEnd(_ connection: TCPConnection) async throws -> String {
    var bytes: [UInt8] = []
    while case let chunk = try await connection.read(upToCount: 65536), !chunk.isEmpty {
        bytes += chunk
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// The app as a child process, its stdout read line by line through the loop.
private final class AppProcess: @unchecked Sendable {
    enum Status: Equatable { case exited(Int32), signalled(Int32) }

    let pid: pid_t
    let loop: Loop
    private let stdoutFD: Int32
    private var buffered: [UInt8] = []
    private var lines: [String] = []
    private var reaped = false

    init(binary: String, loop: Loop) throws {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw LoopError(operation: "pipe", errno: errno) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        // stderr too: a child that outlives a crashed test must not hold the test runner's own
        // output pipe open (swift test would wait for it).
        posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
        posix_spawn_file_actions_addclose(&actions, fds[0])
        // No POSIX_SPAWN_SETSIGMASK: the child starts with this thread's signal mask, which
        // blocks everything (a loop thread started from Swift's cooperative pool inherits
        // Dispatch's mask). The app must cope: it unblocks the signals it stops on.
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup(binary), strdup("--port"), strdup("0"), nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, binary, &actions, nil, argv, environ)
        close(fds[1])
        guard result == 0 else {
            close(fds[0])
            throw LoopError(operation: "posix_spawn(\(binary))", errno: result)
        }
        _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
        self.pid = pid
        self.loop = loop
        self.stdoutFD = fds[0]
    }

    deinit {
        try? loop.close(stdoutFD)
    }

    /// The port from "listening on 127.0.0.1:PORT".
    func port() async throws -> UInt16 {
        let line = try await line(containing: "listening on")
        guard let port = line.split(separator: ":").last.flatMap({ UInt16($0) }) else {
            throw FixtureError(message: "serial-loop-app: no port in \(line)")
        }
        return port
    }

    /// The next stdout line (after those already returned) that contains `text`.
    func line(containing text: String) async throws -> String {
        while true {
            if let index = lines.firstIndex(where: { $0.contains(text) }) {
                let line = lines[index]
                lines.removeSubrange(...index)
                return line
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let count = read(stdoutFD, &chunk, chunk.count)
            if count > 0 {
                buffered += chunk[..<count]
                while let newline = buffered.firstIndex(of: UInt8(ascii: "\n")) {
                    lines.append(String(decoding: buffered[..<newline], as: UTF8.self))
                    buffered.removeSubrange(...newline)
                }
            } else if count == 0 {
                throw FixtureError(message: "serial-loop-app: stdout ended before a line containing \"\(text)\"; lines left: \(lines)")
            } else if errno == EAGAIN {
                try await loop.readable(stdoutFD)
            } else {
                throw LoopError(operation: "read(app stdout)", errno: errno)
            }
        }
    }

    /// Waits for the process to end — a blocking `waitpid`, so through `loop.offload`.
    func exitStatus() async throws -> Status {
        let pid = self.pid
        let status = try await loop.offload { () -> Int32 in
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            return status
        }
        reaped = true
        // WIFEXITED / WEXITSTATUS / WTERMSIG are macros Swift does not import.
        if status & 0x7f == 0 { return .exited((status >> 8) & 0xff) }
        return .signalled(status & 0x7f)
    }

    func killIfRunning() {
        guard !reaped else { return }
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        reaped = true
    }
}
