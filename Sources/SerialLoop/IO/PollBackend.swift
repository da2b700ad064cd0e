/// Which kinds of readiness a registration asks for, or an event reports.
struct Interest: OptionSet, Hashable, Sendable {
    let rawValue: UInt8
    static let read = Interest(rawValue: 1)
    static let write = Interest(rawValue: 2)
}

/// One readiness event from the kernel. `token` is whatever the reactor registered the descriptor
/// with; the reactor uses it to recognise events for a descriptor number that has since been reused.
struct ReadinessEvent {
    var token: UInt64
    /// Readable, or hung up / in error (a read will not block: it returns data, EOF or the error).
    var isReadable: Bool
    /// Writable, or hung up / in error (a write will not block).
    var isWritable: Bool
}

/// What the loop needs from an OS readiness API. One file per backend implements it; `#if os(...)`
/// lives only there. The epoll backend is the Linux one; a kqueue or `poll(2)` backend would slot in
/// beside it.
protocol PollBackend: ~Copyable {
    /// Starts watching `fd` for `interest`, tagging its events with `token`.
    func register(_ fd: Int32, interest: Interest, token: UInt64) throws(LoopError)
    /// Changes what `fd` is watched for.
    func modify(_ fd: Int32, interest: Interest, token: UInt64) throws(LoopError)
    /// Stops watching `fd`. Errors are ignored: the descriptor may already be closed.
    func unregister(_ fd: Int32)
    /// Waits up to `timeoutNanoseconds` (`nil`: forever; 0: do not block) and reports each event.
    /// Wake-ups from ``wake()`` are consumed here and not reported.
    /// - Returns: whether the wake-up descriptor fired.
    mutating func poll(timeoutNanoseconds: Int64?, _ deliver: (ReadinessEvent) -> Void) throws(LoopError) -> Bool
    /// Interrupts a blocking `poll` from any thread.
    func wake()
    /// Releases the kernel objects.
    func close()
}
