@preconcurrency import Glibc

/// Which kinds of readiness a registration asks for, or an event reports.
struct Interest: OptionSet, Hashable, Sendable {
    let rawValue: UInt8
    static let read = Interest(rawValue: 1)
    static let write = Interest(rawValue: 2)

    /// How `readable`/`writable` name themselves in errors: `"readable(fd: 7)"`.
    func waitOperation(fd: Int32) -> String {
        self == .read ? "readable(fd: \(fd))" : "writable(fd: \(fd))"
    }

    /// How the callback APIs name themselves: `"addReader"`, `"removeWriter"`.
    func callbackName(_ verb: String) -> String {
        self == .read ? "\(verb)Reader" : "\(verb)Writer"
    }
}

/// One readiness event from the backend. `token` is whatever the reactor registered the descriptor
/// with; the reactor uses it to recognise events for a descriptor number that has since been reused.
struct ReadinessEvent {
    var token: UInt64
    /// Readable, or hung up / in error (a read will not block: it returns data, EOF or the error).
    var isReadable: Bool
    /// Writable, or hung up / in error (a write will not block).
    var isWritable: Bool
}

/// What a backend made of a request to watch a descriptor. The backend interprets its OS's error
/// codes; the reactor decides what each outcome means for the waiters ("Descriptors closed behind
/// the loop's back", Reactor+Verification.swift).
enum WatchOutcome: Equatable {
    /// The backend watches the descriptor now at that number, with the interest and token given.
    case watching
    /// The descriptor can never block (a regular file or a directory: epoll's EPERM).
    case alwaysReady
    /// The number is not an open descriptor (EBADF).
    case closed
    /// `modify` only: the number names a description the backend does not watch — it was closed
    /// and the number reused behind the loop's back (epoll's ENOENT).
    case notWatched
    /// `register` only: the description at that number is already watched (epoll's EEXIST: a
    /// registration made before the loop forgot the number, or a dup's history).
    case alreadyWatched
    /// Anything else (ENOMEM, ENOSPC, ...): a failure to report with its errno.
    case failed(errno: Int32)

    /// The errno an error for this outcome carries.
    var errno: Int32 {
        switch self {
        case .watching: 0
        case .alwaysReady: EPERM
        case .closed: EBADF
        case .notWatched: ENOENT
        case .alreadyWatched: EEXIST
        case .failed(let errno): errno
        }
    }
}

/// What the reactor needs from an OS readiness API. One file per backend implements it; `#if os(...)`
/// lives only there. `EpollBackend` is the Linux one; `InMemoryBackend` (in the tests) simulates descriptors for
/// the reactor's unit tests; a kqueue or `poll(2)` backend would slot in beside them.
///
/// The backend owns wake-ups (``waker``, consumed inside ``poll(timeoutNanoseconds:)``) and the
/// meaning of its error codes (``WatchOutcome``). The reactor is generic over it, and the loop uses
/// one concrete backend, so no call on the hot path is dynamically dispatched.
protocol PollBackend: ~Copyable {
    /// Starts watching `fd` for `interest`, tagging its events with `token`.
    func register(_ fd: Int32, interest: Interest, token: UInt64) -> WatchOutcome
    /// Changes what `fd` is watched for, and its token.
    func modify(_ fd: Int32, interest: Interest, token: UInt64) -> WatchOutcome
    /// Stops watching `fd`. Errors are ignored: the descriptor may already be closed.
    func unregister(_ fd: Int32)
    /// The errno that makes `fd` unusable (EBADF: not open), or `nil` when it is an open descriptor.
    func openError(_ fd: Int32) -> Int32?
    /// Waits up to `timeoutNanoseconds` (`nil`: forever; 0: do not block). Wake-ups from
    /// ``waker`` are consumed here and not counted among the events.
    /// - Returns: how many readiness events arrived — read them with ``event(at:)``, in order,
    ///   until the next poll — and whether a wake-up arrived.
    mutating func poll(timeoutNanoseconds: Int64?) throws(LoopError) -> (events: Int, woke: Bool)
    /// Event `index` (`0..<events`) of the last poll. The events stay in the backend's buffer, so
    /// delivering them needs no closure and no copy (callgrind: a closure per poll and a scratch
    /// array swapped in and out cost ~150 instructions per socketpair round trip).
    func event(at index: Int) -> ReadinessEvent
    /// Interrupts a blocking `poll` (or makes the next one return at once); callable from any
    /// thread, also after ``close()`` (then it does nothing).
    var waker: @Sendable () -> Void { get }
    /// Releases the OS objects.
    func close()
}
