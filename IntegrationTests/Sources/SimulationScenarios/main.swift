// LoopHTTP over a simulated network on virtual time (SerialLoopNetSimulation), each scenario
// printing what it checks and exiting non-zero on any failure.
//
//   simulation-scenarios virtual-time-http   the HTTP server and 50 clients on one test loop, over
//                                            real loopback sockets and over a simulated network
//   simulation-scenarios faults              a retrying client against the server across a
//                                            partition, a reset mid-body and a slow link
//   simulation-scenarios chaos-http          the server and 40 clients on real loopback sockets
//                                            under seeded socket chaos (EAGAIN, EINTR, short counts)
import ScenarioCheck
@preconcurrency import Glibc

func usage() -> Never {
    fputs("usage: simulation-scenarios virtual-time-http|faults|chaos-http\n", stderr)
    exit(2)
}

guard CommandLine.arguments.count == 2 else { usage() }
let scenario = CommandLine.arguments[1]
do {
    switch scenario {
    case "virtual-time-http": try runVirtualTimeHTTP()
    case "faults": try runHTTPFaults()
    case "chaos-http": try runChaosHTTP()
    default: usage()
    }
} catch {
    Check.that(false, "\(scenario) threw: \(error)")
}
Check.finish(scenario)
