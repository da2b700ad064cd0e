@preconcurrency import Glibc
import Testing
import SerialLoop

// The process-wide modes: a loop on the main thread serving the main actor, and the whole program
// on one loop (`Loop.runMain`). Neither can be tried inside this process — under Swift Testing the
// main thread sits in `dispatch_main()` (it never runs a loop), and an executor install cannot be
// undone — so each scenario runs in a fixture program (Sources/SerialLoopModes*), spawned here as a
// child process under a watchdog: a hang fails the test after `ChildRun.timeout`, never the suite.
// The fixtures are dependencies of this test target, so building the tests builds them; they sit
// next to the test bundle.

// Serialized: one child at a time, so that a dozen debug programs starting at once do not starve
// the rest of the suite on a 2-core machine.
@Suite("Process-wide modes (child processes)", .serialized)
struct ModeTests {
    // MARK: Main thread = main actor

    @Test(arguments: [
        Fixture(program: "SerialLoopModes", scenario: "top-level-with-loop"),
        Fixture(program: "SerialLoopModesMain", scenario: "main-thread"),
    ])
    func syncWithLoopOnTheMainThreadServesTheMainActorAndTheMainQueue(_ fixture: Fixture) async throws {
        let run = try await fixture.run()
        run.expectCleanExit()
        run.expectLines([
            "after Task.sleep: main-thread",
            "@MainActor function: main-thread",
            "DispatchQueue.main.async: main-thread",
            "MainActor.run: main-thread",
            "MainActor.run from Task.detached: main-thread",
            "MainActor.assumeIsolated in loop.execute: main-thread",
            "withLoop returned 42: ok",
        ])
    }

    @Test func runUntilAndRunOnTheMainThreadServeTheMainActor() async throws {
        let run = try await Fixture(program: "SerialLoopModes", scenario: "top-level-run-until").run()
        run.expectCleanExit()
        run.expectLines([
            "run(until:) → @MainActor: main-thread",
            "DispatchQueue.main.async under loop.run(): main-thread",
            "loop.run(): returned",
        ])
    }

    /// A loop on the main thread that never idles still serves the main queue (its busy-tick polls
    /// of the main-queue descriptor are spaced, not skipped).
    @Test func busyLoopOnTheMainThreadStillServesTheMainQueue() async throws {
        let run = try await Fixture(program: "SerialLoopModes", scenario: "busy-loop-serves-main-queue").run()
        run.expectCleanExit()
        run.expectLines(["main-queue block ran while the loop was busy, within 600 yields: ok"])
    }

    /// Main-queue work is loop work on a test loop: it all runs before the clock jumps to the
    /// sleeper's deadline, and two runs give the same trace.
    @Test func testLoopOnTheMainThreadRunsMainQueueWorkBeforeTheClockJumps() async throws {
        let run = try await Fixture(program: "SerialLoopModes", scenario: "test-loop-main-actor").run()
        run.expectCleanExit()
        run.expectLines([
            "trace: slept an hour @3600000ms",
            "trace: main actor 0 @3600000ms",
            "trace: main queue 0 @3600000ms",
            "trace: main actor 1 @3600000ms",
            "trace: main queue 1 @3600000ms",
            "trace: main actor 2 @3600000ms",
            "trace: main queue 2 @3600000ms",
            "trace: sleeper woke @3601000ms",
            "same trace twice: ok",
            "an hour in under 5 s of wall time: ok",
        ])
    }

    /// A sync test loop on another thread awaits the main actor while the main thread is blocked:
    /// the loop declares a stall that names the main actor, and the program traps with it.
    @Test func stalledTestLoopOffTheMainThreadSaysItMayWaitForTheMainActor() async throws {
        let run = try await Fixture(program: "SerialLoopModes", scenario: "stall-off-main").run()
        #expect(!run.timedOut)
        #expect(run.exitCode != 0)
        #expect(run.stderr.contains("the test loop stalled"))
        #expect(run.stderr.contains("a task may be waiting for the main actor"))
    }

