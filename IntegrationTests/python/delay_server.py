"""A real threaded HTTP server that delays every response, so concurrent clients can show overlap.

    python3 delay_server.py [--delay-ms 200]     prints "listening on 127.0.0.1:PORT"

GET any path -> 200 "delayed N ms: PATH\n" after sleeping N ms (one thread per connection).
"""
import argparse
import http.server
import sys
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay-ms", type=int, default=200)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self):
            time.sleep(args.delay_ms / 1000)
            body = f"delayed {args.delay_ms} ms: {self.path}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    class Server(http.server.ThreadingHTTPServer):
        request_queue_size = 256      # the default of 5 would drop SYNs from a 50-way fan-out
        daemon_threads = True

    server = Server(("127.0.0.1", args.port), Handler)
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
