#!/usr/bin/env bash
# Past one core (issue 24): the LoopHTTP server on a LoopGroup of 1 and 2 loops against SwiftNIO's
# MultiThreadedEventLoopGroup of 1 and 2 threads, under wrk on loopback, with a CPU-bound handler
# (GET /work/ROUNDS: CPUWork.cpuWork, the same code in both servers).
#
#   IntegrationTests/wrk-scaling.sh [--rounds R] [--reps N] [--duration S] [--connections C]
#       release build, then N interleaved repetitions of (1 loop, 2 loops, NIO 1, NIO 2), each
#       `wrk -t1 -cC -dS --latency` after a 1 s warm-up; writes the "Past one core" section of
#       WRK-RESULTS.md (everything from its marker line on) with every run, medians and ratios,
#       followed by wrk-scaling-notes.md (the hand-written reading of the last sweep).
#   IntegrationTests/wrk-scaling.sh --smoke
#       the CI check (a few seconds): the 2-loop server answers / and /work/R like the NIO server,
#       takes 2 s of wrk with no errors, and /stats shows both loops served connections. Writes nothing.
#
# No taskset: the point is that the second core is usable, so servers and wrk share both cores.
set -euo pipefail
cd "$(dirname "$0")"
HERE=$(pwd)
ROUNDS=1000 REPS=3 DURATION=10 CONNECTIONS=50 SMOKE=0
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) ROUNDS=$2; shift 2 ;;
        --reps) REPS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --connections) CONNECTIONS=$2; shift 2 ;;
        --smoke) SMOKE=1; shift ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
BIN=${BIN:-}
if [ -z "$BIN" ]; then
    swift build -c release > /dev/null
    BIN=$(swift build -c release --show-bin-path)
fi

