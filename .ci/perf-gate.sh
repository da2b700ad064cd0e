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

# The counts are exact on one machine class, not across them (glibc picks string functions by CPU
# features; valgrind versions differ). On another class, the baseline is the code of the commit
# that last moved Benchmarks/perf-baseline.json, built and measured here, so the comparison stays
# like for like. (The convention: a baseline moves in the commit that carries the change it measured.)
if [ "$*" = "" ] && ! python3 Benchmarks/python/perf_gate.py Benchmarks/.build/release/SerialLoopBenchmarks --same-machine; then
    base=$(git log -1 --format=%H -- Benchmarks/perf-baseline.json 2>/dev/null || true)
    if [ -z "$base" ]; then
        echo "perf gate: another machine class and no history to find the baseline's commit in (shallow clone?)" >&2
        exit 1
    fi
    echo "perf gate: another machine class: measuring the baseline's commit ${base:0:12} on this one"
    tree=$(mktemp -d /tmp/perf-gate-base.XXXXXX)
    trap 'git worktree remove --force "$tree" >/dev/null 2>&1 || true' EXIT
    git worktree add -q --detach "$tree" "$base"
    (cd "$tree/Benchmarks" && swift build -q -c release --product SerialLoopBenchmarks)
    cp Benchmarks/perf-baseline.json "$tree/here-baseline.json"
    python3 Benchmarks/python/perf_gate.py "$tree/Benchmarks/.build/release/SerialLoopBenchmarks" \
        --baseline "$tree/here-baseline.json" --runs 3 --update-baseline --reason "commit $base measured on this machine"
    python3 Benchmarks/python/perf_gate.py Benchmarks/.build/release/SerialLoopBenchmarks --baseline "$tree/here-baseline.json"
    exit $?
fi
exec python3 Benchmarks/python/perf_gate.py Benchmarks/.build/release/SerialLoopBenchmarks "$@"
