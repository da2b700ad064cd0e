// Which jobs are new tasks: an interposed `swift_task_create` (opt-in, like clock.c).
//
// A test loop takes over the tasks that code on its thread *creates* (`Task {}`,
// `Task.detached {}`), never tasks that merely get *resumed* from its thread (a foreign task
// awaiting a loop task's value, or a continuation the loop resumes). The global-enqueue hook
// (CSerialLoopShims/shims.c) cannot tell the two apart from the job alone, so `swift_task_create`
// — which compiled Swift code calls through the PLT, and which enqueues a new task synchronously
// before it returns — is wrapped here: while it runs, `creating_task` is set on this thread. (The
// runtime's internal task creations, e.g. a `Task.sleep` wake-up, do not come through here; they
// need not.)
//
// Why this cannot be linked with `--static-swift-stdlib`: the static Concurrency library defines
// `swift_task_create` in the same link, and a static link cannot have two definitions. (A
// dynamically linked runtime is found with RTLD_NEXT below.)
#define _GNU_SOURCE
#include "CSerialLoopVirtualTime.h"
#include <dlfcn.h>
#include <stdatomic.h>
#include <stddef.h>

static _Thread_local int creating_task;

typedef struct { void *task; void *context; } c_serial_loop_task_and_context;
typedef c_serial_loop_task_and_context (*swift_task_create_t)(size_t flags, void *options, const void *result_type,
                                                              void *closure_entry, void *closure_context) __attribute__((swiftcall));

static _Atomic(swift_task_create_t) real_task_create;

__attribute__((swiftcall, visibility("default"), used))
c_serial_loop_task_and_context swift_task_create(size_t flags, void *options, const void *result_type,
                                                 void *closure_entry, void *closure_context) {
    swift_task_create_t real = atomic_load_explicit(&real_task_create, memory_order_acquire);
    if (real == NULL) {
        real = (swift_task_create_t)dlsym(RTLD_NEXT, "swift_task_create");
        atomic_store_explicit(&real_task_create, real, memory_order_release);
    }
    creating_task += 1;
    c_serial_loop_task_and_context result = real(flags, options, result_type, closure_entry, closure_context);
    creating_task -= 1;
    return result;
}

bool c_serial_loop_vt_is_creating_task(void) { return creating_task > 0; }
