@preconcurrency import Glibc
@testable import SerialLoop
import Synchronization

/// A backend without a kernel: simulated descriptors whose readiness the test sets, so the
/// reactor's logic (fd reuse, narrowing, cancellation, errors, generations) is tested without
/// epoll and without timing. It follows the epoll facts in EpollBackend.swift:
///
/// - A number names an open *description*; `dup` gives a second number for the same description.
///   The interest list is keyed by (number, description), like epoll's. Closing a number leaves
///   its entry in place while another number still refers to the description (events keep coming,
///   tagged with the old token); closing the last one removes every entry for the description
///   silently. Numbers are handed out lowest-free-first from `firstNumber`, so a closed number is
///   reused by the next `open`.
/// - Level-triggered: each poll reports every watched entry whose description is ready for what
///   the entry watches; a hung-up description reports readable and writable whatever the interest.
/// - Regular files are always ready and cannot be watched (`.alwaysReady`, epoll's EPERM).
/// - `failNextWatch(errno:)` makes the next `register`/`modify` fail (ENOMEM, ENOSPC, ...).
///
/// A class, so a test keeps a reference while the reactor owns the backend. Loop thread (the
/// test's) only, except `waker`.
final class InMemoryBackend: PollBackend {
    enum Kind { case socket, regularFile }

    private struct Description {
        let kind: Kind
        var readiness: Interest
        var isHungUp = false
        var references = 1
    }

    private struct Entry {
        let fd: Int32
        let description: Int
        var interest: Interest
        var token: UInt64
    }

    /// The first number `open` hands out (numbers below it are never used).
    let firstNumber: Int32
    private var descriptions: [Int: Description] = [:]
    private var lastDescription = 0
    /// The last poll's events.
    private var polled: [ReadinessEvent] = []
    /// Open numbers → description.
    private var table: [Int32: Int] = [:]
    /// The interest list, in registration order (the order events are reported in).
    private var entries: [Entry] = []
    private var injectedFailure: Int32? = nil
    private let wakeUp = WakeFlag()
    /// `register`, `modify` and `unregister` calls so far: what a real backend would pay in syscalls.
    private(set) var controlCalls = 0

    init(firstNumber: Int32 = 3) {
        self.firstNumber = firstNumber
    }

    // MARK: The simulated process (tests)

    /// Opens a new description at the lowest free number (not below `lowest`, as `F_DUPFD`).
    /// A socket starts writable, not readable.
    func open(_ kind: Kind = .socket, atLeast lowest: Int32 = 0) -> Int32 {
        lastDescription += 1
        descriptions[lastDescription] = Description(kind: kind, readiness: kind == .socket ? .write : [.read, .write])
        return bind(lastDescription, atLeast: lowest)
    }

    /// A second number for the description at `fd`, as `dup(2)`.
    func dup(_ fd: Int32) -> Int32 {
        let description = table[fd]!
        descriptions[description]!.references += 1
        return bind(description)
    }

    /// Closes a number, as `close(2)`: the description's interest entries vanish with its last number.
    func close(_ fd: Int32) {
        guard let description = table.removeValue(forKey: fd) else { preconditionFailure("InMemoryBackend: close of fd \(fd), not open") }
        descriptions[description]!.references -= 1
        if descriptions[description]!.references == 0 {
            descriptions[description] = nil
            entries.removeAll { $0.description == description }
        }
    }

    /// Sets what the description at `fd` is ready for (level: until set otherwise).
    func setReadiness(_ fd: Int32, _ readiness: Interest) {
        descriptions[table[fd]!]!.readiness = readiness
    }

    /// Hangs up the description at `fd`: from now on it is readable and writable (EPOLLHUP).
    func hangUp(_ fd: Int32) {
        descriptions[table[fd]!]!.isHungUp = true
    }

    /// Makes the next `register` or `modify` fail with `errno`.
    func failNextWatch(errno: Int32) {
        injectedFailure = errno
    }

    /// What the backend watches the description at `fd` for under that number (`nil`: not watched).
    func watchedInterest(_ fd: Int32) -> Interest? {
        guard let description = table[fd] else { return nil }
        return entries.first { $0.fd == fd && $0.description == description }?.interest
    }

    private func bind(_ description: Int, atLeast lowest: Int32 = 0) -> Int32 {
        var fd = max(firstNumber, lowest)
        while table[fd] != nil { fd += 1 }
        table[fd] = description
        return fd
    }

    // MARK: PollBackend

    func register(_ fd: Int32, interest: Interest, token: UInt64) -> WatchOutcome {
        controlCalls += 1
        if let failure = checkWatchable(fd) { return failure }
        let description = table[fd]!
        if entries.contains(where: { $0.fd == fd && $0.description == description }) { return .alreadyWatched }
        entries.append(Entry(fd: fd, description: description, interest: interest, token: token))
        return .watching
    }

    func modify(_ fd: Int32, interest: Interest, token: UInt64) -> WatchOutcome {
        controlCalls += 1
        if let failure = checkWatchable(fd) { return failure }
        let description = table[fd]!
        guard let index = entries.firstIndex(where: { $0.fd == fd && $0.description == description }) else { return .notWatched }
        entries[index].interest = interest
        entries[index].token = token
        return .watching
    }

    func unregister(_ fd: Int32) {
        controlCalls += 1
        guard let description = table[fd] else { return }
        entries.removeAll { $0.fd == fd && $0.description == description }
    }

    /// The checks epoll_ctl makes before it looks at the interest list, in its order.
    private func checkWatchable(_ fd: Int32) -> WatchOutcome? {
        guard let description = table[fd] else { return .closed }
        if descriptions[description]!.kind == .regularFile { return .alwaysReady }
        if let errno = injectedFailure {
            injectedFailure = nil
            return .failed(errno: errno)
        }
        return nil
    }

    func openError(_ fd: Int32) -> Int32? {
        table[fd] == nil ? WatchOutcome.closed.errno : nil
    }

    /// Never blocks: the test decides what is ready before it polls.
    func poll(timeoutNanoseconds: Int64?) throws(LoopError) -> (events: Int, woke: Bool) {
        polled.removeAll()
        for entry in entries {
            let description = descriptions[entry.description]!
            let ready = description.readiness.intersection(entry.interest)
            let isReadable = description.isHungUp || ready.contains(.read)
            let isWritable = description.isHungUp || ready.contains(.write)
            if isReadable || isWritable {
                polled.append(ReadinessEvent(token: entry.token, isReadable: isReadable, isWritable: isWritable))
            }
        }
        return (polled.count, wakeUp.consume())
    }

    func event(at index: Int) -> ReadinessEvent { polled[index] }

    var waker: @Sendable () -> Void {
        let wakeUp = self.wakeUp
        return { wakeUp.raise() }
    }

    func close() {}
}

/// The in-memory backend's wake-up: a flag any thread may raise.
private final class WakeFlag: Sendable {
    private let isRaised = Atomic<Bool>(false)
    func raise() { isRaised.store(true, ordering: .releasing) }
    func consume() -> Bool { isRaised.exchange(false, ordering: .acquiring) }
}
