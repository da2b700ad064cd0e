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
/// loop instead. `is_new_task`: the job is a task being created on this thread right now.
/// Returns true if it took the job.
typedef bool (*c_serial_loop_global_router_t)(void *job, bool is_new_task);

/// Installs `swift_task_enqueueGlobal_hook` (once per process) so that global enqueues consult
/// `router` first and fall through to the runtime's own global executor otherwise.
void c_serial_loop_install_global_hook(c_serial_loop_global_router_t router);

/// The loop running on this thread (an unretained pointer), or NULL.
void *c_serial_loop_current_loop(void);
void c_serial_loop_set_current_loop(void *loop);

/// Keeps a task alive while a test loop remembers it as its own (so its address is not reused).
void c_serial_loop_retain_task(void *task);
void c_serial_loop_release_task(void *task);

#endif
