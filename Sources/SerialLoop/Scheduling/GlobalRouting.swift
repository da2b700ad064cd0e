import CSerialLoopShims

// Why the loop looks at jobs headed for Swift's global executor
//
// 1. `Task.sleep` on the loop. The runtime hands the loop (as a `SchedulingExecutor`) a tiny
//    wake-up task, not the sleeper. That task has no executor preference, so when the loop runs
//    it, it first hops to the global executor, and only there resumes the sleeper — which then
//    hops back to the loop from a foreign thread. While a sleep wake-up job runs, that hop is
//    routed straight back onto the loop's ready queue: no thread hop, and on a test loop no
//    window in which virtual time could jump before the sleeper is back.
// 2. Escaping work on a test loop. A plain `Task {}` or `Task.detached {}` created on the loop
//    thread goes to the global executor (SE-0417) and races the virtual clock. A test loop
//    (`capturesEscapingWork`, on by default in virtual time) runs such tasks on its own thread
//    instead, in FIFO order with everything else, so tests that use libraries which spawn
//    unstructured tasks stay deterministic. It owns exactly the tasks *created* on its thread
//    (the shim marks task creation): their later resumptions on its thread come back to it, while
//    a task created elsewhere that the loop merely resumes — a foreign task awaiting a loop
//    task's value, a sleep, a future — goes back to its own executor. The loop runs its tasks
//    *as their task executor* (`runSynchronously(on: loop)`), so a `Task.sleep` inside one
//    reaches the loop's `SchedulingExecutor` and sleeps on virtual time, like a task that prefers
//    the loop. (Swift 6.3's global executor schedules delayed jobs itself, through no hook we
//    could take: run on the global executor, that sleep would be real.)
//
// The hook is `swift_task_enqueueGlobal_hook`, installed once per process. It only diverts
// enqueues made *on a thread that is running a loop*, and only in the two cases above; every
// other global enqueue falls through to the runtime unchanged. (A program that installs its own
// hook after ours replaces it: the loop then works as before, minus these two routings.)

private let routeGlobalJob: c_serial_loop_global_router_t = { rawJob, isNewTask in
    guard let rawJob, let rawLoop = c_serial_loop_current_loop() else { return false }
    let loop = Unmanaged<Loop>.fromOpaque(rawLoop).takeUnretainedValue()
    guard loop.isRunningSleepWake || (loop.capturesEscapingWork && loop.ownsEscapedTask(rawJob, isNew: isNewTask)) else {
        return false
    }
    loop.makeReady(.global(unsafeBitCast(rawJob, to: UnownedJob.self)))
    return true
}

extension Loop {
    /// Whether a global enqueue on this thread is of a task the test loop owns: one created on
    /// its thread (it becomes owned now, and stays retained until shutdown so its address cannot
    /// be taken by another task), or one created earlier. Resumptions of any other task — a
    /// foreign task awaiting loop work — go to the runtime as usual.
    func ownsEscapedTask(_ job: UnsafeMutableRawPointer, isNew: Bool) -> Bool {
        if isNew {
            if escapedTasks.insert(UnsafeRawPointer(job)).inserted { c_serial_loop_retain_task(job) }
            return true
        }
        return escapedTasks.contains(UnsafeRawPointer(job))
    }

    /// Shutdown: forgets (and releases) the escaped tasks.
    func releaseEscapedTasks() {
        for task in escapedTasks { c_serial_loop_release_task(UnsafeMutableRawPointer(mutating: task)) }
        escapedTasks.removeAll()
    }

    func installGlobalRouting() {
        c_serial_loop_install_global_hook(routeGlobalJob)
    }

    /// Marks this thread as running `self`; returns what to restore afterwards.
    func enterThread() -> UnsafeMutableRawPointer? {
        let previous = c_serial_loop_current_loop()
        c_serial_loop_set_current_loop(Unmanaged.passUnretained(self).toOpaque())
        Loop.installThreadClock(for: self)
        return previous
    }

    func leaveThread(restoring previous: UnsafeMutableRawPointer?) {
        c_serial_loop_set_current_loop(previous)
        Loop.installThreadClock(for: previous.map { Unmanaged<Loop>.fromOpaque($0).takeUnretainedValue() })
    }
}
