@preconcurrency import Glibc
import Synchronization

/// A loop running on its own background thread, for long-lived apps: hand work to it with
/// `Task(executorPreference: thread.loop)`, `loop.execute { }` or actors on `loop`, and end it
/// with ``shutdown()``.
public final class LoopThread: Sendable {
    /// The loop this thread runs. Any thread may hand it work (`Task(executorPreference:)`,
    /// `execute`, actors on it); its loop-thread-only APIs are for code running on it.
    public let loop: Loop
    private let thread: pthread_t
    private let joined = Lock(false)

    fileprivate init(loop: Loop, thread: pthread_t) {
        self.loop = loop
        self.thread = thread
    }

    /// Stops the loop, lets it shut down (tasks suspended on it are resumed, see `withLoop`), and
    /// joins its thread. Idempotent. Any thread.
    ///
    /// From another thread it returns once the loop has shut down. On the loop's own thread (a job
    /// or callback of the loop calls it, or drops the last reference to the `LoopThread`) it
    /// cannot wait for itself: it asks the loop to stop after the current job, and the thread
    /// shuts the loop down and ends on its own (it is detached, so nothing leaks).
    public func shutdown() {
        let shouldJoin = joined.withLock { joined in
            defer { joined = true }
            return !joined
        }
        guard shouldJoin else { return }
        loop.stop()
        if loop.isOnLoopThread {
            pthread_detach(thread)
        } else {
            pthread_join(thread, nil)
        }
    }

    deinit {
        shutdown()
    }
}

extension Loop {
    /// Starts a loop on a new background thread; it runs until ``LoopThread/shutdown()``.
    /// With `time: .virtual` the loop is a ``TestLoop`` (`thread.loop as! TestLoop` reaches its
    /// controls).
    public static func startThread(time: TimeMode = .real) throws(LoopError) -> LoopThread {
        let handoff = Latch<Result<Loop, LoopError>>()
        let thread = spawnThread {
            let loop: Loop
            do throws(LoopError) {
                loop = try Loop.make(time: time)
            } catch {
                handoff.fulfil(.failure(error))
                return
            }
            handoff.fulfil(.success(loop))
            loop.run()
            loop.shutdown()
        }
        switch handoff.wait() {
        case .success(let loop):
            return LoopThread(loop: loop, thread: thread)
        case .failure(let error):
            pthread_join(thread, nil)
            throw error
        }
    }
}
