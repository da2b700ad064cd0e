// The core library's side of virtual time: weak references to the opt-in half.
//
// The definitions that make a test loop's time exact — `clock_gettime` and `swift_task_create` —
// replace libc's and the runtime's for the whole process, so they live in their own target
// (Sources/SerialLoopVirtualTime), linked only by programs that ask for virtual time (its product,
// or `SerialLoopTesting`). The core refers to that target's functions *weakly*: in a program that
// does not link it, every reference below is null, no process-wide symbol is replaced, the calls
// here fall back to libc, and `Loop(time: .virtual)` fails with an error that says what to link.
#include "CSerialLoopShims.h"

extern void c_serial_loop_vt_set_thread_clock(bool active, int64_t nanoseconds) __attribute__((weak));
extern void c_serial_loop_vt_set_thread_nanoseconds(int64_t nanoseconds) __attribute__((weak));
extern int c_serial_loop_vt_real_clock_gettime(clockid_t clock, struct timespec *spec) __attribute__((weak));
extern bool c_serial_loop_vt_clock_is_interposed(void) __attribute__((weak));
extern bool c_serial_loop_vt_dispatch_reads_real_time(void) __attribute__((weak));
extern bool c_serial_loop_vt_is_creating_task(void) __attribute__((weak));

bool c_serial_loop_virtual_time_is_linked(void) {
    return c_serial_loop_vt_set_thread_clock != NULL && c_serial_loop_vt_real_clock_gettime != NULL
        && c_serial_loop_vt_is_creating_task != NULL;
}

void c_serial_loop_set_thread_virtual_clock(bool active, int64_t nanoseconds) {
    if (c_serial_loop_vt_set_thread_clock != NULL) c_serial_loop_vt_set_thread_clock(active, nanoseconds);
}

void c_serial_loop_set_thread_virtual_nanoseconds(int64_t nanoseconds) {
    if (c_serial_loop_vt_set_thread_nanoseconds != NULL) c_serial_loop_vt_set_thread_nanoseconds(nanoseconds);
}

int c_serial_loop_real_clock_gettime(clockid_t clock, struct timespec *spec) {
    if (c_serial_loop_vt_real_clock_gettime != NULL) return c_serial_loop_vt_real_clock_gettime(clock, spec);
    return clock_gettime(clock, spec);
}

bool c_serial_loop_clock_is_interposed(void) {
    return c_serial_loop_vt_clock_is_interposed != NULL && c_serial_loop_vt_clock_is_interposed();
}

bool c_serial_loop_dispatch_reads_real_time(void) {
    return c_serial_loop_vt_dispatch_reads_real_time != NULL && c_serial_loop_vt_dispatch_reads_real_time();
}

bool c_serial_loop_is_creating_task(void) {
    return c_serial_loop_vt_is_creating_task != NULL && c_serial_loop_vt_is_creating_task();
}
