#!/usr/bin/env bash
# curl against the SerialLoop HTTP server: status, headers, body, keep-alive reuse, an 8 MiB body,
# HTTP/1.0 semantics, and clear errors. Prints each check; exits non-zero if any failed.
#   curl-checks.sh PORT
set -uo pipefail
port=${1:?usage: curl-checks.sh PORT}
base="http://127.0.0.1:$port"
failures=0
check() {   # check CONDITION-EXIT-CODE MESSAGE
    if [ "$1" -eq 0 ]; then echo "  ok   $2"; else echo "  FAIL $2"; failures=$((failures + 1)); fi
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "curl: $(curl --version | head -1 | cut -d' ' -f1-2) against $base"

# Status, headers and body of GET /.
curl -s -D "$tmp/headers" -o "$tmp/body" "$base/"
grep -q $'^HTTP/1.1 200 OK\r$' "$tmp/headers"; check $? "GET / -> HTTP/1.1 200 OK"
grep -qi $'^Content-Length: 14\r$' "$tmp/headers"; check $? "Content-Length: 14"
grep -qi $'^Content-Type: text/plain\r$' "$tmp/headers"; check $? "Content-Type: text/plain"
[ "$(cat "$tmp/body")" = "Hello, world!" ]; check $? "body is \"Hello, world!\""

# Keep-alive: two URLs on one curl command share one connection.
curl -sv "$base/" "$base/stats" -o /dev/null -o /dev/null 2> "$tmp/verbose"
grep -q "Re-using existing connection" "$tmp/verbose"; check $? "two URLs in one curl: \"$(grep -o 'Re-using existing connection[^(]*' "$tmp/verbose" | head -1 | sed 's/ *$//')\""
[ "$(grep -c '^< HTTP/1.1 200' "$tmp/verbose")" -eq 2 ]; check $? "both answered 200 on that one connection"

# A large body: 8 MiB of the pattern, checked byte for byte against Python's own copy.
expected=$(python3 -c 'import hashlib; a=bytes(range(97,123)); n=8<<20; print(hashlib.sha256((a*(n//26+1))[:n]).hexdigest())')
curl -s -D "$tmp/headers" -o "$tmp/large" "$base/bytes/8388608"
[ "$(stat -c %s "$tmp/large")" -eq 8388608 ]; check $? "GET /bytes/8388608 delivered $(stat -c %s "$tmp/large") bytes"
grep -qi $'^Content-Length: 8388608\r$' "$tmp/headers"; check $? "with Content-Length: 8388608"
[ "$(sha256sum < "$tmp/large" | cut -d' ' -f1)" = "$expected" ]; check $? "sha256 matches the expected pattern ($expected)"

# A large request body echoed back (8 MiB up, 8 MiB down).
head -c 8388608 /dev/urandom > "$tmp/upload"
seconds=$(curl -sv -o "$tmp/echoed" -w '%{time_total}' --data-binary "@$tmp/upload" -H "Content-Type: application/octet-stream" "$base/echo" 2> "$tmp/verbose")
cmp -s "$tmp/upload" "$tmp/echoed"; check $? "POST /echo with an 8 MiB random body came back identical (${seconds} s)"
grep -q "^< HTTP/1.1 100 Continue" "$tmp/verbose"; check $? "curl's 'Expect: 100-continue' was answered with 100 Continue (no 1 s stall)"

# HTTP/1.0: the server closes unless asked to keep alive.
curl -s -0 -D "$tmp/headers" -o /dev/null "$base/"
grep -qi $'^Connection: close\r$' "$tmp/headers"; check $? "HTTP/1.0 request -> Connection: close"
curl -s -0 -H "Connection: keep-alive" -D "$tmp/headers" -o /dev/null "$base/"
grep -qi $'^Connection: keep-alive\r$' "$tmp/headers"; check $? "HTTP/1.0 with Connection: keep-alive -> Connection: keep-alive"

# Errors.
[ "$(curl -s -o /dev/null -w '%{http_code}' "$base/nowhere")" = 404 ]; check $? "GET /nowhere -> 404"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$base/bytes/lots")" = 400 ]; check $? "GET /bytes/lots -> 400"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Transfer-Encoding: chunked' --data-binary x "$base/echo")" = 501 ]; check $? "chunked upload -> 501 (not supported, said so)"

if [ "$failures" -ne 0 ]; then echo "curl: $failures check(s) FAILED"; exit 1; fi
echo "curl: all checks passed"
