@_spi(ExperimentalCustomExecutors) import _Concurrency
@preconcurrency import Glibc
import CSerialLoopShims
import Synchronization

// The whole program on one thread
//
// `Loop.runMain { … }` makes one loop, on the main thread, both the program's *main executor*
// (what `@MainActor` code and `MainActor.run` run on) and its *default executor* (what plain
// `Task {}`, `Task.detached {}`, default actors and nonisolated async code with no preference run
// on), then runs the body on it — asyncio's and Node's model: everything async is on one thread.
//
// Mechanism, chosen by probing the Swift 6.3.1 runtime on Linux:
// - `_createExecutors(factory:)` (the custom-executors SPI, `swift_createExecutors`) called by hand
//   from a sync context is honoured, even after the runtime started: from then on
//   `MainActor.executor` and `Task.defaultExecutor` are what the factory returns, and the runtime
//   sends every main-actor and global enqueue to them (verified: `Task {}`, `Task.detached`, default
//   actors, `MainActor.run`, task groups, `Task.sleep` through the loop's `SchedulingExecutor`).
// - `typealias DefaultExecutorFactory = F` in the `@main` type is what the proposal intends, but
//   6.3.1 ignores it silently unless the target passes `-Xfrontend -disable-availability-checking`
//   and `main` is async (then the runtime also calls `mainExecutor.run()` after the first
//   suspension of `main`). An unsafe flag in every app is a poor default, so it is not the
//   documented way; `runMain` works with a sync `main`, top-level code, and as the first statement
//   of an async `main` (whose first part runs synchronously on the main thread, SE-0343).
// - The runtime's C hooks (`swift_task_enqueueMainExecutor_hook`, …) are not all consulted by
//   6.3.1's Swift-implemented executors (the delayed-enqueue hooks are not), so they are not used.
//
// The loop needs nothing new for the two roles: `enqueue` is already thread-safe (other threads —
// the program's own, Dispatch's — land in the locked inbox), and every job, task or actor, runs
// `on:` the loop as task executor, which also makes it the current task executor of a plain
// `Task {}`: its `Task.sleep` reaches the loop's timers (and obeys virtual time on a test loop).
// The hot path of ordinary loops is untouched; only `capturesEscapingWork` is off, since nothing
// escapes to a global executor any more.
//
// What still escapes: threads the program creates itself (their synchronous code; their `Task {}`
// and main-actor work do come to the loop), Dispatch queues other than the main queue, blocking
// calls (they block the whole program), and C libraries' own threads.

/// The loop installed as the program's executors, at most one per process, forever.
private let installedLoop = Mutex<Loop?>(nil)

/// What `_createExecutors` asks for: the installed loop, in both roles.
enum WholeProgramExecutors: ExecutorFactory {
    static var mainExecutor: any MainExecutor { installed() }
    static var defaultExecutor: any TaskExecutor { installed() }

    private static func installed() -> Loop {
        guard let loop = installedLoop.withLock({ $0 }) else {
            misuse("SerialLoop: the executor factory was consulted before Loop.runMain installed a loop")
        }
        return loop
    }
}

/// The loop's role as the program's main executor. Its `run()`/`stop()` are the loop's own; the
/// runtime calls `run()` only on the async-main path it does not take with ``Loop/runMain(time:_:)``.
@_spi(ExperimentalCustomExecutors)
extension Loop: MainExecutor {}

extension Loop {
    /// Runs the whole program on one loop on the main thread: installs a new loop as the process's
    /// main executor and default executor, runs `body` on it until it finishes, shuts the loop down
    /// (as `withLoop` does: tasks still suspended on it are cancelled), and returns the body's value
    /// or rethrows its error.
    ///
    /// While it runs, plain `Task {}`, `Task.detached {}`, default actors, `@MainActor` code,
    /// `MainActor.run`, `DispatchQueue.main` blocks and `Task.sleep` in any of them run on the main
    /// thread, one job at a time, in FIFO order. With `time: .virtual` the loop is a ``TestLoop``: the
    /// whole program runs on virtual time (an hour of `Task.sleep` takes microseconds) and a body
    /// that ends with work pending throws ``LoopLeftoversError``, as `withTestLoop` does.
    ///
    /// Call it once, from the main thread: top-level code in `main.swift`, a sync
    /// `static func main()`, or the first statement of an `async` `main` (before any `await`).
    /// The install cannot be undone: after `runMain` returns, the program's executors are a
    /// shut-down loop, so return from `main` right after it (later async work is dropped with a
    /// warning).
    ///
    /// - Precondition: on the main thread, not inside a running loop, and not called before in
    ///   this process. (Whether tasks already ran on the default global executor cannot be
    ///   detected; start nothing async before `runMain`.)
    public static func runMain<T: Sendable>(time: TimeMode = .real, _ body: sending (Loop) async throws -> T) throws -> T {
        misuseCheck(c_serial_loop_is_main_thread(), "Loop.runMain must be called on the main thread (top-level code, a static main(), or the first statement of an async main); it makes that thread the whole program's executor")
        misuseCheck(c_serial_loop_current_loop() == nil, "Loop.runMain called on a thread that is already running a loop; call it once, at the start of the program")
        let loop = try Loop.make(time: time)
        // Every global enqueue comes to the loop through the default-executor role.
        loop.capturesEscapingWork = false
        loop.wakeUpsResumeSleepersDirectly = true
        let alreadyInstalled: Bool = installedLoop.withLock { installed in
            if installed != nil { return true }
            installed = loop
            return false
        }
        misuseCheck(!alreadyInstalled, "Loop.runMain called twice: the program's executors can be installed once per process (the first loop stays installed)")
        _createExecutors(factory: WholeProgramExecutors.self)
        return try loop.runBody(body)
    }

    /// Whether this loop is the program's main and default executor (``runMain(time:_:)``).
    public var isProgramExecutor: Bool {
        installedLoop.withLock { $0 === self }
    }
}
