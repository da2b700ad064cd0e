@preconcurrency import Glibc
import CSerialLoopSignals

// Signals as an AsyncSequence: `for await signal in try loop.signals(SIGINT, SIGTERM) { … }`
//
// How a signal reaches the loop (the self-pipe trick, as libuv, asyncio's `set_wakeup_fd` and
// tokio's signal-hook do):
//   kernel → process-wide C handler (any thread) → one byte on a pipe → the relay thread reads it →
//   `loop.execute` for each listener of that signal → the listener's task resumes on its loop.
// The handler does nothing but write(2), which is async-signal-safe; every lock and allocation is
// on the relay thread. So delivery does not depend on which thread the kernel picks.
//
// Why not signalfd: it reports only signals that are *blocked in every thread*; a thread that has
// the signal unblocked takes it with the old disposition (SIGTERM's default: the process dies).
// A library cannot block signals in threads it does not own: the main thread and threads the
// program created before the call keep their masks, and a blocked mask is inherited across exec,
// so child processes would start with SIGTERM blocked. (Dispatch's workers — Swift's cooperative
// pool on Linux — do block them; threads created from them inherit that, the main thread does
// not.) Measured figures: see the signals tests and the README.
//
// Lifetimes: the pipe and the relay thread are process-wide, created by the first `signals(...)`
// and kept for the life of the process (like Dispatch's own threads). A signal's previous
// disposition is saved when its first listener arrives, and put back when its last one goes —
// the sequence and its iterators are dropped, the iterating task is cancelled, or the loop shuts
// down.

extension Loop {
    /// The signals `signals` as they arrive, delivered on this loop whatever thread the kernel
    /// interrupted (asyncio's `add_signal_handler`, tokio's `signal::unix`).
    ///
    /// ```swift
    /// for await signal in try loop.signals(SIGINT, SIGTERM) {
    ///     print("got \(signal), shutting down")
    ///     break
    /// }
    /// ```
    ///
    /// Listening starts with this call: a signal that arrives before the first `next()` is
    /// buffered. Each listener (each call) gets every delivery of its signals; several may listen
    /// to one signal, on one loop or several. While any listener exists, the signal's disposition
    /// is this library's handler (the default action — e.g. termination by SIGTERM — does not
    /// happen); the previous disposition is restored when the last listener goes: when the
    /// sequence and its iterators are dropped, when the iterating task is cancelled (the sequence
    /// then ends), or when the loop shuts down (it ends too). Restored is what was there when the
    /// first listener arrived: a handler other code installs meanwhile is overwritten then. Like the kernel, a listener that does
    /// not keep up may see several deliveries of one signal merged (it buffers up to 1024).
    ///
    /// - Throws: ``LoopError`` naming `signals(…)` for a number that is not a catchable signal:
    ///   0 or above 64, `SIGKILL` and `SIGSTOP` (they cannot be caught), the fault signals
    ///   `SIGSEGV`, `SIGBUS`, `SIGFPE`, `SIGILL`, `SIGTRAP`, `SIGSYS` (the faulting instruction
    ///   would run again before the loop could act), those the C library reserves (`EINVAL`), or
    ///   an empty list; and when the loop has shut down. Nothing is installed if it throws. Any thread.
    /// - Parameter signals: the signal numbers to listen to, e.g. `SIGTERM, SIGINT`.
    /// - Returns: the deliveries, as an `AsyncSequence` that resumes on this loop.
    public func signals(_ signals: Int32...) throws(LoopError) -> LoopSignals {
        let operation = "signals(\(signals.map(signalName).joined(separator: ", ")))"
        if signals.isEmpty { throw LoopError(.invalidArgument, operation: operation, reason: "no signal given") }
        for signal in signals {
            if let problem = signalProblem(signal) { throw LoopError(.invalidArgument, operation: operation, reason: problem) }
        }
        if isShutDown.load(ordering: .sequentiallyConsistent) {
            throw LoopError.loopHasShutDown(operation)
        }
        let listener = SignalListener(loop: self, signals: Array(Set(signals)).sorted())
        try SignalRegistry.shared.add(listener, operation: operation)
        return LoopSignals(subscription: SignalSubscription(listener))
    }

    /// Ends this loop's signal listeners (shutdown). Returns how many there were.
    func endSignalListenersForShutdown() -> Int {
        guard SignalRegistry.isStarted else { return 0 }
        let listeners = SignalRegistry.shared.removeAll(of: self)
        for listener in listeners { listener.finish() }
        return listeners.count
    }
}

/// Why `signal` cannot be listened to, or `nil` if it can (as far as we can tell before sigaction).
private func signalProblem(_ signal: Int32) -> String? {
    switch signal {
    case ...0, 65...:
        return "\(signal) is not a signal number (1...64)"
    case SIGKILL, SIGSTOP:
        return "\(signalName(signal)) cannot be caught, blocked or ignored"
    case SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS:
        return "\(signalName(signal)) reports a fault in the instruction that raised it, which would run again before the loop could act"
    default:
        return nil
    }
}

