#!/usr/bin/env bash
# The performance gate (issue 23): instructions per operation of the key rows, counted by callgrind
# on the release benchmark binary, against Benchmarks/perf-baseline.json. Fails when a row is more
# than 3 % worse. Rows, method and how the baseline moves: Benchmarks/NOTES.md, "The performance gate".
#   .ci/perf-gate.sh                                      compare (about a minute after the build)
#   .ci/perf-gate.sh --row yield --row spawn+await        only those rows
#   .ci/perf-gate.sh --runs 5                             each row 5 times (prints the spread)
#   .ci/perf-gate.sh --update-baseline --reason "why"     rewrite the baseline; commit it with a
#                                                         message that says why it moved
set -euo pipefail
cd "$(dirname "$0")/.."

# A fresh CI machine has the Swift toolchain and Python only.
missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
command -v strip >/dev/null || missing+=(binutils)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The helper's own tests first (a second, no valgrind): a gate whose comparison is broken passes
# everything.
python3 -m unittest -q Benchmarks/python/test_perf_gate.py

(cd Benchmarks && swift build -q -c release --product SerialLoopBenchmarks)
exec python3 Benchmarks/python/perf_gate.py Benchmarks/.build/release/SerialLoopBenchmarks "$@"
