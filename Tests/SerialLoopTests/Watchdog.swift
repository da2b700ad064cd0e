@preconcurrency import Glibc

/// Turns a hang into a failure: if `body` has not returned within `seconds` of real time, a
/// helper thread prints which test hung and aborts the test process (a hung blocking call cannot
/// be cancelled, and a test that never ends would hang the whole suite). A timeout, not a sleep:
/// the helper waits on a condition variable that the body's return signals.
func withWatchdog<T>(
    seconds: Int,
    _ name: String = #function,
    _ body: () async throws -> T
) async rethrows -> T {
    let watchdog = Watchdog(seconds: seconds * watchdogScale, name: name)
    defer { watchdog.disarm() }
    return try await body()
}

private final class Watchdog: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()
    private var disarmed = false
    private var thread = pthread_t()

    init(seconds: Int, name: String) {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&condition, nil)
        let context = Unmanaged.passRetained(Context(watchdog: self, seconds: seconds, name: name)).toOpaque()
        pthread_create(&thread, nil, { raw in
            let context = Unmanaged<Context>.fromOpaque(raw!).takeRetainedValue()
            context.watchdog.watch(seconds: context.seconds, name: context.name)
            return nil
        }, context)
    }

    private final class Context {
        let watchdog: Watchdog
        let seconds: Int
        let name: String
        init(watchdog: Watchdog, seconds: Int, name: String) {
            self.watchdog = watchdog
            self.seconds = seconds
            self.name = name
        }
    }

    private func watch(seconds: Int, name: String) {
        var deadline = timespec()
        clock_gettime(CLOCK_REALTIME, &deadline)
        deadline.tv_sec += seconds
        pthread_mutex_lock(&mutex)
        while !disarmed {
            if pthread_cond_timedwait(&condition, &mutex, &deadline) == ETIMEDOUT && !disarmed {
                fputs("watchdog: \(name) did not finish within \(seconds) s; aborting the test process\n", stderr)
                abort()
            }
        }
        pthread_mutex_unlock(&mutex)
    }

    func disarm() {
        pthread_mutex_lock(&mutex)
        disarmed = true
        pthread_cond_signal(&condition)
        pthread_mutex_unlock(&mutex)
        pthread_join(thread, nil)
    }
}