    // MARK: The whole program on one thread

    @Test(arguments: [
        Fixture(program: "SerialLoopModes", scenario: "whole-program"),
        Fixture(program: "SerialLoopModesMain", scenario: "whole-program"),
        Fixture(program: "SerialLoopModesAsyncMain", scenario: "whole-program"),
    ])
    func wholeProgramRunsEveryKindOfTaskOnTheMainThread(_ fixture: Fixture) async throws {
        let run = try await fixture.run()
        run.expectCleanExit()
        run.expectLines(Self.wholeProgramLines(stamps: nil))
    }

    /// On virtual time the whole program sleeps hours in milliseconds, and runs the same way twice.
    @Test(arguments: [
        Fixture(program: "SerialLoopModes", scenario: "whole-program-virtual"),
        Fixture(program: "SerialLoopModesAsyncMain", scenario: "whole-program-virtual"),
    ])
    func wholeProgramOnVirtualTimeGivesTheSameTraceTwice(_ fixture: Fixture) async throws {
        let first = try await fixture.run()
        let second = try await fixture.run()
        first.expectCleanExit()
        second.expectCleanExit()
        first.expectLines(Self.wholeProgramLines(stamps: ["Task {} ran": "@0ms", "Task.detached {} woke": "@3600000ms", "detached sleepers woke in order": "@14400000ms"]))
        #expect(first.stdout == second.stdout)
    }

    /// A plain `Task {}` and a `Task.detached {}` still sleeping when the body returns are
    /// reported, as `withTestLoop` reports them (they are no loop task's wake-up hop to check).
    @Test func runMainOnVirtualTimeReportsSleepingUnstructuredTasks() async throws {
        let run = try await Fixture(program: "SerialLoopModes", scenario: "run-main-virtual-leftovers").run()
        run.expectCleanExit()
        run.expectLines(["leftover Task.sleeps: 2"])
        #expect(run.stdout.contains("2 Task.sleep(s) waking at 7200.0 seconds, 7300.0 seconds"), "stdout:\n\(run.stdout)")
    }

    /// A program that does not link SerialLoopVirtualTime defines neither interposer, and a test
    /// loop there is an error that says what to link (not a silently real clock).
    @Test func virtualTimeWithoutTheOptInSaysWhatToLink() async throws {
        let run = try await Fixture(program: "SerialLoopModesMain", scenario: "virtual-time-not-linked").run()
        run.expectCleanExit()
        for entry in ["withTestLoop threw", "runMain(time: .virtual) threw"] {
            let line = run.stdout.split(separator: "\n").first { $0.hasPrefix(entry) }
            #expect(line?.contains("[virtualTimeNotLinked]") == true, "the kind, by a switch: \(String(describing: line))")
            #expect(line?.contains("virtual time is not linked into this program") == true, "stdout:\n\(run.stdout)")
            #expect(line?.contains(".product(name: \"SerialLoopTesting\", package: \"SerialLoop\")") == true)
            #expect(line?.contains("SerialLoopVirtualTime") == true)
        }
    }

    @Test func installingTwiceIsAClearError() async throws {
        let run = try await Fixture(program: "SerialLoopModes", scenario: "install-twice").run()
        #expect(!run.timedOut)
        #expect(run.exitCode != 0)
        #expect(run.stdout.contains("first install: done"))
        #expect(!run.stdout.contains("second install"))
        #expect(run.stderr.contains("Loop.runMain called twice"))
    }

    @Test func installingOffTheMainThreadIsAClearError() async throws {
        let run = try await Fixture(program: "SerialLoopModes", scenario: "install-off-main").run()
        #expect(!run.timedOut)
        #expect(run.exitCode != 0)
        #expect(run.stderr.contains("Loop.runMain must be called on the main thread"))
    }

