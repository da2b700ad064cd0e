"""Slow clients against the Swift HTTP server: the loop must serve them without stalling anyone else.

    python3 slow_client.py --port PORT --idle-timeout-ms MS     (MS: what the server was started with)

1. A request sent one byte at a time (2 ms apart) gets the right answer, while fast requests on
   other connections keep completing quickly.
2. An 8 MiB response read slowly (64 KiB per 10 ms, longer than the idle timeout) arrives intact
   while fast requests complete: time spent writing to a slow reader is not idle time.
3. A client that connects and sends nothing, or stops mid-request, is closed after the idle timeout.
"""
import argparse
import asyncio
import time

from checks import check, finish, install_loop, pattern, read_response, request


async def fast_requests_meanwhile(port, done):
    """GET / on a keep-alive connection until `done` is set; returns (count, worst latency in ms)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    count, worst = 0, 0.0
    while not done.is_set():
        started = time.perf_counter()
        writer.write(request("GET", "/"))
        status, _, body = await read_response(reader)
        worst = max(worst, (time.perf_counter() - started) * 1000)
        if status == 200 and body == b"Hello, world!\n":
            count += 1
        await asyncio.sleep(0.005)
    writer.close()
    return count, worst


async def byte_by_byte(port):
    body = b"sent one byte at a time"
    raw = request("POST", "/echo", body, headers=[("Connection", "close")])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for byte in raw:
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.002)
    status, _, echoed = await read_response(reader)
    writer.close()
    return status, echoed == body, len(raw)


async def slow_reader(port, size):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=64 * 1024)
    writer.write(request("GET", f"/bytes/{size}", headers=[("Connection", "close")]))
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    received = bytearray()
    while chunk := await reader.read(64 * 1024):
        received += chunk
        await asyncio.sleep(0.01)
    writer.close()
    return head.split(b" ")[1] == b"200", bytes(received) == pattern(size), len(received)


async def idle_close(port, first_bytes):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(first_bytes)
    await writer.drain()
    started = time.perf_counter()
    data = await asyncio.wait_for(reader.read(), timeout=30)
    writer.close()
    return data, (time.perf_counter() - started) * 1000


async def alongside(port, slow):
    done = asyncio.Event()
    fast = asyncio.create_task(fast_requests_meanwhile(port, done))
    result = await slow
    done.set()
    return result, await fast


async def main(args):
    loop_name = install_loop(args.loop)
    print(f"slow clients ({loop_name}) against 127.0.0.1:{args.port}")
    started = time.perf_counter()
    (status, same, length), (fast, worst) = await alongside(args.port, byte_by_byte(args.port))
    elapsed = (time.perf_counter() - started) * 1000
    check(status == 200 and same, f"a {length}-byte request sent byte by byte over {elapsed:.0f} ms was answered correctly")
    check(fast > 10 and worst < 250, f"meanwhile {fast} fast requests completed on another connection (worst {worst:.1f} ms)")

    size = 8 * 1024 * 1024
    started = time.perf_counter()
    (ok, intact, received), (fast, worst) = await alongside(args.port, slow_reader(args.port, size))
    elapsed = (time.perf_counter() - started) * 1000
    check(ok and intact and elapsed > args.idle_timeout_ms,
          f"an 8 MiB body read slowly over {elapsed:.0f} ms (> the {args.idle_timeout_ms} ms idle timeout) arrived intact ({received} bytes)")
    check(fast > 10 and worst < 250, f"meanwhile {fast} fast requests completed (worst {worst:.1f} ms): the writer waited on writable, not the loop")

    timeout = args.idle_timeout_ms
    for what, first in [("connects and sends nothing", b""), ("stops mid-request", b"GET / HT")]:
        data, waited = await idle_close(args.port, first)
        check(data == b"" and timeout * 0.9 <= waited <= timeout + 2000,
              f"a client that {what} is closed after {waited:.0f} ms (idle timeout {timeout} ms)")
    finish("slow clients")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--idle-timeout-ms", type=int, required=True)
    parser.add_argument("--loop", default="uvloop", choices=["uvloop", "asyncio"])
    asyncio.run(main(parser.parse_args()))
