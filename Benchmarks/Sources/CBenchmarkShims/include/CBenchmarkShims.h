#ifndef C_BENCHMARK_SHIMS_H
#define C_BENCHMARK_SHIMS_H
#include <sys/epoll.h>
#include <stdint.h>

/// Starts or stops counting heap allocations made by any thread.
void bench_count_allocations(int enabled);
/// Allocations counted since the last reset.
uint64_t bench_allocation_count(void);
void bench_reset_allocation_count(void);
#endif