    /// An async main that awaits before calling runMain is no longer on the main thread.
    @Test func runMainAfterAnAwaitInAsyncMainIsAClearError() async throws {
        let run = try await Fixture(program: "SerialLoopModesAsyncMain", scenario: "after-an-await").run()
        #expect(!run.timedOut)
        #expect(run.exitCode != 0)
        #expect(run.stderr.contains("Loop.runMain must be called on the main thread"))
    }

    static func wholeProgramLines(stamps: [String: String]?) -> [String] {
        func stamped(_ name: String) -> String {
            guard let stamp = stamps?[name] else { return "" }
            return " " + stamp
        }
        let ownThread = stamps != nil ? [] : [
            "a program's own thread is another thread: ok",
            "Task {} from a program's own thread: main-thread",
        ]
        return [
            "loop is the program's executor: ok",
            "body: main-thread",
            "Task {} ran: yes\(stamped("Task {} ran"))",
            "Task {}: main-thread",
            "Task.detached {} before sleep: main-thread",
            "Task.detached {} woke: yes\(stamped("Task.detached {} woke"))",
            "@MainActor from a detached task: main-thread",
            "Task.sleep in Task.detached {}: main-thread",
            "default actor (from a detached task): main-thread",
            "default actor count: ok",
            "@MainActor function: main-thread",
            "DispatchQueue.main.async: main-thread",
            "MainActor.assumeIsolated: main-thread",
        ] + ownThread + [
            "detached sleepers woke in order: [1, 2, 3]\(stamped("detached sleepers woke in order"))",
            "sleepers woke in deadline order: ok",
            "runMain returned the body's value: ok",
        ]
    }
}

/// A fixture program and the scenario to run.
struct Fixture: Sendable, CustomTestStringConvertible {
    let program: String
    let scenario: String

    var testDescription: String { "\(program) \(scenario)" }

    /// Runs the fixture in a child process, on a thread of its own (the wait blocks; the
    /// cooperative pool has two threads here).
    func run() async throws -> ChildRun {
        let path = try Self.locate(program)
        let arguments = [path, scenario]
        return await withCheckedContinuation { continuation in
            _ = startDetachedThread {
                continuation.resume(returning: ChildRun.spawn(arguments))
            }
        }
    }

    /// The fixtures are built next to the test bundle (`.build/<triple>/debug`).
    static func locate(_ program: String) throws -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { throw FixtureError(message: "readlink(/proc/self/exe) failed: errno \(errno)") }
        let exe = String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let directory = exe[..<(exe.lastIndex(of: "/") ?? exe.endIndex)]
        let path = "\(directory)/\(program)"
        guard access(path, X_OK) == 0 else {
            throw FixtureError(message: "fixture \(path) is missing: it is a dependency of the test target and is built with the tests (swift build --build-tests)")
        }
        return path
    }
}

struct FixtureError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// What a child process printed and how it ended.
struct ChildRun: Sendable {
    /// The watchdog: a child still running after this is killed and the test fails.
    static let timeoutMilliseconds: Int32 = 10_000 * Int32(watchdogScale)

    var stdout = ""
    var stderr = ""
    /// The exit status, or 128 + the signal that ended it.
    var exitCode: Int32 = -1
    var timedOut = false

    func expectCleanExit(sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(!timedOut, "the child was still running after \(Self.timeoutMilliseconds) ms and was killed", sourceLocation: sourceLocation)
        #expect(exitCode == 0, "exit code \(exitCode); stderr:\n\(stderr)\nstdout:\n\(stdout)", sourceLocation: sourceLocation)
        #expect(!stdout.contains("OTHER-THREAD"), "a step ran off the main thread:\n\(stdout)", sourceLocation: sourceLocation)
        #expect(!stdout.contains("FAILED"), "a check failed:\n\(stdout)", sourceLocation: sourceLocation)
    }

