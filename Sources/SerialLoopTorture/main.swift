// A randomized torture test of SerialLoop's public surface (issue 9).
//
// Each sequence runs one loop (real or virtual time) on a thread of its own and throws random
// operations at it from the loop's own tasks, from foreign tasks (the default executor) and from
// this driver: sleeps of every kind and extreme durations, cancellation, scheduled callbacks and
// their cancellation, futures completed from any thread, `readable`/`writable` on socketpairs and
// pipes, `loop.close`/`deregister`, plain `close(2)` and reuse of the number, `gather`, `stop()`
// then `run()` again, stepping a test loop, and shutdown from another thread with work in flight.
//
// After each sequence: every task ended, and with an allowed outcome; on a live loop, nothing is
// left behind (no timer, no descriptor waiter, no future awaiter). A watchdog turns a hang into a
// failure that prints the seed and the sequence, so any failure can be replayed:
//
//   SerialLoopTorture [--sequences N] [--seed S] [--first I] [--steps K] [--watchdog SECONDS]
//
// Sequence i uses seed S ^ i (mixed): `--seed S --first i --sequences 1` replays it alone.
import SerialLoop
import Synchronization
@preconcurrency import Glibc

// MARK: Options

struct Options {
    var sequences = 1_000
    var seed = UInt64.random(in: 1...UInt64.max)
    var first = 0
    var steps = 40
    var watchdogSeconds = 20
    var verbose = false

    init(arguments: [String]) {
        var iterator = arguments.dropFirst().makeIterator()
        while let argument = iterator.next() {
            let value = { iterator.next().flatMap { UInt64($0) } ?? { fatalError("\(argument) needs a number") }() }
            switch argument {
            case "--sequences": sequences = Int(value())
            case "--seed": seed = value()
            case "--first": first = Int(value())
            case "--steps": steps = Int(value())
            case "--watchdog": watchdogSeconds = Int(value())
            case "--verbose": verbose = true
            default: fatalError("unknown option \(argument)")
            }
        }
    }
}

/// The torture test's stream (SplitMix64, the package's one seeded generator) and its helpers.
struct Random: RandomNumberGenerator {
    private var generator: SplitMix64
    init(state: UInt64) { generator = SplitMix64(seed: state) }
    mutating func next() -> UInt64 { generator.next() }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
    mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }
}

// MARK: The loop under test

/// A loop on its own thread that `stop()` can interrupt and `run()` resumes, until shutdown.
final class LoopHost: @unchecked Sendable {
    let loop: Loop
    private let thread: pthread_t
    private let finish = Flag()

    init(virtual: Bool) {
        let handoff = Handoff<Loop>()
        let finish = self.finish
        thread = startThread {
            let loop: Loop
            if virtual {
                let testLoop = try! TestLoop()
                // Soundness, not timing, is under test: no real-time waits before jumps.
                testLoop.ioQuietPeriod = .zero
                testLoop.stallTimeout = .milliseconds(100)
                loop = testLoop
            } else {
                loop = try! Loop()
            }
            handoff.put(loop)
            while !finish.isSet { loop.run() }
            loop.shutdown()
        }
        loop = handoff.take()
    }

    /// Shuts the loop down from this (another) thread and joins it. Idempotent.
    func shutdown() {
        guard finish.set() else { return }
        loop.stop()
        pthread_join(thread, nil)
    }

}

final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .acquiring) }
    /// Sets the flag; returns whether this call set it.
    func set() -> Bool { !value.exchange(true, ordering: .acquiringAndReleasing) }
    func clear() { value.store(false, ordering: .releasing) }
}

final class Handoff<T: Sendable>: Sendable {
    private let lock = Mutex<T?>(nil)
    func put(_ value: T) { lock.withLock { $0 = value } }
    func take() -> T {
        while true {
            if let value = lock.withLock({ $0 }) { return value }
            sched_yield()
        }
    }
}

func startThread(_ body: @escaping @Sendable () -> Void) -> pthread_t {
    final class Box { let body: @Sendable () -> Void; init(_ body: @escaping @Sendable () -> Void) { self.body = body } }
    var thread = pthread_t()
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    let result = pthread_create(&thread, nil, { raw in
        Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
        return nil
    }, box)
    precondition(result == 0)
    return thread
}

/// A non-blocking pipe.
func makePipe(_ fds: inout [Int32]) -> Bool {
    guard pipe(&fds) == 0 else { return false }
    for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
    return true
}

// MARK: One sequence

/// Why a task ended, as far as the torture cares.
enum Ending: Sendable {
    case success
    case cancelled
    case shutDown
    case badDescriptor
    case other(String)
}

func classify(_ error: (any Error)?) -> Ending {
    guard let error else { return .success }
    if error is CancellationError { return .cancelled }
    if let error = error as? LoopError {
        switch error.kind {
        case .shutDown: return .shutDown
        case .descriptorClosed, .system(errno: EBADF): return .badDescriptor
        default: break
        }
    }
    return .other("\(error)")
}