/// `SIGINT`-style names for the common signals; the number otherwise.
func signalName(_ signal: Int32) -> String {
    switch signal {
    case SIGHUP: "SIGHUP"
    case SIGINT: "SIGINT"
    case SIGQUIT: "SIGQUIT"
    case SIGILL: "SIGILL"
    case SIGTRAP: "SIGTRAP"
    case SIGABRT: "SIGABRT"
    case SIGBUS: "SIGBUS"
    case SIGFPE: "SIGFPE"
    case SIGKILL: "SIGKILL"
    case SIGUSR1: "SIGUSR1"
    case SIGSEGV: "SIGSEGV"
    case SIGUSR2: "SIGUSR2"
    case SIGPIPE: "SIGPIPE"
    case SIGALRM: "SIGALRM"
    case SIGTERM: "SIGTERM"
    case SIGCHLD: "SIGCHLD"
    case SIGCONT: "SIGCONT"
    case SIGSTOP: "SIGSTOP"
    case SIGTSTP: "SIGTSTP"
    case SIGTTIN: "SIGTTIN"
    case SIGTTOU: "SIGTTOU"
    case SIGURG: "SIGURG"
    case SIGXCPU: "SIGXCPU"
    case SIGXFSZ: "SIGXFSZ"
    case SIGVTALRM: "SIGVTALRM"
    case SIGPROF: "SIGPROF"
    case SIGWINCH: "SIGWINCH"
    case SIGSYS: "SIGSYS"
    default: "signal \(signal)"
    }
}

/// The signals one `loop.signals(...)` call listens to, as they arrive: an `AsyncSequence` of
/// signal numbers (`SIGINT`, …). See ``Loop/signals(_:)``.
public struct LoopSignals: AsyncSequence, Sendable {
    /// A signal number, e.g. `SIGTERM`.
    public typealias Element = Int32
    /// The sequence never throws: it ends (returns `nil`) when listening stops.
    public typealias Failure = Never

    let subscription: SignalSubscription

    /// Makes an iterator over the deliveries; iterate from one task at a time.
    public func makeAsyncIterator() -> Iterator {
        Iterator(subscription: subscription)
    }

    /// Stops listening now (the sequence ends; the disposition is restored if this was the last
    /// listener). Dropping the sequence and its iterators does the same. Any thread.
    public func cancel() {
        subscription.cancel()
    }

    /// Iterates a ``LoopSignals``: each ``next()`` resumes on the listener's loop with the next
    /// delivery.
    public struct Iterator: AsyncIteratorProtocol {
        let subscription: SignalSubscription

        /// The next signal, or `nil` once listening stopped (task cancelled, `cancel()`, loop shut
        /// down). Cancelling the task that waits here stops listening.
        public mutating func next() async -> Int32? {
            await subscription.next()
        }

        /// The next signal, or `nil` once listening stopped; as ``next()``, for `for await` in an
        /// isolated context.
        public mutating func next(isolation actor: isolated (any Actor)?) async -> Int32? {
            await subscription.next()
        }
    }
}

/// Owns one registration: dropping the last sequence or iterator that holds it unregisters.
final class SignalSubscription: Sendable {
    let listener: SignalListener

    init(_ listener: SignalListener) {
        self.listener = listener
    }

    deinit {
        cancel()
    }

    func cancel() {
        SignalRegistry.shared.remove(listener)
        listener.finish()
    }

    func next() async -> Int32? {
        if Task.isCancelled {
            cancel()
            return nil
        }
        return await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Int32?, Never>) in
                listener.wait(continuation)
            }
        } onCancel: {
            cancel()
        }
    }
}

/// One listener's deliveries: a small buffer and at most one waiting `next()`. Any thread.
final class SignalListener: Sendable {
    let loop: Loop
    let signals: [Int32]

    private struct State {
        var buffered: [Int32] = []
        var waiter: UnsafeContinuation<Int32?, Never>?
        var isFinished = false
    }
    private let state = Lock(State())
    static let bufferLimit = 1024

    init(loop: Loop, signals: [Int32]) {
        self.loop = loop
        self.signals = signals
    }

    /// Relay thread: hands `signal` to the loop, where the listener's task resumes.
    func deliver(_ signal: Int32) {
        guard !loop.isShutDown.load(ordering: .relaxed) else { return }
        loop.execute { self.receive(signal) }
    }

    /// Loop thread.
    private func receive(_ signal: Int32) {
        let waiter: UnsafeContinuation<Int32?, Never>? = state.withLock { state in
            if state.isFinished { return nil }
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            if state.buffered.count < Self.bufferLimit { state.buffered.append(signal) }
            return nil
        }
        waiter?.resume(returning: signal)
    }

    func wait(_ continuation: UnsafeContinuation<Int32?, Never>) {
        let immediate: Int32?? = state.withLock { state in
            if !state.buffered.isEmpty { return .some(state.buffered.removeFirst()) }
            if state.isFinished { return .some(nil) }
            misuseCheck(state.waiter == nil, "LoopSignals: next() called concurrently from two tasks; iterate a signal sequence from one task at a time")
            state.waiter = continuation
            return .none
        }
        if let immediate { continuation.resume(returning: immediate) }
    }

    /// Ends the sequence: a waiting `next()` returns `nil`, buffered signals are dropped.
    func finish() {
        let waiter: UnsafeContinuation<Int32?, Never>? = state.withLock { state in
            state.isFinished = true
            state.buffered.removeAll()
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: nil)
    }
}
