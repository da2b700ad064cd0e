import Synchronization
import CSerialLoopShims

// Readiness streams and scopes: many waits on one descriptor, one wait object
//
// A long-lived reader waits on the same descriptor over and over: `readable`, read until EAGAIN,
// `readable` again. Each `readable` call allocates its wait (`DescriptorWait`, shared with its
// cancellation handler) and names itself for errors. A readiness stream allocates its wait object
// once, when iteration begins, and reuses it for every `next()`:
//
//     for try await _ in loop.readiness(fd, .read) {
//         while read(fd, &buffer, buffer.count) > 0 { … }      // until EAGAIN
//     }
//
// What a `next()` still costs, and why:
// - A cancellation handler per `next()` of a plain stream. A handler is a status record on the
//   task, allocated on the task's stack allocator and scoped to one call, so it cannot outlive one
//   `next()`. Adding it is a compare-and-swap of the task status; removing it takes the task's
//   status lock (~600 instructions a wait together). A readiness *scope* (`Loop.withReadiness`)
//   installs one for its whole body instead, and its task's waits install none: the body is the
//   scope Swift needs. Waits from any other task, or after the scope, bring their own handler.
// - One executor switch per wait, the hop back to the caller's executor after the continuation
//   resumes — whether `next()` is called directly or by `for try await`: `next(isolation:)` is
//   inlinable, so inlined into the caller its hop to the caller's own isolation disappears
//   (called out of line it cost two more switches per element).
// - An append to the descriptor's waiter list (capacity is kept, so no allocation). The kernel
//   registration is made once and kept across waits (interest is narrowed lazily, Reactor+Delivery.swift).
//
// Every `next()` goes through the same door as `readable` (`Loop.suspend`, Suspension.swift), so it
// has the same guarantees: a `next()` pending at shutdown is resumed (a task of the loop with
// `CancellationError`, a foreign task with the shutdown error), one started after shutdown fails at
// once, and the descriptor-closed-behind-the-loop's-back checks apply to its waits.

/// An `AsyncSequence` that yields each time a descriptor is ready: see ``Loop/readiness(_:_:)``.
public struct DescriptorReadiness: AsyncSequence, Sendable {
    /// Which readiness the sequence reports.
    public enum Kind: Sendable {
        /// Readable, at end-of-file, hung up, or in error: a read will not block.
        case read
        /// Writable, hung up, or in error: a write will not block.
        case write

        var interest: Interest { self == .read ? .read : .write }
    }

    /// Each element says the descriptor is ready; it carries no value.
    public typealias Element = Void
    /// The sequence ends by throwing: `CancellationError` when the iterating task is cancelled, a
    /// ``LoopError`` when the descriptor is closed or the loop shuts down.
    public typealias Failure = any Error

    let loop: Loop
    let fd: Int32
    let kind: Kind
    /// A scope's stream (`Loop.withReadiness`): the one wait its cancellation handler covers,
    /// shared by every iterator made from it, and the scope. `nil`: each iterator makes its own wait.
    let scoped: (wait: DescriptorWait, scope: ReadinessScope)?

    /// Makes an iterator; iterate it from one task at a time. Each iterator of a plain
    /// ``Loop/readiness(_:_:)`` sequence has its own wait; a scope's (``Loop/withReadiness(_:_:_:)``)
    /// share the scope's one wait.
    public func makeAsyncIterator() -> AsyncIterator {
        if let scoped { return AsyncIterator(wait: scoped.wait, scope: scoped.scope) }
        return AsyncIterator(wait: DescriptorWait(fd: fd, interest: kind.interest, on: loop), scope: nil)
    }

    /// Iterates a ``DescriptorReadiness``. Use it from one task at a time.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let wait: DescriptorWait
        /// The scope whose handler covers `wait`, for a scope's stream.
        let scope: ReadinessScope?
        /// The sequence threw: later calls return `nil`.
        @usableFromInline var isFinished = false

        init(wait: DescriptorWait, scope: ReadinessScope?) {
            self.wait = wait
            self.scope = scope
        }

        /// Suspends until the descriptor is ready; returns `()` then, or `nil` once the sequence
        /// has ended (it ends by throwing).
        ///
        /// Inlinable: in the caller, its hop to `actor` (the caller's own isolation) is dropped, so
        /// a `for try await` element costs one executor switch, not three.
        @inlinable
        public mutating func next(isolation actor: isolated (any Actor)? = #isolation) async throws(any Error) -> Void? {
            try await waitOnce()
        }

        /// `next(isolation:)` on the caller's executor (`nonisolated(nonsending)`), for direct
        /// calls: `iterator.next()` costs no executor switch but the one after the wait resumes.
        nonisolated(nonsending) public mutating func next() async throws -> Void? {
            try await waitOnce()
        }