struct Failure: Error, CustomStringConvertible {
    let description: String
}

/// Runs one random sequence. Throws a `Failure` describing what went wrong.
func runSequence(seed: UInt64, steps: Int, log: (String) -> Void) async throws {
    var random = Random(state: seed)
    let virtual = random.chance(40)
    let host = LoopHost(virtual: virtual)
    let loop = host.loop
    var tasks: [(name: String, task: Task<Ending, Never>)] = []
    var callbacks: [ScheduledCallback] = []
    var futures: [LoopFuture<Int>] = []
    var descriptors: [(read: Int32, write: Int32)] = []
    var isShutDown = false
    let advancing = Flag()
    let durations: [Duration] = [.zero, .nanoseconds(1), .microseconds(100), .milliseconds(1), .milliseconds(3),
                                 .seconds(-1), .seconds(Int64.max), .seconds(Int64.min)]

    func spawn(_ name: String, onLoop: Bool, _ body: @escaping @Sendable () async throws -> Void) {
        let wrapped: @Sendable () async -> Ending = {
            do { try await body(); return .success } catch { return classify(error) }
        }
        tasks.append((name, onLoop ? Task(executorPreference: loop, operation: wrapped) : Task(operation: wrapped)))
    }

    for step in 0..<steps {
        phase.withLock { $0 = "step \(step)" }
        let action = random.below(16)
        let onLoop = random.chance(60)
        log("step \(step): action \(action) onLoop \(onLoop)")
        switch action {
        case 0, 1:
            let duration = random.pick(durations)
            spawn("loop.sleep(for: \(duration))", onLoop: onLoop) { try await loop.sleep(for: duration) }
        case 2:
            let duration = random.pick([Duration.zero, .microseconds(100), .milliseconds(2)])
            spawn("Task.sleep(for: \(duration))", onLoop: true) { try await Task.sleep(for: duration) }
        case 3:
            if let victim = tasks.randomElement(using: &random) { victim.task.cancel() }
        case 4:
            let delay = random.pick([Duration.zero, .microseconds(50), .milliseconds(2)])
            let handles = Mutex<[ScheduledCallback]>([])
            loop.execute { handles.withLock { $0.append(loop.schedule(after: delay) {}) } }
            if !isShutDown { spawn("schedule", onLoop: false) { try await loop.sleep(for: .zero) } }
            callbacks += handles.withLock { $0 }
        case 5:
            if let callback = callbacks.randomElement(using: &random) { callback.cancel() }
        case 6:
            futures.append(loop.makeFuture(of: Int.self))
        case 7:
            if let future = futures.randomElement(using: &random) {
                spawn("future.value(\(onLoop ? "loop" : "foreign") f\(futures.firstIndex { $0 === future }!))", onLoop: onLoop) { _ = try await future.value }
            }
        case 8:
            if let future = futures.randomElement(using: &random) {
                switch random.below(3) {
                case 0: future.succeed(1)
                case 1: future.fail(CancellationError())
                default: future.cancel()
                }
            }
        case 9:
            var fds: [Int32] = [0, 0]
            if random.chance(50) {
                guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds) == 0 else { break }
            } else {
                guard makePipe(&fds) else { break }
            }
            descriptors.append((fds[0], fds[1]))
        case 10:
            if let pair = descriptors.randomElement(using: &random) {
                let fd = random.chance(50) ? pair.read : pair.write
                let readable = random.chance(60)
                spawn("\(readable ? "readable" : "writable")(\(fd))", onLoop: onLoop) {
                    if readable { try await loop.readable(fd) } else { try await loop.writable(fd) }
                }
            }
        case 11:
            if let pair = descriptors.randomElement(using: &random) {
                var byte: UInt8 = 1
                _ = write(pair.write, &byte, 1)
            }
        case 12:
            // Close a pair: through the loop (wakes its waiters), or behind its back (the loop
            // finds out), possibly reusing the numbers at once.
            if !descriptors.isEmpty {
                let index = random.below(descriptors.count)
                let pair = descriptors.remove(at: index)
                if random.chance(50) || isShutDown {
                    loop.execute { try? loop.close(pair.read); try? loop.close(pair.write) }
                    if isShutDown { close(pair.read); close(pair.write) }
                } else {
                    close(pair.read); close(pair.write)
                    if random.chance(50) {
                        var fds: [Int32] = [0, 0]
                        if makePipe(&fds) { descriptors.append((fds[0], fds[1])) }
                    }
                }
            }
        case 13:
            let count = random.below(4)
            spawn("gather(\(count))", onLoop: onLoop) {
                _ = try await loop.gather((0..<count).map { index in { @Sendable in try await loop.sleep(for: .microseconds(index * 10)); return index } })
            }
        case 14:
            if random.chance(30) {
                loop.stop()                                   // run() returns, the host runs again
            } else if let testLoop = loop as? TestLoop {
                // One advance at a time (a second concurrent one is a programmer error that traps).
                let advance = random.chance(50) && advancing.set()
                spawn(advance ? "advance(by:)" : "runUntilIdle()", onLoop: true) {
                    if advance {
                        await testLoop.advance(by: .milliseconds(1))
                        advancing.clear()
                    } else {
                        await testLoop.runUntilIdle()
                    }
                }
            }
        default:
            if random.chance(25) && !isShutDown {
                log("shutdown from another thread with \(tasks.count) tasks")
                host.shutdown()
                isShutDown = true
            }
        }
        if random.chance(30) { await Task.yield() }
    }

    // Wind down: on a live loop cancel what may wait forever, then everything must end.
    if !isShutDown {
        for callback in callbacks { callback.cancel() }
        for (_, task) in tasks { task.cancel() }
        for pair in descriptors { loop.execute { try? loop.close(pair.read); try? loop.close(pair.write) } }
        descriptors = []
    }
    for (name, task) in tasks {
        phase.withLock { $0 = "awaiting task \(name) (virtual: \(virtual), shut down: \(isShutDown))" }
        switch await task.value {
        case .success, .cancelled, .shutDown, .badDescriptor: break
        case .other(let error): throw Failure(description: "task \(name) ended with an unexpected error: \(error)")
        }
        if isShutDown, case .success = await task.value {} // allowed: it finished before shutdown
    }
    phase.withLock { $0 = "checking leftovers" }
    if !isShutDown {
        // Dead Task.sleep jobs stay until their deadline (the runtime cannot withdraw them):
        // let every short deadline pass, then nothing may be left.
        try await loop.sleep(for: .milliseconds(5))
        if loop.isOnLoopThread { throw Failure(description: "the driver runs on the loop thread (virtual: \(virtual))") }
        let state = loop.makeFuture(of: [Int].self)
        loop.execute { state.succeed([loop.pendingTimerCount, loop.pendingWaiterCount, loop.leftovers().futureAwaiters]) }
        let counts = try await state.value
        if counts != [0, 0, 0] {
            var endings: [String] = []
            for (name, task) in tasks where name.hasPrefix("future") { endings.append("\(name): \(await task.value)") }
            throw Failure(description: "leftovers on a live loop after every task ended: timers \(counts[0]), descriptor waiters \(counts[1]), future awaiters \(counts[2]); \(endings)")
        }
    }
    for pair in descriptors { close(pair.read); close(pair.write) }
    host.shutdown()
    // After shutdown, every API fails at once.
    do {
        try await loop.sleep(for: .seconds(1))
        throw Failure(description: "sleep after shutdown returned")
    } catch let error as LoopError where error.isLoopShutDown {}
}

