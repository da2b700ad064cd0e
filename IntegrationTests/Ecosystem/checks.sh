#!/usr/bin/env bash
# curl checks of the ecosystem servers (../run.sh runs them as scenarios).
#
#   checks.sh hummingbird PORT SERVER_LOG   Hummingbird route → loop-bound actor; a slow job logged via swift-log
#   checks.sh prometheus PORT               /metrics: the SerialLoopMetrics bridge's output in Prometheus text
#   checks.sh lifecycle BIN                 SIGTERM during load: in-flight requests finish, exit 0
set -uo pipefail
FAILS=0
ok()   { echo "  ok   $*"; }
fail() { echo "  FAIL $*"; FAILS=$((FAILS + 1)); }
check() { local message=$1; shift; if "$@"; then ok "$message"; else fail "$message"; fi; }
finish() { if [ $FAILS -eq 0 ]; then echo "$1: all checks passed"; exit 0; else echo "$1: $FAILS check(s) FAILED"; exit 1; fi; }

case "${1:-}" in
hummingbird)
    PORT=$2 LOG=$3
    TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
    echo "hummingbird: 20 concurrent curl GETs of /actor/100 (each awaits an actor on a SerialLoop that sleeps 100 ms)"
    started=$SECONDS
    for i in $(seq 20); do curl -s -m 10 -o "$TMP/$i" -w '%{http_code}\n' "http://127.0.0.1:$PORT/actor/100" > "$TMP/$i.code" & done
    wait
    codes=$(cat "$TMP"/*.code | sort | uniq -c | tr -s ' ')
    check "every answer is 200 ($codes)" [ "$(cat "$TMP"/*.code | grep -c '^200$')" -eq 20 ]
    check "every handler's actor call ran on the loop thread, before and after its await" \
        [ "$(grep -l 'actor-on-loop=true' "$TMP"/[0-9]* | wc -l)" -eq 20 ]
    check "the handlers themselves ran on Hummingbird's threads, not the loop's" \
        [ "$(grep -l 'handler-on-loop=false' "$TMP"/[0-9]* | wc -l)" -eq 20 ]
    counts=$(sed -n 's/^count=\([0-9]*\) .*/\1/p' "$TMP"/[0-9]* | sort -n | tr '\n' ' ')
    check "the actor counted 20 distinct hits, serially: $counts" [ "$counts" = "$(seq 20 | tr '\n' ' ')" ]
    echo "   (20 requests in $((SECONDS - started)) s)"
    echo "hummingbird: GET /block/150 blocks the loop for 150 ms in debug mode (threshold 50 ms)"
    body=$(curl -s -m 10 "http://127.0.0.1:$PORT/block/150")
    check "answered: $body" [ "$body" = "blocked=150ms on-loop=true" ]
    found=""
    for _ in $(seq 50); do grep -q 'loop.report=slow-job' "$LOG" && { found=yes; break; }; sleep 0.1; done
    line=$(grep 'loop.report=slow-job' "$LOG" | tail -1)
    check "the slow job reached swift-log (SerialLoopLogging) as a warning with metadata: ${line:0:220}" \
        bash -c "[ -n '$found' ] && grep 'loop.report=slow-job' '$LOG' | grep -q 'warning' && grep 'loop.report=slow-job' '$LOG' | grep -q 'loop.name=hummingbird' && grep 'loop.report=slow-job' '$LOG' | grep -q 'loop.duration_ms=1[5-9][0-9]\|loop.duration_ms=[2-9][0-9][0-9]'"
    finish hummingbird
    ;;
prometheus)
    PORT=$2
    TMP=$(mktemp); trap 'rm -f "$TMP"' EXIT
    echo "prometheus: GET /metrics (swift-prometheus registry fed by the SerialLoopMetrics bridge, published every 100 ms)"
    value() { awk -v name="$1" '$1 == name {print $2}' "$TMP" | head -1; }
    # The publisher runs every 100 ms of loop time: wait until it has published the load above.
    for _ in $(seq 30); do
        curl -s -m 5 "http://127.0.0.1:$PORT/metrics" > "$TMP"
        fired=$(value 'serialloop_timers_fired_total{loop="hummingbird"}')
        [ "${fired%.*}" -ge 20 ] 2>/dev/null && break
        sleep 0.1
    done
    check "exposition text has TYPE lines: counter serialloop_ticks_total" grep -q '^# TYPE serialloop_ticks_total counter$' "$TMP"
    check "gauge serialloop_pending_timers" grep -q '^# TYPE serialloop_pending_timers gauge$' "$TMP"
    ticks=$(value 'serialloop_ticks_total{loop="hummingbird"}')
    check "serialloop_ticks_total{loop=\"hummingbird\"} = ${ticks:-missing} > 0" [ "${ticks%.*}" -gt 0 ] 2>/dev/null
    fired=$(value 'serialloop_timers_fired_total{loop="hummingbird"}')
    check "serialloop_timers_fired_total = ${fired:-missing} ≥ 20 (the actor's 20 sleeps)" [ "${fired%.*}" -ge 20 ] 2>/dev/null
    arrivals=$(value 'serialloop_cross_thread_arrivals_total{loop="hummingbird"}')
    check "serialloop_cross_thread_arrivals_total = ${arrivals:-missing} ≥ 20 (calls from Hummingbird's threads)" [ "${arrivals%.*}" -ge 20 ] 2>/dev/null
    check "loop lag quantiles: serialloop_loop_lag_seconds{loop=\"hummingbird\",quantile=\"0.99\"}" \
        grep -q '^serialloop_loop_lag_seconds{loop="hummingbird",quantile="0.99"} ' "$TMP"
    maxjob=$(value 'serialloop_job_duration_seconds{loop="hummingbird",quantile="1"}')
    check "the slow job shows in serialloop_job_duration_seconds max = ${maxjob:-missing} s (≥ 0.15)" \
        python3 -c "import sys; sys.exit(0 if float('${maxjob:-0}') >= 0.15 else 1)"
    check "timers from LoopTimersInstrument are Prometheus histograms: serialloop_timer_lag_bucket" \
        grep -q '^serialloop_timer_lag_bucket{loop="hummingbird",le=' "$TMP"
    count=$(value 'serialloop_timer_lag_count{loop="hummingbird"}')
    check "serialloop_timer_lag_count = ${count:-missing} ≥ 20" [ "${count%.*}" -ge 20 ] 2>/dev/null
    echo "  --   $(grep -c '^serialloop_' "$TMP") serialloop_ sample lines, e.g.:"
    grep -E '^serialloop_(ticks_total|timers_fired_total|loop_lag_seconds)' "$TMP" | head -6 | sed 's/^/         /'
    finish prometheus
    ;;
