// The runtime's clocks on a test loop's thread: an interposed `clock_gettime`.
//
// Opt-in. This file is part of the `SerialLoopVirtualTime` product (which `SerialLoopTesting`
// brings along): only a program that links that product carries this definition. The core library
// refers to the functions below through weak references (CSerialLoopShims/virtual_time.c), so a
// program that does not link it replaces nothing process-wide, and a test loop there fails to start
// with an error that says what to link. See RUNTIME-INTERFACE.md for every symbol the package uses.
//
// Why. `Task.sleep(for: d)`, `ContinuousClock().sleep` and `SuspendingClock` sleeps compute an
// absolute deadline `now + d` inside the Swift runtime and hand the loop only that instant. For a
// test loop to put the sleep at exactly `virtualNow + d`, the runtime's `now` must already be
// virtual. `ContinuousClock.now` (CLOCK_BOOTTIME on Linux) and `SuspendingClock.now`
// (CLOCK_MONOTONIC) end in libc's `clock_gettime`, called through the PLT from libswift_Concurrency.
// A definition named `clock_gettime` in this target, linked into the executable, takes precedence
// over libc's (ordinary ELF symbol interposition), so every caller in the process reaches this one.
// (Interposing the runtime's own `swift_get_time` does not work: it binds that call internally.)
//
// What it does. When the calling thread is running a test loop (`c_serial_loop_vt_set_thread_clock`
// was called with `active` on this thread), the monotonic clocks read a virtual instant:
// `c_serial_loop_virtual_clock_origin_seconds` + the loop's virtual nanoseconds — for every caller
// but libdispatch (its timers are real; see `dispatch_text_start`). Every other thread, clock id
// and moment goes to libc's `clock_gettime` unchanged. The check is one thread-local load and a
// predictable branch.
//
// Invariants.
// - Only the thread that set the thread-local reads or writes it: no synchronisation needed.
// - The loop's own real-time needs (a real loop's timers, a test loop's quiet periods and stall
//   timeout) must not see virtual time: they call `c_serial_loop_vt_real_clock_gettime`.
// - The origin is a constant, so virtual instants (and anything printed from them) are identical
//   on every run, and far from any real reading (no machine has been up for ~31.7 years), so a
//   virtual instant mixed up with a real one fails loudly (a deadline ~31 years away) instead of
//   quietly firing early.
#define _GNU_SOURCE
#include "CSerialLoopVirtualTime.h"
#include <dlfcn.h>
#include <link.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

// What `clock_gettime` answers on this thread for the monotonic clocks: the virtual instant when
// `active` (to every caller but libdispatch), libc's answer otherwise.
static _Thread_local struct { bool active; int64_t nanoseconds; } thread_virtual_clock;
static _Atomic(clock_gettime_fn) libc_clock_gettime;

int clock_gettime(clockid_t clock, struct timespec *spec);
// This object's own definition, by a name nothing can interpose: inside a shared library, plain
// `clock_gettime` would name whichever definition won the lookup, not necessarily ours.
extern int own_clock_gettime(clockid_t clock, struct timespec *spec) __attribute__((alias("clock_gettime"), visibility("hidden")));

// The kernel's answer without libc (no vDSO, ~100 ns): used only until libc's is resolved, or if it
// cannot be (and so never recursion into ourselves).
static int syscall_clock_gettime(clockid_t clock, struct timespec *spec) {
    return (int)syscall(SYS_clock_gettime, clock, spec);
}

