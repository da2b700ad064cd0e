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

// ---- The main thread and Dispatch's main queue (see Entry/MainThread.swift) ----
// libdispatch's run-loop hooks, the ones swift-corelibs-foundation's RunLoop uses to serve the main
// queue. libdispatch.so exports them but its public headers do not declare them.
//
// A descriptor (an eventfd on Linux) that becomes readable when the main queue has work.
int _dispatch_get_main_queue_handle_4CF(void);
// Drains the main queue; only on the main thread, and never after dispatch_main().
void _dispatch_main_queue_callback_4CF(void *msg);

#include <sys/syscall.h>
// Whether the caller is the process's initial thread (the one `main` runs on): Linux thread id
// equals the process id only there.
static inline bool c_serial_loop_is_main_thread(void) { return syscall(SYS_gettid) == getpid(); }

#endif
