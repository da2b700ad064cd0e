// Ecosystem scenarios (issue 14), each printing what it checks and exiting non-zero on a failure.
// ../run.sh starts nginx and drives the servers with curl.
//
//   ecosystem-scenarios ahc-fanout --url http://127.0.0.1:PORT/file.bin --expect-body-file PATH [--count 50]
//   ecosystem-scenarios subprocess           swift-subprocess from loop tasks: streaming, exit status, cancellation
//   ecosystem-scenarios clocks               the same `some Clock` code under pointfree's TestClock and withTestLoop
//   ecosystem-scenarios hummingbird-server   Hummingbird 2 + a loop-bound actor + /metrics (Prometheus); prints "listening on"
//   ecosystem-scenarios lifecycle-server     an HTTP server as a LoopService in a ServiceGroup (SIGTERM: graceful)
@preconcurrency import Glibc

func usage() -> Never {
    fputs("usage: ecosystem-scenarios ahc-fanout|subprocess|clocks|hummingbird-server|lifecycle-server [options]\n", stderr)
    exit(2)
}

var arguments = Array(CommandLine.arguments.dropFirst())
guard let scenario = arguments.first else { usage() }
arguments.removeFirst()
setvbuf(stdout, nil, _IOLBF, 0)

do {
    switch scenario {
    case "ahc-fanout": try await runAHCFanOut(arguments)
    case "subprocess": try await runSubprocess()
    case "clocks": try await runClocks()
    case "hummingbird-server": try await runHummingbirdServer(arguments)
    case "lifecycle-server": try await runLifecycleServer(arguments)
    default: usage()
    }
} catch {
    Check.that(false, "\(scenario) threw: \(error)")
}
Check.finish(scenario)

/// `--name value` from the arguments, or nil.
func option(_ name: String, in arguments: [String]) -> String? {
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
    return arguments[index + 1]
}
