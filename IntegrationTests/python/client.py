"""Python asyncio (on uvloop when installed) talking to the Swift HTTP server on a SerialLoop.

    python3 client.py --port PORT [--loop uvloop|asyncio] [--connections 20] [--requests 10]

Checks, printing each: concurrent keep-alive connections each carrying many requests (GET, POST
bodies up to 1 MiB echoed back, pattern bodies), the server's own count of connections proving the
reuse, pipelined requests answered in order, and clear 4xx/5xx answers to bad requests.
"""
import argparse
import asyncio
import random
import time

from checks import check, finish, install_loop, pattern, read_response, request


async def stats(port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request("GET", "/stats", headers=[("Connection", "close")]))
    status, _, body = await read_response(reader)
    writer.close()
    fields = dict(item.split("=") for item in body.decode().split())
    return int(fields["connections"]), int(fields["requests"])


async def keep_alive_session(port, requests, seed):
    """One connection, `requests` requests of mixed kinds; returns the number that were right."""
    rng = random.Random(seed)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    good = 0
    for index in range(requests):
        kind = index % 3
        if kind == 0:
            writer.write(request("GET", "/"))
            expected = b"Hello, world!\n"
        elif kind == 1:
            expected = rng.randbytes(rng.choice([0, 1, 1000, 65536, 1 << 20]))
            writer.write(request("POST", "/echo", expected))
        else:
            count = rng.randrange(0, 200_000)
            writer.write(request("GET", f"/bytes/{count}"))
            expected = pattern(count)
        await writer.drain()
        status, headers, body = await read_response(reader)
        if status == 200 and body == expected and headers.get("connection") != "close":
            good += 1
    writer.close()
    await writer.wait_closed()
    return good


async def pipelined(port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request("GET", "/bytes/5") + request("POST", "/echo", b"second") + request("GET", "/", headers=[("Connection", "close")]))
    await writer.drain()
    bodies = [(await read_response(reader))[2] for _ in range(3)]
    closed = await reader.read() == b""
    writer.close()
    return bodies, closed


async def bad_request(port, raw):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    status, headers, body = await read_response(reader)
    closed = await reader.read() == b""
    writer.close()
    return status, body.decode().strip(), closed


async def main(args):
    loop_name = install_loop(args.loop)
    print(f"python client ({loop_name}): {args.connections} keep-alive connections x {args.requests} requests to 127.0.0.1:{args.port}")
    connections_before, requests_before = await stats(args.port)
    started = time.perf_counter()
    results = await asyncio.gather(*(keep_alive_session(args.port, args.requests, seed) for seed in range(args.connections)))
    elapsed = time.perf_counter() - started
    total = args.connections * args.requests
    check(sum(results) == total, f"{sum(results)}/{total} responses right (status, body incl. 1 MiB echoes, no close) in {elapsed * 1000:.0f} ms")
    connections_after, requests_after = await stats(args.port)
    # +1: the first /stats connection is counted by the second.
    check(connections_after - connections_before == args.connections + 1,
          f"the server accepted {connections_after - connections_before - 1} connections for {total} requests: keep-alive reused them")
    check(requests_after - requests_before == total + 1, f"the server counted {requests_after - requests_before - 1} requests")

    bodies, closed = await pipelined(args.port)
    check(bodies == [b"abcde", b"second", b"Hello, world!\n"] and closed, f"3 pipelined requests answered in order, then closed on 'Connection: close': {bodies}")

    cases = [
        (b"NONSENSE\r\n\r\n", 400, "malformed request line"),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, "HTTP/2.0 on an HTTP/1.1 server"),
        (b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501, "chunked request body"),
        (b"POST /echo HTTP/1.1\r\nContent-Length: 999999999999\r\n\r\n", 413, "oversized Content-Length"),
        (b"POST /echo HTTP/1.1\r\nContent-Length: 12abc\r\n\r\n", 400, "non-numeric Content-Length"),
        (b"GET /missing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404, "unknown path"),
    ]
    for raw, expected, what in cases:
        status, message, closed = await bad_request(args.port, raw)
        check(status == expected and closed, f"{what} -> {status} and the connection closed ({message!r})")
    finish("python client")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--loop", default="uvloop", choices=["uvloop", "asyncio"])
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--requests", type=int, default=10)
    arguments = parser.parse_args()
    asyncio.run(main(arguments))
