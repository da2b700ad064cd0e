@preconcurrency import Glibc
import Testing
@testable import SerialLoop
import SerialLoopNet

/// Debug mode names the task of a slow job (issue 21, item 6) when the task called into the loop on
/// the loop's thread, in the slow job or before it (see "Task names" in LoopDebug.swift). These
/// tests pin exactly that, for tasks whose first await is an actor hop or a plain `Task.sleep`: the
/// runtime makes those moves without calling the loop, so such a task is named once it calls in
/// (here: a `loop.sleep` at the end of the slow job), and reported as just `slow task` if it blocks
/// and ends without calling in. Each task blocks the loop thread for `blockFor` in the job after
/// its first await.
@Suite("Debug mode names slow tasks")
struct DebugTaskNameTests {
    static let threshold = Duration.milliseconds(20)
    static let blockFor: Int64 = 40_000_000            // ns, real time: over the threshold

    @Test func aTaskWhoseFirstAwaitIsTaskSleepIsNamedOnceItCallsTheLoop() async throws {
        let (calls, silent) = try await slowTaskNames { loop in
            await Task(name: "sleeps first, then calls", executorPreference: loop) {
                try? await Task.sleep(for: .milliseconds(1))
                blockTheLoopThread()
                try? await loop.sleep(for: .zero)
            }.value
        } and: { loop in
            await Task(name: "sleeps first, silent", executorPreference: loop) {
                try? await Task.sleep(for: .milliseconds(1))
                blockTheLoopThread()
            }.value
        }
        #expect(calls.contains("sleeps first, then calls"), "\(calls)")
        #expect(silent.contains(nil) && silent.allSatisfy { $0 == nil }, "reported as just `slow task`: \(silent)")
    }

    @Test func aTaskWhoseFirstAwaitIsADefaultActorHopIsNamedOnceItCallsTheLoop() async throws {
        let counter = TouchCounter()
        let (calls, silent) = try await slowTaskNames { loop in
            await Task(name: "actor first, then calls", executorPreference: loop) {
                await counter.touch()
                blockTheLoopThread()
                try? await loop.sleep(for: .zero)
            }.value
        } and: { loop in
            await Task(name: "actor first, silent", executorPreference: loop) {
                await counter.touch()
                blockTheLoopThread()
            }.value
        }
        #expect(calls.contains("actor first, then calls"), "\(calls)")
        #expect(silent.contains(nil) && silent.allSatisfy { $0 == nil }, "reported as just `slow task`: \(silent)")
    }

    @Test func aTaskWhoseFirstAwaitIsAMainActorHopIsNamedOnceItCallsTheLoop() async throws {
        let (calls, silent) = try await slowTaskNames { loop in
            await Task(name: "main actor first, then calls", executorPreference: loop) {
                await MainActor.run { _ = 1 }
                blockTheLoopThread()
                try? await loop.sleep(for: .zero)
            }.value
        } and: { loop in
            await Task(name: "main actor first, silent", executorPreference: loop) {
                await MainActor.run { _ = 1 }
                blockTheLoopThread()
            }.value
        }
        #expect(calls.contains("main actor first, then calls"), "\(calls)")
        #expect(silent.contains(nil) && silent.allSatisfy { $0 == nil }, "reported as just `slow task`: \(silent)")
    }

    /// A task that made any call into the loop in an earlier job stays known for its later jobs.
    @Test func aTaskThatCalledTheLoopBeforeIsNamedInALaterSilentSlowJob() async throws {
        let (names, _) = try await slowTaskNames { loop in
            await Task(name: "called before", executorPreference: loop) {
                try? await loop.sleep(for: .zero)
                try? await Task.sleep(for: .milliseconds(1))
                blockTheLoopThread()
            }.value
        } and: { _ in }
        #expect(names.contains("called before"), "\(names)")
    }

    /// Runs each body on a loop of its own in debug mode; the task names of its slow task jobs.
    private func slowTaskNames(
        _ first: @escaping @Sendable (Loop) async -> Void, and second: @escaping @Sendable (Loop) async -> Void
    ) async throws -> ([String?], [String?]) {
        (try await slowTaskNames(first), try await slowTaskNames(second))
    }

    private func slowTaskNames(_ body: @escaping @Sendable (Loop) async -> Void) async throws -> [String?] {
        let outcome = await withWatchdog("a slow named task") {
            try await withLoop { loop in
                let reports = Lock<[LoopDebugReport]>([])
                loop.debug = LoopDebugOptions(slowJobThreshold: Self.threshold, lagThreshold: .seconds(3600),
                                              maximumReportsPerSecond: 1000,
                                              sink: { report in reports.withLock { $0.append(report) } })
                await body(loop)
                loop.debug = nil
                return reports.withLock { $0 }.filter { $0.kind == .slowJob && $0.job == .task }
            }
        }
        return try #require(try outcome?.get()).map(\.taskName)
    }
}

private actor TouchCounter {
    var count = 0
    func touch() { count += 1 }
}

/// The README's example-app case: a request task whose first await is a socket read that is served
/// at once (the request had arrived), and that then blocks the loop in the same job.
@Suite("Debug mode names slow socket tasks")
struct DebugSocketTaskNameTests {
    @Test func aTaskWhoseOnlyLoopCallIsAnImmediateSocketReadIsNamed() async throws {
        let outcome = await withWatchdog("a slow named socket task") {
            try await withLoop { loop in
                let reports = Lock<[LoopDebugReport]>([])
                loop.debug = LoopDebugOptions(slowJobThreshold: DebugTaskNameTests.threshold, lagThreshold: .seconds(3600),
                                              maximumReportsPerSecond: 1000,
                                              sink: { report in reports.withLock { $0.append(report) } })
                let listener = try TCPListener(on: loop)
                defer { try? listener.close() }
                let client = try await TCPConnection.connect(to: listener.address, on: loop)
                defer { try? client.close() }
                let server = try await listener.accept()
                try await client.write("GET /block/40 HTTP/1.1\r\n\r\n")
                await Task(name: "connection 2", executorPreference: loop) {
                    defer { try? server.close() }
                    _ = try? await server.read(upToCount: 100)
                    blockTheLoopThread()
                }.value
                loop.debug = nil
                return reports.withLock { $0 }.filter { $0.kind == .slowJob && ($0.taskName != nil || $0.job == .task) }
            }
        }
        let reports = try #require(try outcome?.get())
        #expect(reports.map(\.taskName) == ["connection 2"])
        #expect(reports.first?.description.hasPrefix("slow task \"connection 2\" ran ") == true, "as in the README: \(reports.first?.description ?? "")")
    }
}

private func blockTheLoopThread() {
    let end = monotonicNanoseconds() + DebugTaskNameTests.blockFor
    while monotonicNanoseconds() < end {}
}
