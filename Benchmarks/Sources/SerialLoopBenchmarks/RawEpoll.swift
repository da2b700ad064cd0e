@preconcurrency import Glibc
import CBenchmarkShims

/// The physical limit for socketpair ping-pong: one thread, epoll, two descriptors, no executor,
/// no tasks, no callbacks. One round trip = write(a), epoll_wait, read(b), write(b), epoll_wait, read(a).
/// `idle` descriptors are added to the same epoll set (EPOLLIN) and never become ready: the growth
/// rows' kernel-side reference.
func rawEpollPingPong(_ rounds: Int, idle: [Int32] = []) -> Double {
    let (a, b) = socketPair()
    let epollFD = epoll_create1(0)
    var event = epoll_event()
    event.events = EPOLLIN.rawValue
    event.data.fd = a
    epoll_ctl(epollFD, EPOLL_CTL_ADD, a, &event)
    event.data.fd = b
    epoll_ctl(epollFD, EPOLL_CTL_ADD, b, &event)
    for fd in idle {
        event.data.fd = fd
        precondition(epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) == 0)
    }
    var events = [epoll_event](repeating: epoll_event(), count: 8)
    var byte: UInt8 = 1
    let start = ContinuousClock.now
    _ = write(a, &byte, 1)
    var done = 0
    while done < rounds {
        let count = epoll_wait(epollFD, &events, 8, -1)
        for index in 0..<Int(max(count, 0)) {
            let fd = events[index].data.fd
            guard read(fd, &byte, 1) == 1 else { continue }
            if fd == b {
                _ = write(b, &byte, 1)
            } else {
                done += 1
                if done < rounds { _ = write(a, &byte, 1) }
            }
        }
    }
    let result = nanoseconds(since: start) / Double(rounds)
    close(a); close(b); close(epollFD)
    return result
}