lifecycle)
    BIN=$2
    TMP=$(mktemp -d); trap 'rm -rf "$TMP"; [ -n "${PID:-}" ] && kill -9 "$PID" 2>/dev/null' EXIT
    echo "lifecycle: SIGTERM to a ServiceGroup running an HTTP server as a LoopService, with 20 requests in flight"
    "$BIN" lifecycle-server > "$TMP/server.log" 2>&1 &
    PID=$!
    PORT=""
    for _ in $(seq 100); do
        PORT=$(sed -n 's/.*listening on [0-9.]*:\([0-9]*\).*/\1/p' "$TMP/server.log" | head -1)
        [ -n "$PORT" ] && break; sleep 0.1
    done
    [ -n "$PORT" ] || { cat "$TMP/server.log"; fail "server did not start"; finish lifecycle; }
    for i in $(seq 20); do curl -s -m 20 -o "$TMP/$i" -w '%{http_code}\n' "http://127.0.0.1:$PORT/slow/1500" > "$TMP/$i.code" & done
    # Wait until the server reports all 20 in flight (explicit state, not a guess at timing).
    inflight=0
    for _ in $(seq 100); do
        inflight=$(curl -s -m 2 "http://127.0.0.1:$PORT/stats" | sed -n 's/.*in-flight=\([0-9]*\).*/\1/p')
        [ "${inflight:-0}" -ge 20 ] && break; sleep 0.05
    done
    check "20 requests in flight before SIGTERM (server says ${inflight:-?})" [ "${inflight:-0}" -ge 20 ]
    kill -TERM "$PID"
    for _ in $(seq 100); do grep -q 'graceful shutdown: listener closed' "$TMP/server.log" && break; sleep 0.05; done
    code=$(curl -s -m 2 -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$PORT/slow/1" || true)
    check "after SIGTERM new connections are refused (curl got ${code:-nothing})" [ "${code:-000}" = "000" ]
    wait "$PID"; status=$?
    PID=""
    for job in $(jobs -p); do wait "$job"; done
    check "the server exited 0 (status $status)" [ "$status" -eq 0 ]
    check "all 20 in-flight requests were answered 200: $(cat "$TMP"/*.code | sort | uniq -c | tr -s ' ')" \
        [ "$(cat "$TMP"/*.code | grep -c '^200$')" -eq 20 ]
    check "every body is 'slept 1500 ms'" [ "$(grep -l '^slept 1500 ms$' "$TMP"/[0-9]* | wc -l)" -eq 20 ]
    sed 's/^/         /' "$TMP/server.log" | grep -v '^ *$' | head -12
    finish lifecycle
    ;;
*)
    echo "usage: checks.sh hummingbird PORT LOG | prometheus PORT | lifecycle BIN" >&2; exit 2 ;;
esac
