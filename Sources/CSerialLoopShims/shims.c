#include "CSerialLoopShims.h"
#include <stdatomic.h>

// The runtime's hook: `void hook(Job *job, void (*original)(Job *))`, both with swiftcc.
typedef void (*swift_enqueue_global_original_t)(void *job) __attribute__((swiftcall));
typedef void (*swift_enqueue_global_hook_t)(void *job, swift_enqueue_global_original_t original) __attribute__((swiftcall));
extern swift_enqueue_global_hook_t swift_task_enqueueGlobal_hook;

static _Atomic(c_serial_loop_global_router_t) installed_router;
static _Thread_local void *current_loop;
static _Thread_local bool passing_through;

__attribute__((swiftcall))
static void c_serial_loop_enqueue_global(void *job, swift_enqueue_global_original_t original) {
    c_serial_loop_global_router_t router = atomic_load_explicit(&installed_router, memory_order_acquire);
    if (current_loop != NULL && !passing_through && router != NULL && router(job)) {
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

void *c_serial_loop_current_loop(void) { return current_loop; }
void c_serial_loop_set_current_loop(void *loop) { current_loop = loop; }
void c_serial_loop_set_passing_through(bool value) { passing_through = value; }
