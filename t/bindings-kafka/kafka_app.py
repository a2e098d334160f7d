#!/usr/bin/env python3
"""The app behind daprd in the bindings.kafka tests: records every event.

  OPTIONS /<route>   200 (the app takes every binding)
  POST /<route>      records {route, body, headers, status} and answers:
                     500 while the body's JSON "id" still has failures
                     left (PUT /_ctl/fail), else 200; after --delay
                     seconds (the SIGKILL test wants events in flight)
  PUT /_ctl/fail     {"ids": [..], "times": N}: fail those ids N times
  GET /events        {"events": [...]}
  GET /healthz       200

--port N listens on N (default: a free port).  The first stdout line is
"PORT <n>"; then it serves until killed.
"""

import argparse
import http.server
import json
import sys
import threading
import time

lock = threading.Lock()
events = []
fail_left = {}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b""):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n)

    def do_OPTIONS(self):
        self.reply(200)

    def do_PUT(self):
        data = json.loads(self.body() or b"{}")
        if self.path == "/_ctl/fail":
            with lock:
                for i in data["ids"]:
                    fail_left[i] = data["times"]
            self.reply(204)
        else:
            self.reply(404)

    def do_GET(self):
        if self.path == "/events":
            with lock:
                out = json.dumps({"events": events}).encode()
            self.reply(200, out)
        elif self.path == "/healthz":
            self.reply(200)
        else:
            self.reply(404)

    def do_POST(self):
        body = self.body()
        if self.server.delay:
            time.sleep(self.server.delay)
        status = 200
        try:
            i = json.loads(body).get("id")
        except (ValueError, AttributeError):
            i = None
        with lock:
            if i is not None and fail_left.get(i, 0) > 0:
                fail_left[i] -= 1
                status = 500
            events.append({"route": self.path.split("?", 1)[0].lstrip("/"), "t": time.time(),
                           "body": body.decode("utf-8", "replace"), "id": i, "status": status,
                           "headers": [[k, v] for k, v in self.headers.items()]})
        self.reply(status, b'{"ok":false}' if status != 200 else b"")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.delay = args.delay
    print("PORT %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
