extension Loop {
    /// The loop as a task executor, for the runtime: `Task(executorPreference: loop)` and
    /// `withTaskExecutorPreference(loop)` take the loop itself. Any thread.
    public func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }

    /// The serial executor for actors that should run on this loop:
    /// `nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }`.
    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    /// Code on the loop thread is isolated to the loop: nothing else can run there concurrently.
    /// This is what lets `actor.assumeIsolated` work in plain callbacks and epoll handlers.
    public func checkIsolated() {
        misuseCheck(isOnLoopThread, "expected to be on the SerialLoop thread, but running on another thread")
    }

    /// Whether the caller runs on the loop's thread, and so is isolated to the loop (the runtime asks
    /// this before falling back to ``checkIsolated()``). Any thread.
    public func isIsolatingCurrentContext() -> Bool? {
        isOnLoopThread
    }
}
