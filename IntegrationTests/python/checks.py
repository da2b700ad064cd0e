"""Shared helpers for the Python clients: checks that print as they go, and HTTP/1.1 over asyncio streams."""
import asyncio
import sys

failures = []


def check(condition, message):
    print(f"  {'ok  ' if condition else 'FAIL'} {message}", flush=True)
    if not condition:
        failures.append(message)


def finish(name):
    if failures:
        print(f"{name}: {len(failures)} check(s) FAILED:")
        for failure in failures:
            print(f"  - {failure}")
        sys.exit(1)
    print(f"{name}: all checks passed")


def pattern(count):
    """The body of GET /bytes/N: "abc...xyzabc..."."""
    alphabet = bytes(range(ord("a"), ord("z") + 1))
    return (alphabet * (count // 26 + 1))[:count]


def request(method, path, body=b"", headers=()):
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_response(reader):
    """Reads one response framed by Content-Length; returns (status, headers dict, body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


def install_loop(name):
    """'uvloop' (if installed) or 'asyncio'; returns the name used."""
    if name == "uvloop":
        try:
            import uvloop
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
            return f"uvloop {uvloop.__version__}"
        except ImportError:
            print("  --   uvloop is not installed; using asyncio's own loop")
    return "asyncio"
