#!/usr/bin/env bash
# Builds the DocC reference (Sources/SerialLoop/SerialLoop.docc plus the symbols of SerialLoop,
# SerialLoopNet, SerialLoopNetSimulation and SerialLoopTesting) as static HTML, with the toolchain only: no plugin, no
# package dependency. Fails on any DocC warning and on any public declaration without a doc comment.
#
#   .ci/docs.sh                 # writes .build-docs/html (git-ignored)
#   (cd .build-docs/html && python3 -m http.server 8000)   # then open http://localhost:8000/documentation/serialloop
#
# Environment: DOCS_OUTPUT (default .build-docs/html), DOCS_HOSTING_BASE_PATH (for a site served
# under a sub-path, e.g. /SerialLoop on GitHub Pages).
set -euo pipefail
cd "$(dirname "$0")/.."

scratch=.build-docs
output=${DOCS_OUTPUT:-$scratch/html}
graphs=$scratch/symbol-graphs

docc=$(dirname "$(readlink -f "$(command -v swift)")")/docc
[ -x "$docc" ] || docc=$(command -v docc || true)
if [ -z "$docc" ] || [ ! -x "$docc" ]; then
    echo "docs: no docc next to swift ($(command -v swift)) nor on PATH" >&2
    exit 1
fi

echo "-- symbol graphs (swift package dump-symbol-graph, scratch path $scratch)"
mkdir -p "$scratch"
# dump-symbol-graph also visits the test modules, and on a fresh clone (tests not built in this
# scratch path) it fails on those after writing every library's graph. Only those failures are
# tolerated; any other error, or a missing library graph below, fails the job.
if ! swift package --scratch-path "$scratch" dump-symbol-graph --minimum-access-level public > "$scratch/dump.log" 2>&1; then
    if grep '^error:' "$scratch/dump.log" | grep -vqE "for 'SerialLoopPackage(Discovered)?Tests'"; then
        cat "$scratch/dump.log" >&2
        exit 1
    fi
fi
dumped=$(find "$scratch" -maxdepth 3 -type d -name symbolgraph | head -1)
for module in SerialLoop SerialLoopNet SerialLoopNetSimulation SerialLoopTesting; do
    [ -f "$dumped/$module.symbols.json" ] || { cat "$scratch/dump.log" >&2; echo "docs: no symbol graph for $module" >&2; exit 1; }
done
rm -rf "$graphs" && mkdir -p "$graphs"
# The documented libraries only (not the fixtures, tests or executables). SerialLoopTesting@Testing
# holds the `.testLoop` trait's extension of Swift Testing's `Trait`.
for module in SerialLoop SerialLoopNet SerialLoopNetSimulation SerialLoopTesting; do
    cp "$dumped/$module".symbols.json "$dumped/$module"@*.symbols.json "$graphs"/ 2>/dev/null || true
done

echo "-- public declarations without a doc comment"
undocumented=0
python3 .ci/check-doc-comments.py "$graphs"/*.json || undocumented=1

echo "-- docc convert -> $output"
rm -rf "$output"
log=$scratch/docc.log
"$docc" convert Sources/SerialLoop/SerialLoop.docc \
    --additional-symbol-graph-dir "$graphs" \
    --output-path "$output" \
    --fallback-display-name SerialLoop \
    --fallback-bundle-identifier serialloop \
    --transform-for-static-hosting \
    ${DOCS_HOSTING_BASE_PATH:+--hosting-base-path "$DOCS_HOSTING_BASE_PATH"} \
    > "$log" 2>&1 || { cat "$log" >&2; echo "docs: docc convert failed" >&2; exit 1; }
warnings=$(grep -c '^warning:' "$log" || true)
errors=$(grep -c '^error:' "$log" || true)
if [ "$warnings" != 0 ] || [ "$errors" != 0 ]; then
    cat "$log" >&2
    echo "docs: $warnings DocC warning(s), $errors error(s)" >&2
    exit 1
fi
if [ "$undocumented" != 0 ]; then
    echo "docs: 0 DocC warnings, but public declarations without a doc comment (listed above)" >&2
    exit 1
fi
echo "docs: 0 warnings; open $output/documentation/serialloop/index.html through an HTTP server"
