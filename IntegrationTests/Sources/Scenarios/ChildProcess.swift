import ScenarioCheck
@preconcurrency import Glibc
import SerialLoop

/// A child process (posix_spawn) writes lines to a pipe over ~250 ms; a loop task reads the pipe
/// non-blocking through `loop.readable`, while another task on the same loop keeps ticking — the
/// loop is never blocked on the child.
func runChildProcess() throws {
    print("child-process: reading a child's stdout pipe through loop.readable")
    let script = "for i in 1 2 3 4 5; do echo line $i; sleep 0.05; done; exit 3"

    struct Report: Sendable {
        var lines: [(String, Duration)] = []
        var ticksWhileReading = 0
        var exitStatus: Int32 = -1
        var closedError: LoopError?
    }
    let report = try withLoop { loop in
        var report = Report()
        let (readEnd, writeEnd) = try makePipe()
        let pid = try spawnShell(script, stdout: writeEnd)
        Glibc.close(writeEnd)           // the child holds it now; never seen by the loop
        let start = loop.now

        let ticker = Task(executorPreference: loop) { () async -> Int in
            var ticks = 0
            while !Task.isCancelled {
                do { try await loop.sleep(for: .milliseconds(5)) } catch { break }
                ticks += 1
            }
            return ticks
        }

        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        reading: while true {
            try await loop.readable(readEnd)
            let count = read(readEnd, &buffer, buffer.count)
            switch count {
            case 0:
                break reading
            case ..<0:
                guard errno == EAGAIN || errno == EINTR else { throw LoopError(operation: "read(fd: \(readEnd))", errno: errno) }
            default:
                pending += buffer[..<count]
                while let newline = pending.firstIndex(of: 10) {
                    report.lines.append((String(decoding: pending[..<newline], as: UTF8.self), start.duration(to: loop.now)))
                    pending.removeSubrange(...newline)
                }
            }
        }
        ticker.cancel()
        report.ticksWhileReading = await ticker.value

        // Reap without blocking the loop: WNOHANG, then a short loop sleep.
        var status: Int32 = 0
        while true {
            let reaped = waitpid(pid, &status, WNOHANG)
            if reaped == pid { break }
            if reaped < 0 { throw LoopError(operation: "waitpid(pid: \(pid))", errno: errno) }
            try await loop.sleep(for: .milliseconds(2))
        }
        report.exitStatus = (status & 0x7f) == 0 ? (status >> 8) & 0xff : -1

        try loop.close(readEnd)
        do { try await loop.readable(readEnd) } catch let error as LoopError { report.closedError = error }
        return report
    }
    let texts = report.lines.map(\.0)
    let times = report.lines.map { milliseconds($0.1) }
    Check.that(texts == (1...5).map { "line \($0)" }, "read the child's 5 lines through the loop: \(texts)")
    Check.that(times.count == 5 && times[4] - times[0] >= 150, "lines arrived as the child wrote them, not at exit (at \(times.map { format($0, 0) }) ms)")
    Check.that(report.ticksWhileReading >= 20, "another task on the loop ticked \(report.ticksWhileReading) times (5 ms sleeps) while the read waited: the loop was never blocked")
    Check.that(report.exitStatus == 3, "the child was reaped without blocking the loop; exit status \(report.exitStatus)")
    Check.that(report.closedError?.errno == EBADF, "readable() on the closed pipe is a clear error: \(report.closedError.map { "\($0)" } ?? "none")")
}

/// A pipe whose read end is non-blocking; both ends close-on-exec (the child's stdout is a dup).
private func makePipe() throws(LoopError) -> (Int32, Int32) {
    var fds: [Int32] = [-1, -1]
    guard pipe(&fds) == 0 else { throw LoopError(operation: "pipe()", errno: errno) }
    for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    guard fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK) == 0 else {
        throw LoopError(operation: "fcntl(fd: \(fds[0]), O_NONBLOCK)", errno: errno)
    }
    return (fds[0], fds[1])
}

/// Starts `/bin/sh -c script` with its stdout on `stdoutFD`.
private func spawnShell(_ script: String, stdout stdoutFD: Int32) throws(LoopError) -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, stdoutFD, 1)
    let argv: [UnsafeMutablePointer<CChar>?] = ["/bin/sh", "-c", script].map { (text: String) in strdup(text) } + [nil]
    defer { for argument in argv { free(argument) } }
    var pid: pid_t = 0
    let result = posix_spawn(&pid, "/bin/sh", &actions, nil, argv, environ)
    guard result == 0 else { throw LoopError(operation: "posix_spawn(/bin/sh)", errno: result) }
    return pid
}
