// Usage: SerialLoopBenchmarks --list
//        SerialLoopBenchmarks --workload NAME --executor NAME --n N
// Prints one line: RESULT<TAB>workload<TAB>executor<TAB>value<TAB>unit
//              or SKIP<TAB>workload<TAB>executor<TAB>reason  (the row cannot run on this machine)
// --list prints workload<TAB>executor<TAB>unit<TAB>method (method: the row's one-line note)
@preconcurrency import Glibc

/// Every benchmark, one list per workload family (Workloads/*.swift).
let benchmarks = observabilityBenchmarks + taskBenchmarks + wholeProgramBenchmarks + timerBenchmarks + ioBenchmarks + netBenchmarks + growthBenchmarks + crossThreadBenchmarks + crossLoopBenchmarks + offloadBenchmarks + memoryBenchmarks + talkBenchmarks

let arguments = CommandLine.arguments
func argument(_ name: String) -> String? {
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
    return arguments[index + 1]
}

if arguments.contains("--list") {
    for benchmark in benchmarks { print("\(benchmark.workload)\t\(benchmark.executor)\t\(benchmark.unit)\t\(benchmark.method)") }
    exit(0)
}
guard let workload = argument("--workload"), let executor = argument("--executor"),
      let n = argument("--n").flatMap(Int.init),
      let benchmark = benchmarks.first(where: { $0.workload == workload && $0.executor == executor }) else {
    fputs("usage: SerialLoopBenchmarks --list | --workload W --executor E --n N\n", stderr)
    exit(2)
}
let value: Double
do {
    value = try benchmark.run(n)
} catch let skip as SkipBenchmark {
    print("SKIP\t\(workload)\t\(executor)\t\(skip.reason)")
    fflush(stdout)
    exit(0)
}
print("RESULT\t\(workload)\t\(executor)\t\(value)\t\(benchmark.unit)")
fflush(stdout)
exit(0)
