// Scenarios that run inside one program, each printing what it checks and exiting non-zero on any
// failure. run.sh starts the servers they talk to.
//
//   scenarios fanout --address 127.0.0.1:PORT [--count 50] [--path /] [--min-delay-ms MS] [--expect-body-file PATH]
//   scenarios algorithms      swift-async-algorithms driven by loop.clock (real and virtual time)
//   scenarios nio-futures     awaiting SwiftNIO EventLoopFutures from loop tasks
//   scenarios child-process   a child's stdout pipe read through loop.readable
import ScenarioCheck
@preconcurrency import Glibc

func usage() -> Never {
    fputs("usage: scenarios fanout|algorithms|nio-futures|child-process [options]\n", stderr)
    exit(2)
}

var arguments = Array(CommandLine.arguments.dropFirst())
guard let scenario = arguments.first else { usage() }
arguments.removeFirst()

do {
    switch scenario {
    case "fanout": try runFanOut(FanOutOptions(arguments))
    case "algorithms": try runAlgorithms()
    case "nio-futures": try runNIOFutures()
    case "child-process": try runChildProcess()
    default: usage()
    }
} catch {
    Check.that(false, "\(scenario) threw: \(error)")
}
Check.finish(scenario)
