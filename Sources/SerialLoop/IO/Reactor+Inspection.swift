extension Reactor where Backend: ~Copyable {
    /// Every suspended waiter, by descriptor (`loop.pendingWork`).
    func allWaiters() -> [ReadinessWaiter] {
        var all: [ReadinessWaiter] = []
        for registration in registrations where registration.hasWaiters {
            all += registration.readers
            all += registration.writers
        }
        return all
    }

    /// Descriptors with suspended waiters, and how many (leftover reports).
    func waitingDescriptors() -> [(fd: Int32, readers: Int, writers: Int)] {
        registrations.indices.compactMap { fd in
            let r = registrations[fd]
            return r.hasWaiters ? (Int32(fd), r.readers.count, r.writers.count) : nil
        }
    }

    /// Descriptors with waiters or reader/writer callbacks, described for a stall report.
    func descriptorsInFlight() -> String {
        let described = registrations.indices.compactMap { fd -> String? in
            let r = registrations[fd]
            var parts: [String] = []
            if !r.readers.isEmpty { parts.append("\(r.readers.count) readable()") }
            if !r.writers.isEmpty { parts.append("\(r.writers.count) writable()") }
            if r.readerCallback != nil { parts.append("a reader callback") }
            if r.writerCallback != nil { parts.append("a writer callback") }
            return parts.isEmpty ? nil : "fd \(fd): " + parts.joined(separator: ", ")
        }
        return described.isEmpty ? "no descriptor" : described.joined(separator: "; ")
    }

    /// The hand-kept counters agree with the table, and every waiter is filed under its own
    /// descriptor and kind. O(descriptors + waiters): tests, and debug-build checks.
    func checkInvariants() {
        var waiters = 0, callbacks = 0, watched = 0, unverifiedRegistrations = 0
        for (index, registration) in registrations.enumerated() {
            waiters += registration.readers.count + registration.writers.count
            callbacks += (registration.readerCallback != nil ? 1 : 0) + (registration.writerCallback != nil ? 1 : 0)
            if !registration.kernelInterest.isEmpty { watched += 1 }
            if registration.isUnverified {
                unverifiedRegistrations += 1
                precondition(unverified.contains(Int32(index)), "reactor: fd \(index) is unverified but not listed")
            }
            for waiter in registration.readers { precondition(waiter.fd == Int32(index) && waiter.interest == .read, "reactor: reader \(waiter.id) filed under fd \(index)") }
            for waiter in registration.writers { precondition(waiter.fd == Int32(index) && waiter.interest == .write, "reactor: writer \(waiter.id) filed under fd \(index)") }
        }
        precondition(waiters == waiterCount, "reactor: waiterCount \(waiterCount), table has \(waiters)")
        precondition(callbacks == callbackCount, "reactor: callbackCount \(callbackCount), table has \(callbacks)")
        precondition(watched == kernelRegistrationCount, "reactor: kernelRegistrationCount \(kernelRegistrationCount), table has \(watched)")
        precondition(unverifiedRegistrations == unverifiedCount, "reactor: unverifiedCount \(unverifiedCount), table has \(unverifiedRegistrations)")
        precondition(scratchWaiters.isEmpty, "reactor: scratch buffer not empty between polls")
    }
}