WORK=$(mktemp -d /tmp/serial-loop-scaling.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# start NAME COMMAND...: starts a server that prints "listening on HOST:PORT"; sets PORT_NAME.
start() {
    local name=$1; shift
    "$@" > "$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do
        if grep -q "listening on" "$WORK/$name.log"; then
            printf -v "PORT_$name" '%s' "$(sed -n 's/.*listening on [0-9.]*:\([0-9]*\).*/\1/p' "$WORK/$name.log" | head -1)"
            return 0
        fi
        sleep 0.1
    done
    echo "server $name did not start" >&2; cat "$WORK/$name.log" >&2; return 1
}

if [ $SMOKE = 1 ]; then
    start loop2 "$BIN/serial-loop-http-server" --loops 2
    start nio2 "$BIN/nio-http-server" --threads 2
    fail=0
    check() { if eval "$2"; then echo "  ok   $1"; else echo "  FAIL $1"; fail=1; fi; }
    hello=$(curl -s "http://127.0.0.1:$PORT_loop2/")
    check "2-loop server: GET / answers 'Hello, world!'" '[ "$hello" = "Hello, world!" ]'
    ours=$(curl -s "http://127.0.0.1:$PORT_loop2/work/100")
    theirs=$(curl -s "http://127.0.0.1:$PORT_nio2/work/100")
    check "GET /work/100: the same hash from both servers ($ours)" '[ -n "$ours" ] && [ "$ours" = "$theirs" ]'
    wrk -t1 -c"$CONNECTIONS" -d2s "http://127.0.0.1:$PORT_loop2/work/$ROUNDS" > "$WORK/wrk.txt" 2>&1 || true
    requests=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
    errors=$( (grep -E "Socket errors|Non-2xx" "$WORK/wrk.txt" || true) | tr '\n' ' ')
    check "wrk -c$CONNECTIONS -d2s /work/$ROUNDS on 2 loops: ${requests:-0} requests, errors: ${errors:-none}" '[ "${requests:-0}" -gt 100 ] && [ -z "$errors" ]'
    stats=$(curl -s "http://127.0.0.1:$PORT_loop2/stats")
    echo "$stats" | sed 's/^/       /'
    check "both loops accepted connections (SO_REUSEPORT spread)" \
        '[ "$(echo "$stats" | grep -cE "^loop[01]: connections=[1-9]")" = 2 ]'
    exit $fail
fi

"$BIN/serial-loop-http-server" --calibrate-work "$ROUNDS" | tee "$WORK/calibration"
start loop1 "$BIN/serial-loop-http-server" --loops 1
start loop2 "$BIN/serial-loop-http-server" --loops 2
start nio1 "$BIN/nio-http-server" --threads 1
start nio2 "$BIN/nio-http-server" --threads 2
for name in loop1 loop2 nio1 nio2; do
    port_var="PORT_$name"
    [ "$(curl -s "http://127.0.0.1:${!port_var}/work/10")" = "$(curl -s "http://127.0.0.1:$PORT_loop1/work/10")" ] \
        || { echo "$name answers /work/10 differently" >&2; exit 1; }
done

: > "$WORK/runs"
for rep in $(seq "$REPS"); do
    for name in loop1 loop2 nio1 nio2; do
        port_var="PORT_$name"
        url="http://127.0.0.1:${!port_var}/work/$ROUNDS"
        wrk -t1 -c"$CONNECTIONS" -d1s "$url" > /dev/null 2>&1
        load=$(cut -d' ' -f1 /proc/loadavg)
        wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$url" > "$WORK/wrk-$name-$rep.txt" 2>&1
        rps=$(awk '/^Requests\/sec:/ {print $2}' "$WORK/wrk-$name-$rep.txt")
        p99=$(awk '$1 == "99%" {print $2}' "$WORK/wrk-$name-$rep.txt")
        errors=$( (grep -E "Socket errors|Non-2xx" "$WORK/wrk-$name-$rep.txt" || true) | tr '\n' ' ')
        echo "$rep|$name|$rps|$p99|$load|${errors:-none}" | tee -a "$WORK/runs"
    done
done
STATS=$(curl -s "http://127.0.0.1:$PORT_loop2/stats")
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$WORK/runs" "$HERE/WRK-RESULTS.md" <<EOF
import statistics, sys
runs_path, results_path = sys.argv[1], sys.argv[2]
names = {"loop1": "SerialLoop, LoopGroup of 1 loop", "loop2": "SerialLoop, LoopGroup of 2 loops",
         "nio1": "SwiftNIO, MultiThreadedEventLoopGroup of 1 thread", "nio2": "SwiftNIO, MultiThreadedEventLoopGroup of 2 threads"}
def ms(text):
    for unit, factor in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if text.endswith(unit):
            return float(text[:-len(unit)]) * factor
    raise ValueError(text)
runs = [line.strip().split("|") for line in open(runs_path) if line.strip()]
rps = {n: [float(r[2]) for r in runs if r[1] == n] for n in names}
p99 = {n: [ms(r[3]) for r in runs if r[1] == n] for n in names}
med = {n: statistics.median(rps[n]) for n in names}
medp = {n: statistics.median(p99[n]) for n in names}
marker = "<!-- wrk-scaling.sh writes everything below this line -->"
out = [marker, "", "## Past one core: a group of 1 and 2 loops against NIO's group of 1 and 2 threads", ""]
out.append("Written by \`IntegrationTests/wrk-scaling.sh --rounds $ROUNDS --reps $REPS --duration $DURATION --connections $CONNECTIONS\` (release build)")
out.append("on $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores ($(uname -m), $(uname -r)), $(swift --version 2>/dev/null | head -1).")
out.append("Each request is \`GET /work/$ROUNDS\`: the handler runs \`CPUWork.cpuWork\` ($ROUNDS rounds of FNV-1a over a 64-byte")
out.append("block; the same function in both servers, answering the same hash) — measured before the runs:")
out.append("\`$(cat "$WORK/calibration")\`.")
out.append("Every run: \`wrk -t1 -c$CONNECTIONS -d${DURATION}s --latency http://127.0.0.1:PORT/work/$ROUNDS\` after a 1 s warm-up; the four")
out.append("servers interleaved (1 loop, 2 loops, NIO 1, NIO 2), repeated $REPS times. No taskset: servers, wrk (one thread)")
out.append("and whatever else runs on the VM share the 2 cores. Load average (1 min) before each run is in the runs table;")
out.append("after the sweep: $LOAD_AFTER.")
out.append("")
out.append("| server | requests/s (median) | p99 (median) | requests/s per run | p99 per run |")
out.append("|---|---:|---:|---|---|")
for n in names:
    out.append(f"| {names[n]} | {med[n]:.0f} | {medp[n]:.2f} ms | {', '.join(f'{v:.0f}' for v in rps[n])} | {', '.join(f'{v:.2f}' for v in p99[n])} ms |")
out.append("")
# Paired: the two servers' runs of the same repetition (seconds apart, so under the same load),
# then the median of those ratios; the steadier figure when the load drifts between repetitions.
reps = sorted({r[0] for r in runs}, key=int)
def paired(a, b, values):
    return [values[a][i] / values[b][i] for i in range(len(reps))]
out.append("| ratio | requests/s: ratio of medians | requests/s: median of per-repetition ratios [range] | p99: ratio of medians |")
out.append("|---|---:|---|---:|")
for label, a, b in (("SerialLoop 2 loops ÷ 1 loop", "loop2", "loop1"), ("NIO 2 threads ÷ 1 thread", "nio2", "nio1"),
                    ("SerialLoop ÷ NIO, 1 each", "loop1", "nio1"), ("SerialLoop ÷ NIO, 2 each", "loop2", "nio2")):
    pr = paired(a, b, rps)
    out.append(f"| {label} | {med[a] / med[b]:.2f} | {statistics.median(pr):.2f} [{min(pr):.2f}–{max(pr):.2f}] | {medp[a] / medp[b]:.2f} |")
out.append("")
out.append("Runs in order (repetition, server, requests/s, p99, load average before the run, errors):")
out.append("")
out.append("| rep | server | requests/s | p99 | load before | errors |")
out.append("|---:|---|---:|---:|---:|---|")
for r in runs:
    out.append(f"| {r[0]} | {names[r[1]]} | {float(r[2]):.0f} | {r[3]} | {r[4]} | {r[5]} |")
out.append("")
out.append("The 2-loop server's \`/stats\` after the sweep (connections are spread by SO_REUSEPORT's hash of the")
out.append("4-tuple; a connection stays on the loop that accepted it):")
out.append("")
out.append("\`\`\`")
out.extend("""$STATS""".strip().splitlines())
out.append("\`\`\`")
try:
    out += ["", open("$HERE/wrk-scaling-notes.md").read().rstrip("\n")]
except FileNotFoundError:
    pass
try:
    text = open(results_path).read()
except FileNotFoundError:
    text = ""
head = text.split(marker)[0].rstrip("\n")
with open(results_path, "w") as f:
    f.write((head + "\n\n" if head else "") + "\n".join(out) + "\n")
print("\n".join(out))
EOF
