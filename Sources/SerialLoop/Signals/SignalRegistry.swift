@preconcurrency import Glibc
import CSerialLoopSignals
import Synchronization

/// The process-wide side of `loop.signals(...)`: which listeners want which signal, the
/// dispositions to put back, the self-pipe and the relay thread. Any thread; one lock.
///
/// Lock order: the registry's lock may be held while calling `sigaction`, never while calling
/// into a loop (deliveries are made from a snapshot, outside the lock).
final class SignalRegistry: Sendable {
    private struct State {
        var listeners: [Int32: [SignalListener]] = [:]
        /// The disposition each signal had before its first listener, to restore after its last.
        var previous: [Int32: SavedDisposition] = [:]
    }

    private struct SavedDisposition {
        var action: sigaction
    }

    private let state = Lock(State())
    private let readFD: Int32

    private static let started = Atomic<Bool>(false)
    /// Whether any `signals(...)` ever ran in this process (so shutdown need not create the relay).
    static var isStarted: Bool { started.load(ordering: .acquiring) }

    /// Created by the first `signals(...)`: the pipe and the relay thread live as long as the process.
    static let shared: SignalRegistry = {
        let registry = SignalRegistry()
        started.store(true, ordering: .releasing)
        return registry
    }()

    private init() {
        var fds: [Int32] = [-1, -1]
        precondition(pipe(&fds) == 0, "SerialLoop: pipe() for signal delivery failed: \(errnoName(errno))")
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        // The handler must never block: a full pipe drops the byte instead.
        _ = fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK)
        readFD = fds[0]
        c_serial_loop_signal_set_pipe(fds[1])
        let thread = spawnThread { [readFD] in SignalRegistry.relay(readFD) }
        pthread_detach(thread)
    }

    /// The relay thread: turns bytes written by the handler into deliveries, forever.
    private static func relay(_ fd: Int32) {
        c_serial_loop_block_all_signals()     // the handler never runs here: this thread must read
        var bytes = [UInt8](repeating: 0, count: 256)
        while true {
            let count = read(fd, &bytes, bytes.count)
            if count <= 0 {
                if count < 0 && errno == EINTR { continue }
                fputs("SerialLoop: the signal relay pipe failed (\(count < 0 ? errnoName(errno) : "end of file")); signals are no longer delivered\n", stderr)
                return
            }
            for byte in bytes[..<count] {
                let signal = Int32(byte)
                let listeners = shared.state.withLock { $0.listeners[signal] ?? [] }
                for listener in listeners { listener.deliver(signal) }
            }
        }
    }

    /// Registers `listener` for its signals, installing the handler for those nobody listened to yet.
    /// All or nothing: if one installation fails, those made by this call are undone.
    func add(_ listener: SignalListener, operation: String) throws(LoopError) {
        let failure: LoopError? = state.withLock { state in
            var installed: [Int32] = []
            for signal in listener.signals where state.listeners[signal, default: []].isEmpty {
                var previous = sigaction()
                if c_serial_loop_signal_install(signal, &previous) != 0 {
                    let code = errno
                    for undo in installed {
                        var saved = state.previous.removeValue(forKey: undo)!.action
                        _ = c_serial_loop_signal_restore(undo, &saved)
                    }
                    return LoopError(operation: operation, errno: code)
                }
                state.previous[signal] = SavedDisposition(action: previous)
                installed.append(signal)
            }
            for signal in listener.signals { state.listeners[signal, default: []].append(listener) }
            return nil
        }
        if let failure { throw failure }
    }

    /// Unregisters `listener` (idempotent), restoring the disposition of each signal it was the
    /// last listener of.
    func remove(_ listener: SignalListener) {
        state.withLock { state in
            for signal in listener.signals {
                guard var list = state.listeners[signal], let index = list.firstIndex(where: { $0 === listener }) else { continue }
                list.remove(at: index)
                if list.isEmpty {
                    state.listeners[signal] = nil
                    if var saved = state.previous.removeValue(forKey: signal)?.action {
                        _ = c_serial_loop_signal_restore(signal, &saved)
                    }
                } else {
                    state.listeners[signal] = list
                }
            }
        }
    }

    /// Unregisters every listener of `loop` (shutdown) and returns them.
    func removeAll(of loop: Loop) -> [SignalListener] {
        let mine = state.withLock { state in
            var seen = Set<ObjectIdentifier>()
            return state.listeners.values.joined().filter { $0.loop === loop && seen.insert(ObjectIdentifier($0)).inserted }
        }
        for listener in mine { remove(listener) }
        return mine
    }
}
