import Testing
@testable import SerialLoop

/// The one sweep policy of the loop's side tables (`Dictionary.sweepWhenGrown`, System/Sweep.swift).
@Suite("Side-table sweeps")
struct SweepTests {
    @Test func aTableIsSweptWhenItReachesTwiceTheLivePlus64AndKeepsEveryLiveKey() {
        var table: [Int: Int] = [:]
        var sweeps = 0
        let isLive: (Int) -> Bool = { $0 % 25 == 0 }      // 10 of the first 250 keys
        for key in 0..<250 {
            table.sweepWhenGrown(liveCount: 10) {
                sweeps += 1
                return isLive
            }
            table[key] = key
            #expect(table.count <= 2 * 10 + 64 + 1, "key \(key): \(table.count) entries")
        }
        #expect(sweeps >= 2, "the predicate is made only when a sweep is due: \(sweeps) sweeps for 250 insertions")
        for key in stride(from: 0, to: 250, by: 25) { #expect(table[key] == key, "live key \(key) kept") }
    }

    /// In debug mode every scheduled callback's site is remembered; cancelled ones are swept, so
    /// a schedule + cancel churn keeps the table bounded by the live timers.
    @Test func debugModeTimerSitesStayBoundedUnderChurn() async throws {
        try await withLoop { loop in
            loop.debug = LoopDebugOptions(sink: { _ in })
            let kept = (0..<10).map { _ in loop.schedule(after: .seconds(60)) {} }
            for _ in 0..<2_000 { loop.schedule(after: .seconds(60)) {}.cancel() }
            #expect(loop.observation.timerSites.count <= 2 * loop.timers.count + 64 + 1, "\(loop.observation.timerSites.count) sites for \(loop.timers.count) timers")
            for callback in kept { callback.cancel() }
            loop.debug = nil
        }
    }
}
