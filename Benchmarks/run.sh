#!/usr/bin/env bash
# Builds the benchmarks in release mode, runs every workload several times, and writes RESULTS.md.
#   Benchmarks/run.sh            full run: 5 fresh processes per row, medians, ratios, plus callgrind
#                                instruction counts (15+ minutes on the shared 2-core VM)
#   Benchmarks/run.sh --smoke    tiny sizes, one repetition, no callgrind: checks that everything builds
#                                and runs (a few seconds after the build); writes .build/RESULTS-smoke.md
# Any other arguments go to python/driver.py (e.g. --reps 3, --no-instructions).
set -euo pipefail
cd "$(dirname "$0")"
args=(--reps 5 --out RESULTS.md)
if [ "${1:-}" = "--smoke" ]; then
    shift
    args=(--smoke --reps 1 --out .build/RESULTS-smoke.md)
fi
python3 -c "import uvloop" 2>/dev/null || pip install -q uvloop || echo "uvloop unavailable: its rows are skipped"
loops=asyncio
python3 -c "import uvloop" 2>/dev/null && loops=asyncio,uvloop
swift build -c release
python3 python/driver.py .build/release/SerialLoopBenchmarks "${args[@]}" --python-loops "$loops" "$@"
