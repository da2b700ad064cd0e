#ifndef C_SERIAL_LOOP_SHIMS_H
#define C_SERIAL_LOOP_SHIMS_H

// Declarations only. Glibc's Swift overlay does not export epoll or eventfd, so this header
// makes them visible to the SerialLoop module. No logic lives here.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <time.h>

// errno through a function: Swift cannot read the thread-local macro directly on every libc.
static inline int c_serial_loop_errno(void) { return errno; }

#endif
