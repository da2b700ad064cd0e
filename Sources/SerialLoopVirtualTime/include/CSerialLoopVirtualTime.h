#ifndef C_SERIAL_LOOP_VIRTUAL_TIME_H
#define C_SERIAL_LOOP_VIRTUAL_TIME_H

// The opt-in half of virtual time: the two process-wide definitions a test loop needs, and the
// functions the core library reaches them by (weakly: see CSerialLoopShims/virtual_time.c).
//
// Linking this target (the `SerialLoopVirtualTime` product, or `SerialLoopTesting`, which depends
// on it) makes the program define
// - `clock_gettime` (clock.c): the runtime's clocks read virtual time on a test loop's thread;
// - `swift_task_create` (task_create.c): marks task creation, so a test loop can take over the
//   unstructured tasks code on its thread creates.
// Nothing else changes: on every other thread, and in every program that does not link this,
// both behave exactly as libc's and the runtime's own. RUNTIME-INTERFACE.md lists every symbol.
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/// Virtual monotonic instants are this many seconds + the loop's virtual nanoseconds.
#define c_serial_loop_virtual_clock_origin_seconds ((int64_t)1000000000)

/// Makes `clock_gettime` on this thread answer the virtual instant `nanoseconds` for the monotonic
/// clocks (MONOTONIC, _RAW, _COARSE, BOOTTIME) when `active`, libc's answer otherwise.
void c_serial_loop_vt_set_thread_clock(bool active, int64_t nanoseconds);
/// Moves this thread's virtual instant (the clock must be active).
void c_serial_loop_vt_set_thread_nanoseconds(int64_t nanoseconds);
/// libc's `clock_gettime`, bypassing the interposer: for the loop's own real-time reads.
int c_serial_loop_vt_real_clock_gettime(clockid_t clock, struct timespec *spec);
/// Whether `clock_gettime` in this process resolves to the interposer.
bool c_serial_loop_vt_clock_is_interposed(void);
/// Whether libdispatch's clock reads are told apart (and stay real on a test loop's thread): true
/// when libdispatch is a shared library, as in a default SwiftPM build.
bool c_serial_loop_vt_dispatch_reads_real_time(void);
/// Whether `swift_task_create` is running on this thread right now (a task is being created).
bool c_serial_loop_vt_is_creating_task(void);

#endif
