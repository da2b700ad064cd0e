#!/usr/bin/env bash
# Builds the benchmarks in release mode, runs every workload several times, and writes RESULTS.md.
#   Benchmarks/run.sh            full run (about 10 minutes on 2 cores)
#   Benchmarks/run.sh --smoke    tiny sizes, one repetition: checks that everything builds and runs
set -euo pipefail
cd "$(dirname "$0")"
smoke=()
reps=5
out=RESULTS.md
if [ "${1:-}" = "--smoke" ]; then
    smoke=(--smoke)
    reps=1
    out=.build/RESULTS-smoke.md
fi
python3 -c "import uvloop" 2>/dev/null || pip install -q uvloop || echo "uvloop unavailable: its rows are skipped"
loops=asyncio
python3 -c "import uvloop" 2>/dev/null && loops=asyncio,uvloop
swift build -c release
python3 python/driver.py .build/release/SerialLoopBenchmarks --reps "$reps" "${smoke[@]}" --out "$out" --python-loops "$loops"
