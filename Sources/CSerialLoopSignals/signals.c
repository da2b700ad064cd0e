#include "CSerialLoopSignals.h"
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

static _Atomic int relay_write_fd = -1;

// Async-signal-safe: an atomic load, write(2), and errno saved around it (the interrupted code
// may be between a failing call and its errno check). A full pipe drops the byte: standard
// signals coalesce in the kernel anyway, and 64 KiB of unread deliveries means nobody reads.
static void c_serial_loop_signal_handler(int signo) {
    int saved = errno;
    int fd = atomic_load_explicit(&relay_write_fd, memory_order_relaxed);
    if (fd >= 0) {
        unsigned char byte = (unsigned char)signo;
        (void)write(fd, &byte, 1);
    }
    errno = saved;
}

void c_serial_loop_signal_set_pipe(int write_fd) {
    atomic_store_explicit(&relay_write_fd, write_fd, memory_order_release);
}

int c_serial_loop_signal_install(int signo, struct sigaction *previous) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = c_serial_loop_signal_handler;
    action.sa_flags = SA_RESTART;
    sigfillset(&action.sa_mask);
    return sigaction(signo, &action, previous);
}

int c_serial_loop_signal_restore(int signo, const struct sigaction *previous) {
    return sigaction(signo, previous, NULL);
}

int c_serial_loop_signal_disposition(int signo) {
    struct sigaction current;
    if (sigaction(signo, NULL, &current) != 0) return -1;
    if (current.sa_flags & SA_SIGINFO) return 3;
    if (current.sa_handler == SIG_DFL) return 0;
    if (current.sa_handler == SIG_IGN) return 1;
    if (current.sa_handler == c_serial_loop_signal_handler) return 2;
    return 3;
}

void c_serial_loop_block_all_signals(void) {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
}