// MARK: Driver

let options = Options(arguments: CommandLine.arguments)
/// Sequences finished so far; the watchdog fails the run when it stops moving.
let progress = Atomic<Int>(0)
let current = Atomic<Int>(-1)
/// What the driver is doing, for the watchdog's report.
let phase = Mutex<String>("")

func mix(_ seed: UInt64, _ index: Int) -> UInt64 {
    var random = Random(state: seed ^ (UInt64(index) &* 0xD6E8_FEB8_6659_FD93))
    return random.next()
}

print("SerialLoopTorture: \(options.sequences) sequences of \(options.steps) steps, seed \(options.seed) (replay: --seed \(options.seed) --first I --sequences 1)")
fflush(stdout)
let watchdogSeconds = options.watchdogSeconds
let seedForWatchdog = options.seed
_ = startThread {
    var last = -1
    while true {
        var request = timespec(tv_sec: watchdogSeconds, tv_nsec: 0)
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 { request = remaining }
        let now = progress.load(ordering: .relaxed)
        if now == last {
            let index = current.load(ordering: .relaxed)
            fputs("SerialLoopTorture: HANG — sequence \(index) made no progress for \(watchdogSeconds) s while \(phase.withLock { $0 }); replay with --seed \(seedForWatchdog) --first \(index) --sequences 1 --verbose\n", stderr)
            abort()                                   // the runtime's backtracer prints every thread
        }
        last = now
    }
}

let started = ContinuousClock.now
for index in options.first..<(options.first + options.sequences) {
    current.store(index, ordering: .relaxed)
    let verbose = options.verbose
    do {
        try await runSequence(seed: mix(options.seed, index), steps: options.steps) { line in
            if verbose { print("  [\(index)] \(line)") }
        }
    } catch {
        fputs("SerialLoopTorture: FAILED sequence \(index): \(error); replay with --seed \(options.seed) --first \(index) --sequences 1 --verbose\n", stderr)
        exit(1)
    }
    progress.add(1, ordering: .relaxed)
    if (index + 1) % 1000 == 0 { print("  \(index + 1 - options.first) sequences ok"); fflush(stdout) }
}
print("SerialLoopTorture: \(options.sequences) sequences passed in \(ContinuousClock.now - started)")
