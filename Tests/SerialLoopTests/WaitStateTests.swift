import Testing
@testable import SerialLoop

/// The one wait state machine (`SingleWait`, Suspension.swift), driven through the loop's door
/// with a probe registration, so each race is made to happen rather than hoped for.
@Suite("The wait state machine")
struct WaitStateTests {
    /// A wait whose registration the test holds: it resumes or withdraws it by hand.
    final class Probe: SingleWait, @unchecked Sendable {
        // Unchecked Sendable: loop thread only (the tests run on it).
        typealias Value = Int
        let loop: Loop
        @exclusivity(unchecked) var phase = WaitPhase.idle
        var registered: LoopContinuation<Int>?
        var registrations = 0
        var withdrawals = 0
        /// The registration resumes the continuation at once (ready already) with this value.
        var readyValue: Int?

        init(_ loop: Loop) { self.loop = loop }

        var operation: String { "probe" }

        func register(_ continuation: LoopContinuation<Int>, on loop: Loop) -> UInt64? {
            registrations += 1
            if let readyValue {
                continuation.resume(returning: readyValue)
                return nil
            }
            registered = continuation
            return UInt64(registrations)
        }

        func withdraw(_ token: UInt64, on loop: Loop) -> LoopContinuation<Int>? {
            withdrawals += 1
            defer { registered = nil }
            return token == UInt64(registrations) ? registered : nil
        }

        /// What the registration does when the wait is over: resumes and forgets the continuation.
        func complete(_ value: Int) {
            registered?.resume(returning: value)
            registered = nil
        }

        var isWaiting: Bool {
            if case .waiting = phase { return true }
            return false
        }
    }

    /// A cancellation that arrives after the wait it was meant for ended finds nothing to resume
    /// (no second resume), and makes the next start fail at once: cancellation is sticky.
    @Test func aLateCancellationResumesNothingAndFailsTheNextStart() async throws {
        try await withWatchdog(seconds: 10) { try await withLoop { loop in
            let probe = Probe(loop)
            let first = Task(executorPreference: loop) { try await loop.suspend(probe) }
            await loop.idleTick()
            #expect(probe.isWaiting)
            probe.complete(1)
            let value = try await first.value
            #expect(value == 1)
            probe.cancel(on: loop)                              // late: the wait is over
            #expect(probe.withdrawals == 1)
            let second = Task(executorPreference: loop) { try await loop.suspend(probe) }
            await #expect(throws: CancellationError.self) { try await second.value }
            #expect(probe.registrations == 1, "a cancelled wait never registers again")
        } }
    }

    /// Cancelled while registered: the continuation is withdrawn and resumed with
    /// `CancellationError`, once; the registration cannot resume it any more.
    @Test func aCancellationMidWaitWithdrawsAndResumesOnce() async throws {
        try await withWatchdog(seconds: 10) { try await withLoop { loop in
            let probe = Probe(loop)
            let waiter = Task(executorPreference: loop) { try await loop.suspend(probe) }
            await loop.idleTick()
            #expect(probe.isWaiting)
            probe.cancel(on: loop)
            #expect(probe.registered == nil, "withdrawn")
            await #expect(throws: CancellationError.self) { try await waiter.value }
            probe.cancel(on: loop)                              // again: nothing left to resume
            #expect(probe.withdrawals == 1, "the second cancellation found the phase cancelled")
        } }
    }

    /// Cancelled before it starts (the task was cancelled first): the start fails at once and
    /// registers nothing.
    @Test func aCancellationBeforeTheStartFailsItWithoutRegistering() async throws {
        try await withWatchdog(seconds: 10) { try await withLoop { loop in
            let probe = Probe(loop)
            probe.cancel(on: loop)
            #expect(probe.withdrawals == 0, "nothing to withdraw before the start")
            let waiter = Task(executorPreference: loop) { try await loop.suspend(probe) }
            await #expect(throws: CancellationError.self) { try await waiter.value }
            #expect(probe.registrations == 0)
        } }
    }

    /// A registration that resumes at once (ready already) leaves the wait idle, so a readiness
    /// stream can start it again, and a cancellation then withdraws nothing.
    @Test func aRegistrationThatResumesAtOnceLeavesTheWaitIdle() async throws {
        try await withWatchdog(seconds: 10) { try await withLoop { loop in
            let probe = Probe(loop)
            probe.readyValue = 5
            let first = Task(executorPreference: loop) { try await loop.suspend(probe) }
            let firstValue = try await first.value
            #expect(firstValue == 5)
            if case .idle = probe.phase {} else { Issue.record("phase: \(probe.phase)") }
            let second = Task(executorPreference: loop) { try await loop.suspend(probe) }
            let secondValue = try await second.value
            #expect(secondValue == 5)
            probe.cancel(on: loop)
            #expect(probe.withdrawals == 0 && probe.registrations == 2)
        } }
    }
}
