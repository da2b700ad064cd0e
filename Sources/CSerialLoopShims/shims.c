#define _GNU_SOURCE
#include "CSerialLoopShims.h"
#include <dlfcn.h>
#include <stdatomic.h>
#include <stddef.h>

// The runtime's hook: `void hook(Job *job, void (*original)(Job *))`, both with swiftcc.
typedef void (*swift_enqueue_global_original_t)(void *job) __attribute__((swiftcall));
typedef void (*swift_enqueue_global_hook_t)(void *job, swift_enqueue_global_original_t original) __attribute__((swiftcall));
extern swift_enqueue_global_hook_t swift_task_enqueueGlobal_hook;

static _Atomic(c_serial_loop_global_router_t) installed_router;
_Thread_local void *c_serial_loop_current_loop_storage;
_Thread_local uint64_t c_serial_loop_thread_token_storage;

__attribute__((swiftcall))
static void c_serial_loop_enqueue_global(void *job, swift_enqueue_global_original_t original) {
    c_serial_loop_global_router_t router = atomic_load_explicit(&installed_router, memory_order_acquire);
    if (c_serial_loop_current_loop_storage != NULL && router != NULL && router(job, c_serial_loop_is_creating_task())) {
        return;
    }
    original(job);
}

void c_serial_loop_install_global_hook(c_serial_loop_global_router_t router) {
    c_serial_loop_global_router_t expected = NULL;
    if (atomic_compare_exchange_strong(&installed_router, &expected, router)) {
        swift_task_enqueueGlobal_hook = c_serial_loop_enqueue_global;
    }
}

static _Atomic uint64_t last_thread_token;

uint64_t c_serial_loop_assign_thread_token(void) {
    c_serial_loop_thread_token_storage = atomic_fetch_add_explicit(&last_thread_token, 1, memory_order_relaxed) + 1;
    return c_serial_loop_thread_token_storage;
}

extern void *swift_retain(void *object);
extern void swift_release(void *object);

void c_serial_loop_retain_task(void *task) { swift_retain(task); }
void c_serial_loop_release_task(void *task) { swift_release(task); }

// Cancellation handlers
//
// The runtime's entry points behind `withTaskCancellationHandler`: `swift_task_addCancellationHandler`
// takes a Swift closure (a swiftcc function with its context in the Swift context register) and
// returns the status record it added to the current task; `swift_task_removeCancellationHandler`
// removes and frees it. Swift code may not name runtime symbols, and C cannot make a Swift closure,
// so every handler is the same trampoline, which passes its context to the one installed callback.

typedef void (*swift_cancellation_handler_t)(void *context __attribute__((swift_context))) __attribute__((swiftcall));
extern void *swift_task_addCancellationHandler(swift_cancellation_handler_t handler, void *context) __attribute__((swiftcall));
extern void swift_task_removeCancellationHandler(void *record) __attribute__((swiftcall));

static _Atomic(c_serial_loop_cancellation_callback_t) cancellation_callback;

__attribute__((swiftcall))
static void c_serial_loop_call_cancellation_callback(void *context __attribute__((swift_context))) {
    atomic_load_explicit(&cancellation_callback, memory_order_acquire)(context);
}

void c_serial_loop_install_cancellation_callback(c_serial_loop_cancellation_callback_t callback) {
    c_serial_loop_cancellation_callback_t expected = NULL;
    atomic_compare_exchange_strong(&cancellation_callback, &expected, callback);
}

void *c_serial_loop_add_cancellation_handler(void *context) {
    return swift_task_addCancellationHandler(c_serial_loop_call_cancellation_callback, context);
}

void c_serial_loop_remove_cancellation_handler(void *record) {
    swift_task_removeCancellationHandler(record);
}

extern void *swift_task_getCurrent(void) __attribute__((swiftcall));

void *c_serial_loop_current_task(void) {
    return swift_task_getCurrent();
}