// libc's definition: the next one after ours in lookup order; failing that (ours sits in a shared
// library loaded after libc, say), libc's own by handle.
static clock_gettime_fn resolve_libc_clock_gettime(void) {
    clock_gettime_fn found = (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
    if (found == NULL || found == own_clock_gettime) {
        void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
        found = libc ? (clock_gettime_fn)dlsym(libc, "clock_gettime") : NULL;
        if (found == own_clock_gettime) found = NULL;
    }
    if (found == NULL) found = syscall_clock_gettime;
    atomic_store_explicit(&libc_clock_gettime, found, memory_order_relaxed);
    return found;
}

// libdispatch's code, whose clock reads stay real even on a test loop's thread. Dispatch's timers
// run on real time on their own threads, so a deadline it computes on the loop's thread
// (`DispatchQueue.asyncAfter(deadline: .now() + x)`, the runtime's global-executor delays) must be
// a real one, or it would lie ~31 years away and never fire. Found once, before `main`; [0, 0)
// (nothing excluded) when libdispatch is linked statically into the executable.
static uintptr_t dispatch_text_start, dispatch_text_end;

static int find_dispatch_text(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size; (void)data;
    if (info->dlpi_name == NULL || strstr(info->dlpi_name, "/libdispatch.so") == NULL) return 0;
    for (int index = 0; index < info->dlpi_phnum; index++) {
        const ElfW(Phdr) *header = &info->dlpi_phdr[index];
        if (header->p_type != PT_LOAD || (header->p_flags & PF_X) == 0) continue;
        uintptr_t start = info->dlpi_addr + header->p_vaddr, end = start + header->p_memsz;
        if (dispatch_text_start == 0 || start < dispatch_text_start) dispatch_text_start = start;
        if (end > dispatch_text_end) dispatch_text_end = end;
    }
    return 1;
}

__attribute__((constructor))
static void c_serial_loop_resolve_clock(void) {
    if (atomic_load_explicit(&libc_clock_gettime, memory_order_relaxed) == NULL) resolve_libc_clock_gettime();
    dl_iterate_phdr(find_dispatch_text, NULL);
}

int c_serial_loop_vt_real_clock_gettime(clockid_t clock, struct timespec *spec) {
    clock_gettime_fn real = atomic_load_explicit(&libc_clock_gettime, memory_order_relaxed);
    if (__builtin_expect(real == NULL, 0)) real = resolve_libc_clock_gettime();
    return real(clock, spec);
}

static inline bool is_virtualized(clockid_t clock) {
    switch (clock) {
    case CLOCK_MONOTONIC:
    case CLOCK_MONOTONIC_RAW:
    case CLOCK_MONOTONIC_COARSE:
    case CLOCK_BOOTTIME:
        return true;
    default:
        return false;
    }
}

// Whether this read comes from libdispatch (see `dispatch_text_start`).
static inline bool is_from_dispatch(uintptr_t caller) {
    return caller >= dispatch_text_start && caller < dispatch_text_end;
}

int clock_gettime(clockid_t clock, struct timespec *spec) {
    // The caller's address, read first thing and kept in a volatile: optimised builds split this
    // function's unlikely branch into an outlined `clock_gettime.cold` function, where
    // `__builtin_return_address(0)` would be an address inside this one (so libdispatch's reads
    // looked virtual in release builds, and its timers set ~31 years late never fired).
    volatile uintptr_t caller = (uintptr_t)__builtin_return_address(0);
    if (__builtin_expect(thread_virtual_clock.active, 0) && is_virtualized(clock)
        && !is_from_dispatch(caller)) {
        int64_t nanoseconds = thread_virtual_clock.nanoseconds;
        spec->tv_sec = (time_t)(c_serial_loop_virtual_clock_origin_seconds + nanoseconds / 1000000000);
        spec->tv_nsec = (long)(nanoseconds % 1000000000);
        return 0;
    }
    return c_serial_loop_vt_real_clock_gettime(clock, spec);
}

void c_serial_loop_vt_set_thread_clock(bool active, int64_t nanoseconds) {
    thread_virtual_clock.active = active;
    thread_virtual_clock.nanoseconds = nanoseconds;
}

void c_serial_loop_vt_set_thread_nanoseconds(int64_t nanoseconds) { thread_virtual_clock.nanoseconds = nanoseconds; }

bool c_serial_loop_vt_clock_is_interposed(void) {
    // What every caller in the process (the Swift runtime included) binds `clock_gettime` to.
    void *resolved = dlsym(RTLD_DEFAULT, "clock_gettime");
    return resolved == (void *)own_clock_gettime;
}

bool c_serial_loop_vt_dispatch_reads_real_time(void) { return dispatch_text_end > dispatch_text_start; }
