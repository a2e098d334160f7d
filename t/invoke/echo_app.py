#!/usr/bin/env python3
"""A small HTTP/1.1 test app for the service invocation tests (standard
library only).

    python3 echo_app.py --port P --name NAME

Port 0 picks a free port.  The first line on stdout is "PORT <n>" once the
socket listens, so the harness knows where it is without guessing.

Routes (any method unless noted):
  /status/{code}     answers {code} with a text body "app status {code}",
                     Content-Type text/plain and header X-From-App: NAME
                     (no body for 1xx/204/304)
  /slow/{ms}         sleeps, then echoes; counts concurrent requests
  /raw               answers 200 with the request body bytes unchanged and
                     the request's Content-Type (application/octet-stream
                     if none)
  /chunked           answers 200 with the request body, sent with chunked
                     transfer coding (no Content-Length)
  /hangup            closes the connection without answering
  /resp-headers      answers 200 with some custom response headers,
                     including two Set-Cookie lines
  /healthz           200 or 503 depending on the health flag; the request
                     headers are remembered for /last-healthz
  /set-health/{0|1}  sets the health flag
  /stats             JSON {"max_concurrent": n, "requests": n}
  /reset-stats       resets those counters
  /last-healthz      JSON list of [name, value] of the last probe's headers
  anything else      200 JSON echo: {"app", "method", "path", "headers"
                     (list of [name, value] in arrival order), "body_b64"}

Every response carries X-App-Instance: NAME.  The counters cover every
request except the control routes (/stats, /reset-stats, /set-health,
/last-healthz, /healthz), so the tests can measure what the sidecar sent.
"""

import argparse
import base64
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = "app"
lock = threading.Lock()
state = {"healthy": True, "active": 0, "max_concurrent": 0, "requests": 0, "last_healthz": []}

CONTROL = ("/stats", "/reset-stats", "/set-health/", "/last-healthz", "/healthz")


def read_body(handler):
    """Request body from Content-Length or chunked transfer coding."""
    te = handler.headers.get("Transfer-Encoding", "")
    if "chunked" in te.lower():
        out = bytearray()
        while True:
            line = handler.rfile.readline()
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                # Trailers end with an empty line.
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out)
            out += handler.rfile.read(size)
            handler.rfile.readline()
    n = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(n) if n > 0 else b""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "echo-app"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (NAME, fmt % args))

    def reply(self, status, body=b"", ctype="application/json", extra=()):
        self.send_response(status)
        self.send_header("X-App-Instance", NAME)
        no_body = status < 200 or status in (204, 304)
        if not no_body:
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if not no_body and self.command != "HEAD":
            self.wfile.write(body)

    def reply_json(self, status, obj, extra=()):
        self.reply(status, json.dumps(obj).encode("utf-8"), "application/json", extra)

    def handle_any(self):
        body = read_body(self)
        path = self.path.split("?", 1)[0]
        counted = not path.startswith(CONTROL)
        if counted:
            with lock:
                state["requests"] += 1
                state["active"] += 1
                state["max_concurrent"] = max(state["max_concurrent"], state["active"])
        try:
            self.route(path, body)
        finally:
            if counted:
                with lock:
                    state["active"] -= 1

    def route(self, path, body):
        parts = path.strip("/").split("/")
        if parts[0] == "status" and len(parts) == 2:
            code = int(parts[1])
            self.reply(code, ("app status %d" % code).encode(), "text/plain", [("X-From-App", NAME)])
        elif parts[0] == "slow" and len(parts) == 2:
            time.sleep(int(parts[1]) / 1000.0)
            self.echo(body)
        elif path == "/raw":
            self.reply(200, body, self.headers.get("Content-Type") or "application/octet-stream")
        elif path == "/chunked":
            # The request body back in three chunks, no Content-Length.
            self.send_response(200)
            self.send_header("X-App-Instance", NAME)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            third = max(1, len(body) // 3)
            for piece in (body[:third], body[third:2 * third], body[2 * third:]):
                if piece:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/hangup":
            # Close the connection without any response.
            self.close_connection = True
        elif path == "/resp-headers":
            self.reply(200, b"headers", "text/plain",
                       [("X-Resp-One", "one"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"),
                        ("Cache-Control", "no-store")])
        elif path == "/healthz":
            with lock:
                state["last_healthz"] = list(self.headers.items())
                ok = state["healthy"]
            self.reply(200 if ok else 503, b"ok" if ok else b"unhealthy", "text/plain")
        elif parts[0] == "set-health" and len(parts) == 2:
            with lock:
                state["healthy"] = parts[1] == "1"
            self.reply(204)
        elif path == "/stats":
            with lock:
                self.reply_json(200, {"max_concurrent": state["max_concurrent"], "requests": state["requests"]})
        elif path == "/reset-stats":
            with lock:
                state["max_concurrent"] = state["active"]
                state["requests"] = 0
            self.reply(204)
        elif path == "/last-healthz":
            with lock:
                self.reply_json(200, state["last_healthz"])
        else:
            self.echo(body)

    def echo(self, body):
        self.reply_json(200, {
            "app": NAME,
            "method": self.command,
            "path": self.path,
            "headers": list(self.headers.items()),
            "body_b64": base64.b64encode(body).decode("ascii"),
        })

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = handle_any


def main():
    global NAME
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--name", default="app")
    a = p.parse_args()
    NAME = a.name
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    print("PORT %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
