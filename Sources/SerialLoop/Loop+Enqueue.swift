@preconcurrency import Glibc
import Synchronization

extension Loop {
    // MARK: Enqueueing

    /// The single entry point for work. Same thread: a ring-buffer push (no lock, no allocation once
    /// the buffer has grown, no syscall). Other threads: the locked inbox, waking a parked loop.
    /// After shutdown, jobs run in the loop's afterlife (Afterlife.swift); callbacks are dropped
    /// with a warning (once per process).
    @inline(__always)
    func submit(_ work: Work) {
        if isOnLoopThread {
            makeReady(work)
        } else if !inbox.push(work) {
            refuseAfterShutdown(work)
        }
    }

    /// The door onto the ready queue from the loop thread (the tick, timers, readiness, futures,
    /// the global-executor routing): nothing else pushes. After shutdown the work is refused as
    /// `submit` refuses it.
    @inline(__always)
    func makeReady(_ work: Work) {
        if !runState.isShutDown {
            ready.push(work)
        } else {
            refuseAfterShutdown(work)
        }
    }

    private func refuseAfterShutdown(_ work: Work) {
        switch work {
        case .task(let job), .actor(let job), .global(let job), .sleepWake(let job): runAfterShutdown(job)
        case .suspension(let start): start(false)
        case .callback, .scheduledCallback: reportWorkAfterShutdown()
        }
    }

    /// Runs `callback` on the loop after the work already queued (asyncio's `call_soon_threadsafe`).
    /// Any thread; from another thread it wakes a parked loop. After shutdown the callback is
    /// dropped with a warning on stderr (see ``hasShutDown``).
    /// In debug mode the callback remembers its creation site (`file`, `line`) for slow-job reports.
    /// - Parameters:
    ///   - callback: the code to run, on the loop's thread, in FIFO order with the loop's other work.
    ///   - file: the call site, for debug-mode reports (leave the default).
    ///   - line: the call site's line (leave the default).
    public func execute(_ callback: @escaping @Sendable () -> Void, file: StaticString = #fileID, line: UInt = #line) {
        // The plain path hands the borrowed closure straight to `submit`: going through
        // `taggedSendable` on it too made an owned copy that the inbox's `push` (which borrows its
        // work and copies it into the list) then had to release — a retain/release pair per
        // cross-thread job, ~40 of its ~610 instructions (the cross-thread row's regression
        // since ebeebfd, Benchmarks/NOTES.md).
        if metricsStorage.capturesSites.load(ordering: .relaxed) {
            submit(.callback(taggedSendable(callback, file: file, line: line)))
        } else {
            submit(.callback(callback))
        }
    }

    /// Whether the loop has shut down: its `withLoop` returned, or its `LoopThread` was shut down.
    /// Any thread. From then on every `async` loop API throws ``LoopError/loopHasShutDown(_:)``.
    public var hasShutDown: Bool { isShutDown.load(ordering: .acquiring) }

    /// Runs `callback` on the loop after the work already queued (asyncio's `call_soon`). Unlike
    /// ``execute(_:file:line:)`` the closure need not be `Sendable`, because it never leaves the loop thread.
    /// - Precondition: called on the loop's thread.
    /// - Parameters:
    ///   - callback: the code to run on the next tick, in FIFO order.
    ///   - file: the call site, for debug-mode reports (leave the default).
    ///   - line: the call site's line (leave the default).
    public func callSoon(_ callback: @escaping () -> Void, file: StaticString = #fileID, line: UInt = #line) {
        preconditionOnLoopThread("Loop.callSoon(_:)")
        makeReady(.callback(tagged(callback, file: file, line: line)))
    }

    private func reportWorkAfterShutdown() {
        enum Once { nonisolated(unsafe) static var reported = false }
        if !Once.reported {
            Once.reported = true
            fputs("SerialLoop: a callback was sent to a loop that has shut down; it will not run (it outlived its loop)\n", stderr)
        }
    }



    /// Takes a job of a task or actor on the loop: the runtime calls this, not user code. Any
    /// thread: from the loop's thread it goes on the ready queue without a lock, an allocation or a
    /// syscall; from another it goes through the locked inbox and wakes a parked loop. After shutdown
    /// the job runs on the loop's afterlife (see <doc:Guarantees>).
    /// - Parameter job: the job; it runs exactly once, on the loop's thread (or its afterlife).
    public func enqueue(_ job: consuming ExecutorJob) {
        if metricsStorage.capturesSites.load(ordering: .relaxed) { noteTaskName() }
        submit(.task(UnownedJob(job)))
    }
}
