import Logging
import SerialLoop
import ServiceLifecycle

/// A swift-service-lifecycle `Service` that runs a loop and its work inside a `ServiceGroup`.
///
/// The loop runs on its own thread (a ``LoopThread``); `run()` runs the work as a task that prefers
/// the loop (`withTaskExecutorPreference`), so the work, its child tasks and actors on the loop run
/// on the loop's thread, while the group's task-locals — the graceful-shutdown manager among them —
/// are inherited as in any structured child. Shutdown goes through the group:
///
/// 1. the group's graceful shutdown (a signal in `gracefulShutdownSignals`,
///    `triggerGracefulShutdown()`, or another service ending) reaches the work:
///    - ``GracefulShutdownBehavior/workHandlesIt``: the work sees it through ServiceLifecycle's own
///      API (`try await gracefulShutdown()`, `Task.isShuttingDownGracefully`,
///      `withGracefulShutdownHandler`) and winds down itself — stops accepting, finishes what is in
///      flight, returns;
///    - ``GracefulShutdownBehavior/cancelWork``: the work's task is cancelled (`CancellationError`
///      in `loop.sleep`, `readable`, … at once) and the service returns normally;
/// 2. when the work has returned, a loop the service owns is shut down (tasks still suspended on it
///    are resumed with `CancellationError`, see ``Loop/shutdown()``) and its thread joined;
/// 3. `run()` returns, and the group goes on with the next service.
///
/// A loop the service does not own (``init(thread:name:onGracefulShutdown:work:)``) is left
/// running: whoever started it shuts it down.
public struct LoopService: Service, CustomStringConvertible {
    /// What graceful shutdown does to the work.
    public enum GracefulShutdownBehavior: Sendable {
        /// The work observes graceful shutdown itself (ServiceLifecycle's API) and returns.
        case workHandlesIt
        /// The work's task is cancelled on graceful shutdown; the service then returns normally.
        case cancelWork
    }

    public let thread: LoopThread
    public var loop: Loop { thread.loop }
    public let name: String
    private let ownsThread: Bool
    private let behavior: GracefulShutdownBehavior
    private let work: @Sendable (Loop) async throws -> Void

    /// Starts a loop on a new thread (now, so that ``loop`` can be used before the group runs); the
    /// service shuts it down when its work has ended.
    public init(
        name: String = "SerialLoop",
        time: Loop.TimeMode = .real,
        onGracefulShutdown behavior: GracefulShutdownBehavior = .workHandlesIt,
        work: @escaping @Sendable (Loop) async throws -> Void
    ) throws {
        self.thread = try Loop.startThread(time: time)
        self.ownsThread = true
        self.name = name
        self.behavior = behavior
        self.work = work
    }

    /// Runs the work on a loop that someone else started and shuts down.
    public init(
        thread: LoopThread,
        name: String = "SerialLoop",
        onGracefulShutdown behavior: GracefulShutdownBehavior = .workHandlesIt,
        work: @escaping @Sendable (Loop) async throws -> Void
    ) {
        self.thread = thread
        self.ownsThread = false
        self.name = name
        self.behavior = behavior
        self.work = work
    }

    public var description: String { name }

    public func run() async throws {
        let loop = thread.loop
        let work = self.work
        let behavior = self.behavior
        defer {
            // Joins the loop thread: by now the work has returned, so what is left is the loop's
            // own shutdown (resuming leftovers with CancellationError), which does not wait on us.
            if ownsThread { thread.shutdown() }
        }
        try await withTaskExecutorPreference(loop) {
            switch behavior {
            case .workHandlesIt:
                try await work(loop)
            case .cancelWork:
                do {
                    try await cancelWhenGracefulShutdown { try await work(loop) }
                } catch is CancellationError where Task.isShuttingDownGracefully {
                    // Cancelled because the group asked for it: a normal end.
                }
            }
        }
    }
}
