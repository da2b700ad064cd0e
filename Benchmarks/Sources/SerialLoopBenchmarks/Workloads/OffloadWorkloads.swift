@preconcurrency import Glibc
import Dispatch
import SerialLoop

// Offload round trip: one task awaits n empty closures run on another thread, one after another;
// wall ns per round trip (hand the closure to a parked thread, run it, resume the caller).
// - SerialLoop: `loop.offload {}` from a task on the loop (the loop's pool; the caller resumes on
//   the loop through its inbox).
// - Dispatch: `DispatchQueue.global().async` + a continuation, from a task on Swift's default
//   executor (the caller resumes on the cooperative pool) — the usual way to do this without a loop.
// - Dispatch from the loop: the same hand-off from a task on the loop, resuming on the loop.

let offloadBenchmarks: [Benchmark] = [
    Benchmark(workload: "offload-round-trip", executor: "SerialLoop", unit: "ns/op",
              method: "from a task on the loop, n × `await loop.offload {}` (the loop's worker pool)") { n in
        try withLoop { loop in
            let start = ContinuousClock.now
            for _ in 0..<n { try await loop.offload {} }
            return nanoseconds(since: start) / Double(n)
        }
    },
    Benchmark(workload: "offload-round-trip", executor: "Dispatch.global + continuation", unit: "ns/op",
              method: "from a plain task on the global executor, n × `DispatchQueue.global().async` resuming a continuation") { n in
        try onDefaultExecutor {
            let start = ContinuousClock.now
            for _ in 0..<n { await dispatchRoundTrip() }
            return nanoseconds(since: start) / Double(n)
        }
    },
    Benchmark(workload: "offload-round-trip", executor: "Dispatch.global from the loop", unit: "ns/op",
              method: "the same Dispatch hand-off from a task on the loop (resumes on the loop)") { n in
        try withLoop { _ in
            let start = ContinuousClock.now
            for _ in 0..<n { await dispatchRoundTrip() }
            return nanoseconds(since: start) / Double(n)
        }
    },
]

private func dispatchRoundTrip() async {
    await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
        DispatchQueue.global().async { continuation.resume() }
    }
}
