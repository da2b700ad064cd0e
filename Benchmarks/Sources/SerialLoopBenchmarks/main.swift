// Usage: SerialLoopBenchmarks --list
//        SerialLoopBenchmarks --workload NAME --executor NAME --n N
// Prints one line: RESULT<TAB>workload<TAB>executor<TAB>value<TAB>unit
@preconcurrency import Glibc

/// Every benchmark, one list per workload family (Workloads/*.swift).
let benchmarks = observabilityBenchmarks + taskBenchmarks + wholeProgramBenchmarks + timerBenchmarks + ioBenchmarks + crossThreadBenchmarks + offloadBenchmarks + memoryBenchmarks + talkBenchmarks

let arguments = CommandLine.arguments
func argument(_ name: String) -> String? {
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
    return arguments[index + 1]
}

if arguments.contains("--list") {
    for benchmark in benchmarks { print("\(benchmark.workload)\t\(benchmark.executor)\t\(benchmark.unit)") }
    exit(0)
}
guard let workload = argument("--workload"), let executor = argument("--executor"),
      let n = argument("--n").flatMap(Int.init),
      let benchmark = benchmarks.first(where: { $0.workload == workload && $0.executor == executor }) else {
    fputs("usage: SerialLoopBenchmarks --list | --workload W --executor E --n N\n", stderr)
    exit(2)
}
let value = try benchmark.run(n)
print("RESULT\t\(workload)\t\(executor)\t\(value)\t\(benchmark.unit)")
fflush(stdout)
exit(0)
