import CSerialLoopShims

// The one door through which a loop API suspends its caller
//
// Every `async` loop API that waits for the loop — `sleep`, `readable`/`writable`, `future.value`,
// `gather` — suspends through `Loop.suspend(_:)`. The door is what makes "no continuation is ever
// dropped" true by construction rather than case by case:
//
// - On the loop thread, a live loop starts the wait at once (no allocation, no lock); a loop that
//   has shut down fails it at once with `LoopError.loopHasShutDown`.
// - From another thread, the start travels through the inbox as a `.suspension` item. The inbox
//   accepts it only while it is open; when shutdown closes the inbox, every `.suspension` still in
//   it is *rejected* (its caller is resumed with the shutdown error) and every later push is
//   refused, so the caller fails at once. There is no window in which a start can be accepted and
//   then silently dropped: acceptance and closing are serialised by the inbox lock.
// - A wait that is pending when shutdown begins is resumed by shutdown: a task of the loop with
//   `CancellationError` (it unwinds, as under `asyncio.run`), a foreign task — one that suspended
//   from another thread — with the shutdown error (`LoopContinuation.resumeForShutdown`).
//
// Foreign tasks resume on their own executors: a test loop captures only tasks created on its
// thread (GlobalRouting.swift), so resuming a foreign task from the loop thread sends its job to
// the runtime as usual.

/// A task suspended in a loop API: its continuation, and whether the task belongs to the loop.
struct LoopContinuation<Value: Sendable>: Sendable {
    let raw: UnsafeContinuation<Value, any Error>
    /// The task suspended from another thread: it runs on its own executor, not on this loop.
    let isForeign: Bool

    init(_ raw: UnsafeContinuation<Value, any Error>, isForeign: Bool) {
        self.raw = raw
        self.isForeign = isForeign
    }

    @inline(__always)
    func resume(with result: Result<Value, any Error>) {
        raw.resume(with: result)
    }

    @inline(__always)
    func resume(returning value: Value) { resume(with: .success(value)) }

    @inline(__always)
    func resume(throwing error: any Error) { resume(with: .failure(error)) }

    /// Shutdown ends the wait: a task of the loop unwinds with `CancellationError`; a foreign task
    /// learns that the loop it waited on is gone.
    func resumeForShutdown(_ operation: @autoclosure () -> String) {
        resume(throwing: isForeign ? LoopError.loopHasShutDown(operation()) as any Error : CancellationError())
    }
}

extension LoopContinuation where Value == Void {
    @inline(__always)
    func resume() { resume(with: .success(())) }
}

/// One wait in a loop API, as the door needs it. Its state lives on the loop thread.
protocol Suspension: AnyObject, Sendable {
    associatedtype Value: Sendable
    /// The loop the wait is on: a cancellation arrives with nothing but this object (see
    /// `Loop.suspend`), and is sent here.
    var loop: Loop { get }
    /// The operation, as errors name it (`"readable(fd: 7)"`).
    var operation: String { get }
    /// Loop thread, loop not shut down. Begins the wait; from here the suspension owns
    /// `continuation` and must resume it exactly once (or hand it to something that will).
    func start(on loop: Loop, _ continuation: LoopContinuation<Value>)
    /// Loop thread, any run state. The caller's task was cancelled, possibly before `start`:
    /// stop waiting and resume with `CancellationError` if it is waiting; make a later `start` fail.
    func cancel(on loop: Loop)
}

extension Loop {
    /// Suspends the calling task in `suspension` (whose `loop` is `self`): see the notes at the top
    /// of this file.
    ///
    /// Runs on the caller's executor (`nonisolated(nonsending)`, as must every `async` function
    /// between a public wait and this door). Each executor switch costs the runtime a lookup of
    /// the task's preferred executor under the task's status lock (~250–300 instructions), and a task
    /// of the loop should pay for one switch per wait — the hop back to the caller's executor that
    /// Swift emits after a continuation resumes — not one per function it passed through (a
    /// `readable` round trip made 12 switches when these were plain `nonisolated` functions).
    /// Hence also no `withTaskCancellationHandler` and `withUnsafeThrowingContinuation`: they take
    /// `isolation: isolated (any Actor)?`, and hopping to that dynamic isolation is a switch on every
    /// entry and return, even to where the task already is. The cancellation handler is installed
    /// through the runtime's own entry points instead (CSerialLoopShims), and the continuation is
    /// taken by the standard library's executor-inheriting variant.
    ///
    /// `isCovered`: the task already has a cancellation handler for `suspension` installed, for
    /// longer than this wait — a readiness scope's (`Loop.withReadiness`) — so this wait adds and
    /// removes none (~600 instructions saved a wait, most of it the removal under the task's status
    /// lock). One function with a flag rather than two: a second inlined copy of the suspension
    /// made every wait through it dearer.
    @inline(__always)
    nonisolated(nonsending) func suspend<S: Suspension>(_ suspension: S, isCovered: Bool = false) async throws -> S.Value {
        assert(suspension.loop === self, "a wait is started on the loop its cancellation is sent to")
        CancellationCallback.install
        // The handler's context is `suspension`, unretained: it must outlive the record. Once the
        // removal returns, the runtime will not call the handler, and no call is under way.
        let record = isCovered ? nil : c_serial_loop_add_cancellation_handler(Unmanaged.passUnretained(suspension).toOpaque())
        defer {
            if let record { c_serial_loop_remove_cancellation_handler(record) }
            withExtendedLifetime(suspension) {}
        }
        return try await _unsafeInheritExecutor_withUnsafeThrowingContinuation { (raw: UnsafeContinuation<S.Value, any Error>) in
            if isOnLoopThread {
                if metricsStorage.capturesSites.load(ordering: .relaxed) { noteTaskName() }
                if runState.isShutDown {
                    raw.resume(throwing: LoopError.loopHasShutDown(suspension.operation))
                } else {
                    suspension.start(on: self, LoopContinuation(raw, isForeign: false))
                }
            } else {
                startFromOtherThread(suspension, LoopContinuation(raw, isForeign: true))
            }
        }
    }

