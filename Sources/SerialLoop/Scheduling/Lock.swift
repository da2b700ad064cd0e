@preconcurrency import Glibc

/// A plain pthread mutex. The loop uses it rather than `Synchronization.Mutex` because
/// ThreadSanitizer understands pthread mutexes (it does not see the futex inside `Mutex`, and then
/// reports the data handed over under the lock as a race). Uncontended, it costs the same.
/// `State` may be noncopyable (the inbox's ring buffer of work).
final class Lock<State: ~Copyable>: @unchecked Sendable {
    // Unchecked Sendable: `state` is read and written only inside `withLock`, under `mutex`.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var state: State

    init(_ state: consuming State) {
        self.state = state
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    @inline(__always)
    func withLock<T>(_ body: (inout State) throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&state)
    }
}
