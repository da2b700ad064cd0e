@preconcurrency import Glibc
import CSerialLoopSignals
import Testing
@testable import SerialLoop

/// What a signal does now: 0 default, 1 ignored, 2 the loop's handler, 3 another handler.
private func disposition(_ signal: Int32) -> Int32 {
    c_serial_loop_signal_disposition(signal)
}

/// Unblocks `signal` in the calling thread. A loop thread started by the async `withLoop` inherits
/// the mask of the cooperative thread that started it, and Dispatch's threads block signals.
private func unblock(_ signal: Int32) {
    var set = sigset_t()
    sigemptyset(&set)
    sigaddset(&set, signal)
    pthread_sigmask(SIG_UNBLOCK, &set, nil)
}

/// Signal dispositions are process-wide: these tests run one at a time, and each uses its own
/// signal so that a stray delivery cannot reach another test's listener. None uses SIGUSR2, which
/// FaultTests gives a handler of its own while other suites run (restoring our saved disposition
/// over it would let its next SIGUSR2 kill the process), nor SIGCHLD (child processes).
@Suite("Signals", .serialized)
struct SignalTests {
    @Test func raisedSignalReachesEveryListener() async throws {
        try await withWatchdog(seconds: 20) {
            let before = disposition(SIGUSR1)
            let beforeVTALRM = disposition(SIGVTALRM)
            try await withLoop { loop in
                let first = try loop.signals(SIGUSR1)
                let second = try loop.signals(SIGUSR1, SIGVTALRM)
                #expect(disposition(SIGUSR1) == 2)
                unblock(SIGUSR1)
                raise(SIGUSR1)                      // the handler runs on this (the loop's) thread
                var a = first.makeAsyncIterator()
                var b = second.makeAsyncIterator()
                let gotA = await a.next()
                let gotB = await b.next()
                #expect(gotA == SIGUSR1)
                #expect(gotB == SIGUSR1)
                #expect(loop.isOnLoopThread, "delivered on the loop")
            }
            #expect(disposition(SIGUSR1) == before, "the last listener gone, the previous disposition is back")
            #expect(disposition(SIGVTALRM) == beforeVTALRM)
        }
    }

    /// The kernel may run the handler on any thread: here a plain thread that is not the loop's
    /// (pthread_kill), and whatever thread it picks for a process-directed kill(2).
    @Test func deliveredWhicheverThreadTheKernelPicks() async throws {
        try await withWatchdog(seconds: 20) {
            try await withLoop { loop in
                let signals = try loop.signals(SIGXFSZ)
                var iterator = signals.makeAsyncIterator()

                var fds: [Int32] = [0, 0]
                pipe(&fds)
                let (readFD, writeFD) = (fds[0], fds[1])
                let thread = spawnThread {
                    unblock(SIGXFSZ)
                    var byte: UInt8 = 0
                    _ = read(readFD, &byte, 1)      // restarted after the handler (SA_RESTART)
                }
                // If the thread has not unblocked it yet, the signal waits, pending, until it does.
                pthread_kill(thread, SIGXFSZ)
                let fromThread = await iterator.next()
                #expect(fromThread == SIGXFSZ)
                var byte: UInt8 = 1
                _ = write(writeFD, &byte, 1)
                pthread_join(thread, nil)
                close(readFD)
                close(writeFD)

                // Process-directed: the kernel picks a thread with the signal unblocked.
                var latencies: [Int64] = []
                for _ in 0..<50 {
                    let start = monotonicNanoseconds()
                    kill(getpid(), SIGXFSZ)
                    let got = await iterator.next()
                    latencies.append(monotonicNanoseconds() - start)
                    #expect(got == SIGXFSZ)
                }
                latencies.sort()
                print("signals: kill(2) to the listener's task resuming on the loop: median \(latencies[25] / 1000) µs, max \(latencies.last! / 1000) µs (50 deliveries)")
            }
        }
    }

    /// Cancelling the iterating task removes the listener: the sequence ends and the previous
    /// disposition is back.
    @Test func cancellingTheListeningTaskRestoresTheDisposition() async throws {
        try await withWatchdog(seconds: 20) {
            let before = disposition(SIGURG)
            try await withLoop { loop in
                let signals = try loop.signals(SIGURG)
                #expect(disposition(SIGURG) == 2)
                let listener = Task(executorPreference: loop) { () -> Int in
                    var count = 0
                    for await _ in signals { count += 1 }
                    return count
                }
                await Task.yield()
                listener.cancel()
                let count = await listener.value
                #expect(count == 0)
                #expect(disposition(SIGURG) == before)
            }
        }
    }

