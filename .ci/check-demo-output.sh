#!/usr/bin/env bash
# Runs the demo and checks its output against the block in README.md (timings normalised to the
# tenth of a second they are printed with, allowing ±0.1 s of scheduling noise on a busy machine).
set -euo pipefail
cd "$(dirname "$0")/.."
expected=$(awk '/^The demo prints/{found=1} found && /^```$/{if (inblock) exit; inblock=1; next} inblock' README.md)
actual=$(swift run -q serial-loop-demo)
echo "$actual"
normalise() { sed -E 's/[0-9]+\.[0-9]s/N.Ns/g'; }
if [ "$(echo "$expected" | normalise)" != "$(echo "$actual" | normalise)" ]; then
    echo "demo output differs from README.md:" >&2
    diff <(echo "$expected") <(echo "$actual") >&2 || true
    exit 1
fi
python3 - "$expected" "$actual" <<'PY'
import re, sys
times = lambda text: [float(x) for x in re.findall(r"([0-9]+\.[0-9])s", text)]
expected, actual = times(sys.argv[1]), times(sys.argv[2])
bad = [(e, a) for e, a in zip(expected, actual) if abs(e - a) > 0.11]
if bad:
    sys.exit(f"demo timings differ from README.md by more than 0.1 s: {bad}")
print("demo output matches README.md")
PY