    /// Every expected line appears in stdout, in this order.
    func expectLines(_ expected: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        let lines = stdout.split(separator: "\n").map(String.init)
        var index = lines.startIndex
        for line in expected {
            guard let found = lines[index...].firstIndex(of: line) else {
                Issue.record("missing line (or out of order): \(line)\nstdout:\n\(stdout)\nstderr:\n\(stderr)", sourceLocation: sourceLocation)
                return
            }
            index = found + 1
        }
    }

    /// Spawns `arguments[0]`, collects its stdout and stderr, and kills it at the deadline.
    /// `extraEnvironment` ("NAME=value" entries) is added to this process's environment.
    static func spawn(_ arguments: [String], extraEnvironment: [String] = []) -> ChildRun {
        var run = ChildRun()
        var outPipe: [Int32] = [0, 0]
        var errPipe: [Int32] = [0, 0]
        // Close-on-exec, so that children spawned concurrently by other tests do not inherit them
        // (and hold them open). Glibc's module does not export pipe2; the window is tiny.
        guard pipe(&outPipe) == 0, pipe(&errPipe) == 0 else {
            run.stderr = "pipe failed: errno \(errno)"
            return run
        }
        for fd in outPipe + errPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        defer { posix_spawn_file_actions_destroy(&actions) }
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        // No crash backtracer in children: a trap's message is printed before it runs, and under
        // ThreadSanitizer its fork fails a sanitizer CHECK and hangs the child until the watchdog.
        var environment: [UnsafeMutablePointer<CChar>?] = (["SWIFT_BACKTRACE=enable=no"] + extraEnvironment).map { strdup($0) }
        var inherited = environ
        while let entry = inherited.pointee { environment.append(strdup(entry)); inherited += 1 }
        environment.append(nil)
        defer { environment.forEach { free($0) } }
        let spawned = posix_spawn(&pid, arguments[0], &actions, nil, argv, environment)
        close(outPipe[1])
        close(errPipe[1])
        defer { close(outPipe[0]); close(errPipe[0]) }
        guard spawned == 0 else {
            run.stderr = "posix_spawn(\(arguments[0])) failed: errno \(spawned)"
            return run
        }

        var out: [UInt8] = []
        var err: [UInt8] = []
        var open = 2
        let deadline = monotonicMilliseconds() + Int64(timeoutMilliseconds)
        var buffer = [UInt8](repeating: 0, count: 65536)
        var fds = [pollfd(fd: outPipe[0], events: Int16(POLLIN), revents: 0),
                   pollfd(fd: errPipe[0], events: Int16(POLLIN), revents: 0)]
        while open > 0 {
            let remaining = deadline - monotonicMilliseconds()
            if remaining <= 0 {
                run.timedOut = true
                kill(pid, SIGKILL)
                break
            }
            let ready = poll(&fds, 2, Int32(remaining))
            if ready < 0 && errno == EINTR { continue }
            for index in 0..<2 where fds[index].fd >= 0 && fds[index].revents != 0 {
                let count = read(fds[index].fd, &buffer, buffer.count)
                if count > 0 {
                    if index == 0 { out += buffer[..<count] } else { err += buffer[..<count] }
                } else if count == 0 || (errno != EINTR && errno != EAGAIN) {
                    fds[index].fd = -1
                    open -= 1
                }
            }
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let signal = status & 0x7f
        run.exitCode = signal == 0 ? (status >> 8) & 0xff : 128 + signal
        run.stdout = String(decoding: out, as: UTF8.self)
        run.stderr = String(decoding: err, as: UTF8.self)
        return run
    }
}

private func monotonicMilliseconds() -> Int64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
}

/// A detached POSIX thread running `body`.
func startDetachedThread(_ body: @escaping @Sendable () -> Void) -> pthread_t {
    final class Box { let body: @Sendable () -> Void; init(_ body: @escaping @Sendable () -> Void) { self.body = body } }
    var thread = pthread_t()
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    let result = pthread_create(&thread, nil, { raw in
        Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
        return nil
    }, box)
    precondition(result == 0, "pthread_create failed: \(result)")
    pthread_detach(thread)
    return thread
}