    /// Shutdown ends the loop's listeners: a task still iterating finishes, and the disposition
    /// is restored.
    @Test func shutdownEndsListeners() async throws {
        try await withWatchdog(seconds: 20) {
            let before = disposition(SIGWINCH)
            let ended = LoopBox(false)
            try await withLoop { loop in
                let signals = try loop.signals(SIGWINCH)
                Task(executorPreference: loop) {
                    for await _ in signals {}
                    ended.value = true
                }
                await Task.yield()
            }
            #expect(ended.value)
            #expect(disposition(SIGWINCH) == before)
        }
    }

    /// Two loops listening to one signal each get every delivery.
    @Test func everyLoopListeningGetsTheSignal() async throws {
        try await withWatchdog(seconds: 20) {
            let other = try Loop.startThread()
            defer { other.shutdown() }
            let otherSignals = try other.loop.signals(SIGALRM)
            try await withLoop { loop in
                let signals = try loop.signals(SIGALRM)
                kill(getpid(), SIGALRM)
                var mine = signals.makeAsyncIterator()
                let got = await mine.next()
                #expect(got == SIGALRM)
            }
            let onOther = await Task(executorPreference: other.loop) { () -> (Int32?, Bool) in
                var iterator = otherSignals.makeAsyncIterator()
                let signal = await iterator.next()
                return (signal, other.loop.isOnLoopThread)
            }.value
            #expect(onOther.0 == SIGALRM && onOther.1)
        }
    }

    @Test func signalsOnAShutDownLoopIsAnError() async throws {
        let loop = try await withLoop { $0 }
        #expect(throws: LoopError.loopHasShutDown("signals(SIGUSR1)")) {
            try loop.signals(SIGUSR1)
        }
    }

    @Test(arguments: [SIGKILL, SIGSTOP, 0, 99, -1, SIGSEGV])
    func invalidSignalsAreClearErrors(signal: Int32) async throws {
        try await withWatchdog(seconds: 20) {
            try await withLoop { loop in
                let before = disposition(SIGUSR1)
                do {
                    _ = try loop.signals(SIGUSR1, signal)
                    Issue.record("signals(\(signal)) did not throw")
                } catch let error as LoopError {
                    #expect(error.operation == "signals(SIGUSR1, \(signalName(signal)))")
                    switch signal {
                    case SIGKILL, SIGSTOP: #expect(error.reason.contains("cannot be caught"))
                    case SIGSEGV: #expect(error.reason.contains("fault"))
                    default: #expect(error.reason.contains("is not a signal number"))
                    }
                }
                #expect(disposition(SIGUSR1) == before, "nothing is installed when signals(...) throws")
            }
        }
    }

    @Test func reservedAndEmptySignalListsAreErrors() async throws {
        try await withWatchdog(seconds: 20) {
            try await withLoop { loop in
                #expect(throws: LoopError(.invalidArgument, operation: "signals()", reason: "no signal given")) { try loop.signals() }
                // glibc keeps 32 and 33 for its own threads: sigaction says EINVAL.
                do {
                    _ = try loop.signals(32)
                    Issue.record("signals(32) did not throw")
                } catch let error as LoopError {
                    #expect(error.errno == EINVAL)
                    #expect("\(error)".hasPrefix("signals(signal 32): EINVAL"))
                }
            }
        }
    }

    /// The issue's check, in a child process (SIGINT's default action ends the process): with the
    /// last listener gone, SIGINT's disposition is the default again, and raising it kills.
    @Test func sigintListenerRemovedRestoresTheDefaultDisposition() async {
        await #expect(processExitsWith: .signal(SIGINT)) {
            guard c_serial_loop_signal_disposition(SIGINT) == 0 else { exit(10) }
            try withLoop { loop in
                do {
                    let signals = try loop.signals(SIGINT)
                    guard c_serial_loop_signal_disposition(SIGINT) == 2 else { exit(11) }
                    var sigint = sigset_t()
                    sigemptyset(&sigint)
                    sigaddset(&sigint, SIGINT)
                    pthread_sigmask(SIG_UNBLOCK, &sigint, nil)
                    raise(SIGINT)                                   // caught: the process lives
                    var iterator = signals.makeAsyncIterator()
                    guard await iterator.next() == SIGINT else { exit(12) }
                }
                guard c_serial_loop_signal_disposition(SIGINT) == 0 else { exit(13) }
            }
            var sigint = sigset_t()
            sigemptyset(&sigint)
            sigaddset(&sigint, SIGINT)
            pthread_sigmask(SIG_UNBLOCK, &sigint, nil)
            raise(SIGINT)                                           // default: the process dies
            exit(14)
        }
    }
}
