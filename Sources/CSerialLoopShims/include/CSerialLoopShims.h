#ifndef C_SERIAL_LOOP_SHIMS_H
#define C_SERIAL_LOOP_SHIMS_H

// Glibc's Swift overlay does not export epoll or eventfd, so this header makes them visible to the
// SerialLoop module. The only logic here is the global-enqueue hook below, which must use the
// Swift calling convention and so cannot be written in Swift.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <unistd.h>
#include <time.h>

// errno through a function: Swift cannot read the thread-local macro directly on every libc.
static inline int c_serial_loop_errno(void) { return errno; }

/// Decides whether a job headed for Swift's global executor should run on the current thread's
/// loop instead. Returns true if it took the job.
typedef bool (*c_serial_loop_global_router_t)(void *job);

/// Installs `swift_task_enqueueGlobal_hook` (once per process) so that global enqueues consult
/// `router` first and fall through to the runtime's own global executor otherwise.
void c_serial_loop_install_global_hook(c_serial_loop_global_router_t router);

/// The loop running on this thread (an unretained pointer), or NULL.
void *c_serial_loop_current_loop(void);
void c_serial_loop_set_current_loop(void *loop);

/// While true, global enqueues on this thread go to the runtime even if a loop runs here: set
/// around the resumption of a task that does not belong to the loop (Suspension.swift).
void c_serial_loop_set_passing_through(bool value);

#endif
