#!/usr/bin/env python3
"""A test app for input bindings: records every request daprd sends it.

  OPTIONS /<route>    answers --options STATUS for that route (default 200),
                      after --options-delay seconds
  POST /<route>       records the event, answers --post STATUS (default
                      200) after --delay seconds for routes listed there
  GET /healthz        200, or 500 after /set-health/0
  GET /set-health/N   N = 1 healthy, 0 unhealthy
  GET /events         {"events": [...], "options": [...], "max_concurrent": n}
  GET /reset          forgets what was recorded

Options take ROUTE=VALUE pairs (route without its slash), e.g.
  --options notsub=404 --post failing=500 --delay slow=2.5

The first stdout line is "PORT <n>"; then it serves until killed.
"""

import argparse
import http.server
import json
import sys
import threading
import time

lock = threading.Lock()
events = []
options_seen = []
healthy = [True]
concurrent = [0, 0]  # now, max


def pairs(values, conv):
    out = {}
    for v in values or []:
        k, _, val = v.partition("=")
        out[k] = conv(val)
    return out


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def route(self):
        return self.path.split("?", 1)[0].lstrip("/")

    def do_OPTIONS(self):
        r = self.route()
        delay = self.server.opt_delay.get(r, 0)
        if delay:
            time.sleep(delay)
        with lock:
            options_seen.append({"route": r, "t": time.time(),
                                 "headers": [[k, v] for k, v in self.headers.items()]})
        self.reply(self.server.opts.get(r, 200))

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        r = self.route()
        with lock:
            concurrent[0] += 1
            concurrent[1] = max(concurrent[1], concurrent[0])
        try:
            delay = self.server.delay.get(r, 0)
            if delay:
                time.sleep(delay)
            with lock:
                events.append({"route": r, "t": time.time(), "body": body.decode("utf-8", "replace"),
                               "headers": [[k, v] for k, v in self.headers.items()]})
            self.reply(self.server.post.get(r, 200), b'{"ok":true}')
        finally:
            with lock:
                concurrent[0] -= 1

    def do_GET(self):
        r = self.route()
        if r == "healthz":
            self.reply(200 if healthy[0] else 500)
        elif r.startswith("set-health/"):
            healthy[0] = r.endswith("1")
            self.reply(204)
        elif r == "events":
            with lock:
                body = json.dumps({"events": events, "options": options_seen,
                                   "max_concurrent": concurrent[1]}).encode()
            self.reply(200, body)
        elif r == "reset":
            with lock:
                events.clear()
                options_seen.clear()
                concurrent[1] = concurrent[0]
            self.reply(204)
        else:
            self.reply(404)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--options", action="append")
    p.add_argument("--post", action="append")
    p.add_argument("--delay", action="append")
    p.add_argument("--options-delay", action="append")
    a = p.parse_args()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    srv.opts = pairs(a.options, int)
    srv.post = pairs(a.post, int)
    srv.delay = pairs(a.delay, float)
    srv.opt_delay = pairs(a.options_delay, float)
    print("PORT %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
