// serial-loop-app: a small HTTP service that is a whole app on one loop thread.
//
//   serial-loop-app [--port N] [--offload-threads N]
//
// Prints "listening on 127.0.0.1:PORT" once bound (`--port 0`, the default, picks a free port),
// one line per request, and stops gracefully on SIGTERM or SIGINT: it stops accepting, answers the
// requests in flight, and exits 0. See App.swift for the routes, Mode.swift for the mode it runs in.
@preconcurrency import Glibc
import SerialLoop

func usage(_ message: String) -> Never {
    fputs("serial-loop-app: \(message)\nusage: serial-loop-app [--port N] [--offload-threads N]\n", stderr)
    exit(2)
}

var port: UInt16 = 0
var offloadThreads: Int? = nil
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
    switch argument {
    case "--port":
        guard let value = arguments.popFirst().flatMap(UInt16.init) else { usage("--port needs a number 0...65535") }
        port = value
    case "--offload-threads":
        guard let value = arguments.popFirst().flatMap(Int.init), value > 0 else { usage("--offload-threads needs a positive number") }
        offloadThreads = value
    default:
        usage("unknown argument \(argument)")
    }
}

/// A process started by a parent that blocked signals inherits that mask across exec, and then
/// SIGTERM would stay pending forever: unblock the two signals the app stops on, on this thread
/// (the loop's), so that the kernel always has a thread to deliver them to.
func unblockStopSignals() {
    var signals = sigset_t()
    sigemptyset(&signals)
    sigaddset(&signals, SIGTERM)
    sigaddset(&signals, SIGINT)
    sigaddset(&signals, SIGUSR1)
    pthread_sigmask(SIG_UNBLOCK, &signals, nil)
}

/// Runs the whole program on a loop on this (the main) thread until the app has stopped.
/// Nonisolated on purpose: top-level code is on the main actor, which this call blocks until the
/// loop — then the main actor's executor — takes over.
nonisolated func runApp(port: UInt16, offloadThreads: Int?) -> Int32 {
    do {
        try Loop.runMain { loop in
            if let offloadThreads { loop.offloadThreadLimit = offloadThreads }
            try await App(loop: loop, port: port).run()
        }
        return 0
    } catch {
        fputs("serial-loop-app: \(error)\n", stderr)
        return 1
    }
}

unblockStopSignals()
exit(runApp(port: port, offloadThreads: offloadThreads))
