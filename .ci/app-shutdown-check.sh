#!/usr/bin/env bash
# The example app's graceful stop, as a deployment sees it: serial-loop-app serves three slow
# requests, gets SIGTERM while they are in flight, must answer all three, refuse new connections
# and exit 0. (The same scenario runs as a Swift test, AppTests; this one uses curl and a shell.)
set -euo pipefail
cd "$(dirname "$0")/.."
# APP_BIN: an already built binary to check (CI passes the --static-swift-stdlib release build).
if [ -z "${APP_BIN:-}" ]; then
    swift build -q --product serial-loop-app
    BIN="$(swift build --show-bin-path)/serial-loop-app"
else
    BIN="$APP_BIN"
fi
WORK=$(mktemp -d /tmp/serial-loop-app-check.XXXXXX)
trap 'kill -9 $APP 2>/dev/null || true; rm -rf "$WORK"' EXIT

"$BIN" --port 0 > "$WORK/app.log" 2>&1 &
APP=$!
for _ in $(seq 100); do grep -q "listening on" "$WORK/app.log" && break; sleep 0.1; done
PORT=$(sed -n 's/.*listening on [0-9.]*:\([0-9]*\).*/\1/p' "$WORK/app.log")
[ -n "$PORT" ] || { echo "FAIL the app did not start"; cat "$WORK/app.log"; exit 1; }

for i in 1 2 3; do curl -s -m 10 "http://127.0.0.1:$PORT/slow/800" > "$WORK/response-$i" & done
for _ in $(seq 100); do [ "$(grep -c 'GET /slow/800' "$WORK/app.log")" -eq 3 ] && break; sleep 0.05; done
kill -TERM "$APP"
for _ in $(seq 100); do grep -q "received SIGTERM" "$WORK/app.log" && break; sleep 0.05; done
if curl -s -m 2 "http://127.0.0.1:$PORT/" > /dev/null; then echo "FAIL a new connection was accepted after SIGTERM"; exit 1; fi
status=0
timeout 10 tail --pid="$APP" -f /dev/null || { echo "FAIL the app did not exit within 10 s"; exit 1; }
wait "$APP" || status=$?
wait
cat "$WORK/app.log" | sed 's/^/  app: /'
for i in 1 2 3; do
    [ "$(cat "$WORK/response-$i")" = "slept 800 ms" ] || { echo "FAIL in-flight request $i was not answered: '$(cat "$WORK/response-$i")'"; exit 1; }
done
grep -q "received SIGTERM, draining 3 request(s)" "$WORK/app.log" || { echo "FAIL the app did not drain 3 requests"; exit 1; }
[ "$status" -eq 0 ] || { echo "FAIL exit status $status"; exit 1; }
echo "ok   SIGTERM with 3 requests in flight: all answered, new connections refused, exit 0"
