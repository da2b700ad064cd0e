@preconcurrency import Glibc
import SerialLoop
import Subprocess
import Synchronization

/// swift-subprocess run from loop tasks: a child's output streamed line by line while another loop
/// task keeps ticking, its exit status, a collected run, and cancellation of the loop task killing
/// the child. swift-subprocess does its pipe I/O on its own epoll thread; every `await` on it must
/// come back to the loop thread.
func runSubprocess() async throws {
    print("subprocess: swift-subprocess from loop tasks")
    try await withLoop { loop in
        var awaits = 0
        var offLoop = 0
        func note() {
            awaits += 1
            if !loop.isOnLoopThread { offLoop += 1 }
        }

        // 1. Streaming: five lines 50 ms apart, exit status 3.
        let ticker = Task(executorPreference: loop) { () async -> Int in
            var ticks = 0
            while !Task.isCancelled {
                do { try await loop.sleep(for: .milliseconds(5)) } catch { break }
                ticks += 1
            }
            return ticks
        }
        let start = loop.now
        var lines: [(String, Duration)] = []
        let streamed = try await run(
            .path("/bin/sh"),
            arguments: ["-c", "for i in 1 2 3 4 5; do echo line $i; sleep 0.05; done; exit 3"],
            input: .none,
            output: .sequence,
            error: .discarded
        ) { execution in
            var lines: [(String, Duration)] = []
            for try await line in execution.standardOutput.strings() {
                note()
                lines.append((line, start.duration(to: loop.now)))
            }
            note()
            return lines
        }
        note()
        lines = streamed.closureResult
        ticker.cancel()
        let ticks = await ticker.value
        Check.that(lines.map(\.0) == (1...5).map { "line \($0)" }, "streamed the child's 5 lines in order: \(lines.map(\.0))")
        let spread = lines.count == 5 ? lines[4].1 - lines[0].1 : .zero
        Check.that(spread >= .milliseconds(150), "the lines arrived as written, not at exit: first to last \(format(milliseconds(spread))) ms apart (≥ 150)")
        Check.that(streamed.terminationStatus == .exited(3), "exit status: \(streamed.terminationStatus) (expected exited(3))")
        Check.that(ticks >= 10, "another loop task ticked \(ticks) times (5 ms sleeps) while the child ran: the loop was not blocked")

        // 2. Collected output.
        let collected = try await run(.path("/bin/echo"), arguments: ["hello from a child"], output: .string(limit: 4096))
        note()
        Check.that(collected.standardOutput == "hello from a child\n", "collected stdout: \(String(reflecting: collected.standardOutput))")
        Check.that(collected.terminationStatus.isSuccess, "echo exited 0")

        // 3. Cancellation: a loop task runs `sleep 30`; cancelling the task kills the child.
        let pid = Locked<pid_t>(0)
        let started = loop.makeFuture(of: Void.self)
        let sleeper = Task(executorPreference: loop) {
            try await run(.path("/bin/sleep"), arguments: ["30"], input: .none, output: .sequence, error: .discarded) { execution in
                pid.withLock { $0 = execution.processIdentifier.value }
                started.succeed(())
                for try await _ in execution.standardOutput { }
            }
        }
        try await started.value
        note()
        let childPid = pid.withLock { $0 }
        Check.that(childPid > 0 && kill(childPid, 0) == 0, "the child `sleep 30` runs (pid \(childPid))")
        let cancelAt = loop.now
        sleeper.cancel()
        let result = await sleeper.result
        note()
        let took = cancelAt.duration(to: loop.now)
        let outcome: String
        switch result {
        case .success(let value): outcome = "returned \(value.terminationStatus)"
        case .failure(let error): outcome = "threw \(type(of: error)): \(error)"
        }
        Check.that(took < .seconds(10), "cancelling the loop task ended run() in \(format(milliseconds(took))) ms (\(outcome))")
        let gone = kill(childPid, 0) == -1 && errno == ESRCH
        Check.that(gone, "the child is gone (killed and reaped): kill(\(childPid), 0) fails with ESRCH")
        if case .success(let value) = result {
            Check.that(value.terminationStatus == .signaled(SIGKILL) || value.terminationStatus == .signaled(SIGTERM),
                       "the child died of a signal: \(value.terminationStatus)")
        }
        Check.that(offLoop == 0, "every continuation resumed on the loop thread: \(awaits - offLoop) of \(awaits) awaits")
    }
}
