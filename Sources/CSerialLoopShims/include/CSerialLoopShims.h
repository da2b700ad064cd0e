#ifndef C_SERIAL_LOOP_SHIMS_H
#define C_SERIAL_LOOP_SHIMS_H

// Glibc's Swift overlay does not export epoll or eventfd, so this header makes them visible to the
// SerialLoop module. The only logic here is the global-enqueue hook below (shims.c), which must use
// the Swift calling convention and so cannot be written in Swift, the cancellation-handler calls
// into the runtime (shims.c, for the same reason), and the weak references to the opt-in half of
// virtual time (virtual_time.c). This target defines no libc or runtime symbol: see
// RUNTIME-INTERFACE.md for every one the package uses or (opt-in) replaces.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <unistd.h>
#include <time.h>
#include <stdint.h>

// errno through a function: Swift cannot read the thread-local macro directly on every libc.
static inline int c_serial_loop_errno(void) { return errno; }

/// Decides whether a job headed for Swift's global executor should run on the current thread's
/// loop instead. `is_new_task`: the job is a task being created on this thread right now.
/// Returns true if it took the job.
typedef bool (*c_serial_loop_global_router_t)(void *job, bool is_new_task);

/// Installs `swift_task_enqueueGlobal_hook` (once per process) so that global enqueues consult
/// `router` first and fall through to the runtime's own global executor otherwise.
void c_serial_loop_install_global_hook(c_serial_loop_global_router_t router);

// The thread-locals behind the two functions below (shims.c). Read inline: `Loop.isOnLoopThread`,
// on every enqueue, schedule and cancel, costs a thread-local load and a compare, no call.
extern _Thread_local void *c_serial_loop_current_loop_storage;
extern _Thread_local uint64_t c_serial_loop_thread_token_storage;
uint64_t c_serial_loop_assign_thread_token(void);

/// The loop running on this thread (an unretained pointer), or NULL.
static inline void *c_serial_loop_current_loop(void) { return c_serial_loop_current_loop_storage; }
static inline void c_serial_loop_set_current_loop(void *loop) { c_serial_loop_current_loop_storage = loop; }

/// A number that identifies the calling thread and that no other thread of the process ever gets
/// (assigned on first call, from 1 up). Unlike a `pthread_t`, it is not reused once a thread ends.
static inline uint64_t c_serial_loop_thread_token(void) {
    uint64_t token = c_serial_loop_thread_token_storage;
    return __builtin_expect(token != 0, 1) ? token : c_serial_loop_assign_thread_token();
}

/// Keeps a task alive while a test loop remembers it as its own (so its address is not reused).
void c_serial_loop_retain_task(void *task);
void c_serial_loop_release_task(void *task);

// MARK: Cancellation handlers without an executor hop (shims.c)

/// What a cancellation handler installed below calls: `context` is the one given to `add`.
/// Called at most once per handler, on the thread that cancels the task (at once, on the calling
/// thread, when the task is already cancelled as the handler is added).
typedef void (*c_serial_loop_cancellation_callback_t)(void *context);

/// Sets the callback every handler calls (once per process; later calls are ignored).
void c_serial_loop_install_cancellation_callback(c_serial_loop_cancellation_callback_t callback);

/// The runtime's `swift_task_addCancellationHandler`: installs a handler on the current task that
/// calls the callback with `context`, until `c_serial_loop_remove_cancellation_handler(record)`.
/// What `withTaskCancellationHandler` does around its operation, without that function's executor
/// hops (see `Loop.suspend`). The record lives on the task's allocator: remove it before anything
/// the task allocated after it is freed, i.e. before the calling function returns.
void *c_serial_loop_add_cancellation_handler(void *context);
void c_serial_loop_remove_cancellation_handler(void *record);

/// The task running on this thread (`swift_task_getCurrent`), or NULL: an identity only, never
/// dereferenced or retained — what a readiness scope compares to know its handler covers a wait.
void *c_serial_loop_current_task(void);

// MARK: Virtual time, if the program links it (virtual_time.c)

/// Whether the program links the opt-in half of virtual time (the `SerialLoopVirtualTime` target:
/// the interposed `clock_gettime` and `swift_task_create`). Without it a test loop cannot start.
bool c_serial_loop_virtual_time_is_linked(void);

/// What `clock_gettime` answers on this thread for the monotonic clocks (MONOTONIC, _RAW,
/// _COARSE, BOOTTIME): the virtual instant `nanoseconds` when `active` (to every caller but
/// libdispatch), libc's answer otherwise. No-op when virtual time is not linked.
void c_serial_loop_set_thread_virtual_clock(bool active, int64_t nanoseconds);
void c_serial_loop_set_thread_virtual_nanoseconds(int64_t nanoseconds);

/// libc's `clock_gettime`, bypassing the interposer if there is one: the loop's own real-time reads.
int c_serial_loop_real_clock_gettime(clockid_t clock, struct timespec *spec);

/// Whether `clock_gettime` in this process resolves to the interposer (diagnostics and tests).
bool c_serial_loop_clock_is_interposed(void);

/// Whether libdispatch's clock reads are told apart (and stay real on a test loop's thread).
bool c_serial_loop_dispatch_reads_real_time(void);

/// Whether a task is being created on this thread right now (`swift_task_create` is running);
/// always false when virtual time is not linked (nothing needs to know then).
bool c_serial_loop_is_creating_task(void);

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
