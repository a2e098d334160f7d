#!/usr/bin/env python3
"""A test app for the resiliency tests: it fails, stalls or succeeds on
purpose, following a plan per path, and logs when each request came.

  POST /plan   {"path": "/flaky", "fail": N, "status": 500, "delay": 0.0}
               the first N requests to path wait `delay` seconds, then
               answer `status` (with "status": 200 only the delay applies);
               later ones answer 200 at once.  Resets the path's log.
  GET /log?path=/flaky   {"times": [monotonic seconds of each request]}
  GET /dapr/subscribe    topic "orders" of pubsub "pubsub" -> /orders, with
                         dead-letter topic "dead" -> /dead
  anything else          logged, then answered as the plan says

Prints "PORT <n>" on stdout once it listens.
"""
import argparse
import json
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
plans = {}   # path -> plan
logs = {}    # path -> [times]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("%.3f %s\n" % (time.monotonic(), fmt % args))

    def reply(self, status, body=b"", ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def handle_any(self):
        url = urllib.parse.urlsplit(self.path)
        data = self.body()
        if url.path == "/plan":
            p = json.loads(data)
            with lock:
                plans[p["path"]] = p
                logs[p["path"]] = []
            return self.reply(204)
        if url.path == "/log":
            q = urllib.parse.parse_qs(url.query)
            with lock:
                times = list(logs.get(q["path"][0], []))
            return self.reply(200, json.dumps({"times": times}).encode())
        if url.path == "/dapr/subscribe":
            return self.reply(200, json.dumps([
                {"pubsubname": "pubsub", "topic": "orders", "route": "/orders",
                 "deadLetterTopic": "dead"},
                {"pubsubname": "pubsub", "topic": "dead", "route": "/dead"}]).encode())
        with lock:
            log = logs.setdefault(url.path, [])
            log.append(time.monotonic())
            n = len(log)
            plan = plans.get(url.path, {})
        if n <= plan.get("fail", 0):
            if plan.get("delay"):
                time.sleep(plan["delay"])
            status = plan.get("status", 500)
            if status != 200:
                return self.reply(status, json.dumps({"error": "planned failure %d" % n}).encode())
        return self.reply(200, json.dumps({"ok": True, "n": n}).encode())

    do_GET = do_POST = do_PUT = do_DELETE = handle_any


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    srv.daemon_threads = True
    print("PORT %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
