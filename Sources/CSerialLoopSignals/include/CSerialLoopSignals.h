#ifndef C_SERIAL_LOOP_SIGNALS_H
#define C_SERIAL_LOOP_SIGNALS_H

// The process-wide signal handler behind `loop.signals(...)`, in C because a signal handler must
// be async-signal-safe: it only writes the signal's number, as one byte, to a pipe (the self-pipe
// trick). Everything else — who listens, restoring dispositions — is Swift, on ordinary threads.
#include <signal.h>
#include <stdbool.h>

/// Sets the descriptor the handler writes to (a pipe's non-blocking write end). Once per process,
/// before the first `c_serial_loop_signal_install`.
void c_serial_loop_signal_set_pipe(int write_fd);

/// Installs the handler for `signo` (SA_RESTART, all signals blocked while it runs) and stores the
/// disposition it replaces in `*previous`. Returns 0, or -1 with errno set (EINVAL).
int c_serial_loop_signal_install(int signo, struct sigaction *previous);

/// Puts back a disposition saved by `c_serial_loop_signal_install`. Returns 0 or -1 with errno.
int c_serial_loop_signal_restore(int signo, const struct sigaction *previous);

/// What `signo` does now: 0 default, 1 ignored, 2 this library's handler, 3 another handler,
/// -1 not a signal (errno set).
int c_serial_loop_signal_disposition(int signo);

/// Blocks every signal in the calling thread (for the relay thread, which must never run the handler).
void c_serial_loop_block_all_signals(void);

#endif
