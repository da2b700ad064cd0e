#!/usr/bin/env bash
# Reliability jobs: the test suite under ThreadSanitizer and AddressSanitizer, and a leak check
# (LeakSanitizer, part of ASan on Linux) of a program that creates, runs and tears down 10,000 loops.
set -euo pipefail
cd "$(dirname "$0")/.."

# --no-parallel: under a sanitizer's slowdown, tests that block cooperative threads (sync loops,
# child processes) starve the others' tasks for tens of seconds on 2 cores; one at a time, each
# test's watchdog measures the test, not its neighbours.
# SWIFT_BACKTRACE=enable=no: tests that expect a child to trap (exit tests, ModeTests' misuse
# fixtures) would otherwise wait for Swift's backtracer, which TSan's fork interceptor breaks.
export SWIFT_BACKTRACE=enable=no
echo "== ThreadSanitizer: swift test --sanitize=thread"
SERIALLOOP_SANITIZER=thread TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/.ci/tsan-suppressions.txt" \
    swift test --sanitize=thread --scratch-path .build-tsan --no-parallel

echo "== AddressSanitizer: swift test --sanitize=address"
SERIALLOOP_SANITIZER=address ASAN_OPTIONS="detect_leaks=0" swift test --sanitize=address --scratch-path .build-asan --no-parallel

echo "== LeakSanitizer: 10,000 loops created, run and torn down"
swift build --sanitize=address --scratch-path .build-asan --product SerialLoopLeakCheck
ASAN_OPTIONS="detect_leaks=1" .build-asan/debug/SerialLoopLeakCheck 10000
echo "== reliability jobs passed"