    private func startFromOtherThread<S: Suspension>(_ suspension: S, _ continuation: LoopContinuation<S.Value>) {
        let accepted = inbox.push(.suspension { isLoopAlive in
            if isLoopAlive {
                suspension.start(on: self, continuation)
            } else {
                continuation.resume(throwing: LoopError.loopHasShutDown(suspension.operation))
            }
        })
        if !accepted { continuation.resume(throwing: LoopError.loopHasShutDown(suspension.operation)) }
    }
}

/// What every wait's cancellation handler calls, on the cancelling thread (or at once, on the
/// waiting one, if the task was already cancelled): the wait's `cancel(on:)`, sent to its loop.
/// `install` registers it with the shim once per process, on first use (a lazy static).
enum CancellationCallback {
    static let install: Void = c_serial_loop_install_cancellation_callback { context in
        let suspension = Unmanaged<AnyObject>.fromOpaque(context!).takeUnretainedValue() as! any Suspension
        suspension.loop.sendToLoop { suspension.cancel(on: suspension.loop) }
    }
}

extension Loop {
    /// The door for waits that cannot fail (`runUntilIdle`, `advance`): runs `body` on the loop
    /// thread while the loop lives; once it has shut down, runs `reject` instead, at once.
    func onLiveLoop(_ body: @escaping () -> Void, orElse reject: @escaping () -> Void) {
        if isOnLoopThread {
            if runState.isShutDown { reject() } else { body() }
        } else if !inbox.push(.suspension({ isLoopAlive in isLoopAlive ? body() : reject() })) {
            reject()
        }
    }
}

// MARK: The wait state machine

/// Where a ``SingleWait`` is.
enum WaitPhase {
    /// Before the start, or after a start whose registration resumed at once.
    case idle
    /// Registered; `token` takes the registration back (stale once it resumed: nothing found).
    case waiting(token: UInt64)
    /// The task was cancelled: final, every later start fails at once.
    case cancelled
}

/// A wait with one continuation (`sleep`, `readable`/`writable`, a readiness stream's `next()`,
/// `future.value`), shared by the waiting task and its cancellation handler. A conforming type
/// says only what it registers the continuation with — a timer, a descriptor's waiter list, a
/// future's awaiters — and how it takes the registration back; the state machine is the one
/// below. Loop thread only (the door starts waits there, cancellation is sent there).
///
/// - `idle` —start→ `waiting(token)`, or stays `idle` if the registration resumed at once.
/// - `waiting(token)`: the registration resumes the continuation when the wait is over; the phase
///   keeps the token, now stale (a withdrawal finds nothing). A readiness stream starts the same
///   wait again for its next element.
/// - any —cancel→ `cancelled`: a registered continuation is withdrawn and resumed with
///   `CancellationError`; whoever takes a continuation (the withdrawal or the registration's
///   wake-up) resumes it, so it is resumed exactly once. `cancelled` is final: a cancellation that
///   arrives before the start (both may travel through the inbox) or after the wait it was meant
///   for ended makes the next start fail, which is what a stream's task wants: cancellation is sticky.
///
/// A protocol with the machine in its extension, not a generic class holding the registration:
/// each wait stays a concrete class (specialised, inlined). A generic wait class measured ~350
/// more instructions per `readable` wait with a generic token (a `swift_getGenericMetadata` lookup
/// as the wait is destroyed), still ~10 more with the token fixed to `UInt64` (destroying a field
/// of generic type goes through its value witness).
protocol SingleWait: Suspension {
    /// Loop thread only; stored `@exclusivity(unchecked)` by the conforming class.
    var phase: WaitPhase { get set }
    /// Loop thread. Registers `continuation`, to be resumed once when the wait is over, and returns
    /// the token to take it back with (a timer's or waiter's ID); or resumes it at once (ready
    /// already, or an error) and returns `nil`.
    func register(_ continuation: LoopContinuation<Value>, on loop: Loop) -> UInt64?
    /// Loop thread. Takes back the registration `token` names and returns its continuation, not
    /// yet resumed; `nil` if it was resumed already (the token is stale).
    func withdraw(_ token: UInt64, on loop: Loop) -> LoopContinuation<Value>?
}

extension SingleWait {
    @inline(__always)
    func start(on loop: Loop, _ continuation: LoopContinuation<Value>) {
        if case .cancelled = phase {
            continuation.resume(throwing: CancellationError())
            return
        }
        if let token = register(continuation, on: loop) {
            phase = .waiting(token: token)
        } else {
            phase = .idle
        }
    }

    func cancel(on loop: Loop) {
        if case .waiting(let token) = phase, let continuation = withdraw(token, on: loop) {
            continuation.resume(throwing: CancellationError())
        }
        phase = .cancelled
    }
}