        @usableFromInline
        nonisolated(nonsending) mutating func waitOnce() async throws(any Error) -> Void? {
            if isFinished { return nil }
            do {
                // In its scope's task, the scope's handler covers the wait; anywhere else (an
                // iterator that escaped its scope, or went to another task) it brings its own.
                let scopeTask = scope?.task.load(ordering: .relaxed) ?? 0
                let isCovered = scopeTask != 0 && scopeTask == Int(bitPattern: c_serial_loop_current_task())
                try await wait.loop.suspend(wait, isCovered: isCovered)
                return ()
            } catch {
                isFinished = true
                throw error
            }
        }
    }
}

/// A readiness scope (`Loop.withReadiness`) while its cancellation handler is installed: the
/// address of the scope's task, else 0. Written by that task as the scope begins and ends, read by
/// whichever task calls `next()` (an iterator may escape its scope), hence atomic; a wait skips its
/// own handler only in the scope's own task.
final class ReadinessScope: Sendable {
    let task = Atomic<Int>(0)
}

extension Loop {
    /// A stream of readiness events for `fd`: each iteration suspends until `fd` is readable
    /// (`.read`) or writable (`.write`), like ``readable(_:)`` / ``writable(_:)``, but with one wait
    /// object for the whole iteration instead of one per wait. For long-lived readers and writers:
    ///
    ///     for try await _ in loop.readiness(fd, .read) {
    ///         // read until EAGAIN
    ///     }
    ///
    /// Level-triggered, as `readable`: an element means a read (or write) will not block *now*;
    /// consume until `EAGAIN` before asking again, or the next element comes at once. A regular
    /// file or directory is always ready: every `next()` returns at once.
    ///
    /// The sequence never finishes on its own; it ends by throwing, with the errors of
    /// ``readable(_:)``:
    /// - `CancellationError` when the iterating task is cancelled (a wait in progress is removed at
    ///   once). Cancellation *throws* rather than finishing quietly, so a reader can tell "I was
    ///   cancelled" from a loop that ended;
    /// - ``LoopError`` naming `readable(fd:)` / `writable(fd:)` and the errno for an invalid or
    ///   closed descriptor, or when the descriptor is closed through ``close(_:)`` /
    ///   ``deregister(_:)`` while waiting;
    /// - ``LoopError/loopHasShutDown(_:)`` once the loop has shut down; a wait pending when the loop
    ///   shuts down is resumed with `CancellationError` (a task of the loop) or that error (a
    ///   foreign task).
    /// After it has thrown, `next()` returns `nil`.
    ///
    /// Any thread; iterate it from one task at a time. Nothing is registered until the first
    /// `next()`.
    /// - Parameters:
    ///   - fd: the descriptor to watch; read or write it non-blocking until `EAGAIN` after each element.
    ///   - kind: `.read` or `.write`.
    public func readiness(_ fd: Int32, _ kind: DescriptorReadiness.Kind) -> DescriptorReadiness {
        DescriptorReadiness(loop: self, fd: fd, kind: kind, scoped: nil)
    }

    /// Runs `body` with a readiness stream for `fd` (as ``readiness(_:_:)``) whose waits share one
    /// cancellation handler, installed on the calling task for the whole of `body`:
    ///
    ///     try await loop.withReadiness(fd, .read) { readiness in
    ///         for try await _ in readiness {
    ///             // read until EAGAIN
    ///         }
    ///     }
    ///
    /// A plain stream's `next()` installs and removes a handler on every wait (Swift scopes a
    /// cancellation handler to one call); here each wait is only a continuation and an entry in the
    /// descriptor's waiter list, which makes a socketpair round trip ~15 % cheaper (Benchmarks/NOTES.md).
    /// Everything else is as ``readiness(_:_:)``: the same elements, the same errors, cancellation
    /// ends a wait in progress at once and throws `CancellationError`.
    ///
    /// Iterate the stream from the calling task, one iterator at a time (every iterator made from
    /// it shares the one wait the handler covers). An iterator that outlives `body`, or is used by
    /// another task, still works: its waits then install their own handlers.
    /// Callable from any task.
    /// - Parameters:
    ///   - fd: the descriptor to watch.
    ///   - kind: `.read` or `.write`.
    ///   - body: the code that iterates the stream; it runs on the caller's executor.
    /// - Returns: what `body` returned.
    /// - Throws: what `body` throws (the stream's errors included).
    nonisolated(nonsending) public func withReadiness<T>(
        _ fd: Int32, _ kind: DescriptorReadiness.Kind,
        _ body: nonisolated(nonsending) (DescriptorReadiness) async throws -> T
    ) async throws -> T {
        let wait = DescriptorWait(fd: fd, interest: kind.interest, on: self)
        let scope = ReadinessScope()
        CancellationCallback.install
        // The handler's context is `wait`, unretained: it outlives the record (see `Loop.suspend`).
        let record = c_serial_loop_add_cancellation_handler(Unmanaged.passUnretained(wait).toOpaque())
        scope.task.store(Int(bitPattern: c_serial_loop_current_task()), ordering: .relaxed)
        defer {
            scope.task.store(0, ordering: .relaxed)
            c_serial_loop_remove_cancellation_handler(record)
            withExtendedLifetime(wait) {}
        }
        return try await body(DescriptorReadiness(loop: self, fd: fd, kind: kind, scoped: (wait, scope)))
    }
}
