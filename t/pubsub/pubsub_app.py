#!/usr/bin/env python3
"""A small subscriber app for the pub/sub tests (standard library only).

    python3 pubsub_app.py --port P --name NAME

Port 0 picks a free port.  The first line on stdout is "PORT <n>" once the
socket listens.

What daprd sees:
  GET  /dapr/subscribe   the answer set with PUT /_ctl/subscribe (default:
                         200 with "[]"); every call is counted
  GET  /healthz          200, or 503 after GET /_ctl/health/0
  anything else          a delivery: recorded, then answered by the first
                         matching rule set with PUT /_ctl/rules (default:
                         200 with an empty body)

Control routes (never recorded):
  PUT  /_ctl/subscribe   body {"status": N, "body": <JSON value or string>}:
                         a string body is sent as is, anything else as JSON
  PUT  /_ctl/rules       body: a list of rules, tried in order:
         {"path": "/x",          only deliveries to this path (optional)
          "match": "text",       only when the body contains it (optional)
          "times": n,            used n times, then skipped (default: always)
          "delay_ms": n,         sleep first
          "status": 200,         response status (default 200)
          "json": {...},         JSON response body, or
          "body": "text",        text response body, or
          "bulk": {"substring": "STATUS", "*": "SUCCESS"}
                                 answer a bulk delivery with one status per
                                 entry: the first key found in the entry's
                                 JSON text wins, "*" is the fallback; a null
                                 status leaves the entry out of the answer}
  GET  /_ctl/deliveries  JSON list of {"seq", "path", "headers" ([name,
                         value] in arrival order), "body_b64", "t"}
  GET  /_ctl/stats       {"subscribe_calls", "subscribe_headers",
                         "max_concurrent", "active"}
  POST /_ctl/reset       forget deliveries and rules, reset counters
  GET  /_ctl/health/{0|1}  set the health flag
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
state = {
    "healthy": True,
    "subscribe": {"status": 200, "body": []},
    "subscribe_calls": 0,
    "subscribe_headers": [],
    "rules": [],
    "deliveries": [],
    "seq": 0,
    "active": 0,
    "max_concurrent": 0,
}


def read_body(handler):
    te = handler.headers.get("Transfer-Encoding", "")
    if "chunked" in te.lower():
        out = bytearray()
        while True:
            line = handler.rfile.readline()
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out)
            out += handler.rfile.read(size)
            handler.rfile.readline()
    n = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(n) if n > 0 else b""


def pick_rule(path, text):
    """First applicable rule (consuming one of its `times`), or None."""
    with lock:
        for r in state["rules"]:
            if r.get("path") not in (None, path):
                continue
            if r.get("match") is not None and r["match"] not in text:
                continue
            t = r.get("times")
            if t is not None:
                if t <= 0:
                    continue
                r["times"] = t - 1
            return dict(r)
    return None


def bulk_answer(spec, body):
    try:
        envelope = json.loads(body)
        entries = envelope.get("entries") or []
    except ValueError:
        entries = []
    statuses = []
    for e in entries:
        text = json.dumps(e.get("event"), sort_keys=True)
        if isinstance(e.get("event"), str):
            try:
                text += base64.b64decode(e["event"]).decode("utf-8", "replace")
            except ValueError:
                pass
        status = spec.get("*", "SUCCESS")
        for key, value in spec.items():
            if key != "*" and key in text:
                status = value
                break
        if status is not None:
            statuses.append({"entryId": e.get("entryId"), "status": status})
    return {"statuses": statuses}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pubsub-app"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (NAME, fmt % args))

    def reply(self, status, body=b"", ctype="application/json"):
        self.send_response(status)
        no_body = status < 200 or status in (204, 304)
        if not no_body:
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not no_body:
            self.wfile.write(body)

    def reply_json(self, status, obj):
        self.reply(status, json.dumps(obj).encode("utf-8"))

    def handle_any(self):
        body = read_body(self)
        path = self.path.split("?", 1)[0]
        if path.startswith("/_ctl/"):
            self.control(path, body)
        elif path == "/dapr/subscribe":
            with lock:
                state["subscribe_calls"] += 1
                state["subscribe_headers"] = list(self.headers.items())
                sub = state["subscribe"]
            b = sub.get("body")
            if isinstance(b, str):
                self.reply(sub.get("status", 200), b.encode("utf-8"))
            else:
                self.reply_json(sub.get("status", 200), b)
        elif path == "/healthz":
            with lock:
                ok = state["healthy"]
            self.reply(200 if ok else 503, b"ok" if ok else b"unhealthy", "text/plain")
        else:
            self.deliver(path, body)

    def deliver(self, path, body):
        with lock:
            state["seq"] += 1
            state["active"] += 1
            state["max_concurrent"] = max(state["max_concurrent"], state["active"])
            state["deliveries"].append({
                "seq": state["seq"], "path": self.path, "headers": list(self.headers.items()),
                "body_b64": base64.b64encode(body).decode("ascii"), "t": time.monotonic()})
        try:
            text = body.decode("utf-8", "replace")
            rule = pick_rule(path, text) or {}
            if rule.get("delay_ms"):
                time.sleep(rule["delay_ms"] / 1000.0)
            status = rule.get("status", 200)
            if "bulk" in rule:
                self.reply_json(status, bulk_answer(rule["bulk"], body))
            elif "json" in rule:
                self.reply_json(status, rule["json"])
            elif "body" in rule:
                self.reply(status, rule["body"].encode("utf-8"), "text/plain")
            else:
                self.reply(status, b"", "text/plain")
        finally:
            with lock:
                state["active"] -= 1

    def control(self, path, body):
        parts = path.strip("/").split("/")
        if path == "/_ctl/subscribe":
            with lock:
                state["subscribe"] = json.loads(body)
            self.reply(204)
        elif path == "/_ctl/rules":
            with lock:
                state["rules"] = json.loads(body)
            self.reply(204)
        elif path == "/_ctl/deliveries":
            with lock:
                self.reply_json(200, state["deliveries"])
        elif path == "/_ctl/stats":
            with lock:
                self.reply_json(200, {k: state[k] for k in
                                      ("subscribe_calls", "subscribe_headers", "max_concurrent", "active")})
        elif path == "/_ctl/reset":
            with lock:
                state["deliveries"] = []
                state["rules"] = []
                state["max_concurrent"] = state["active"]
            self.reply(204)
        elif len(parts) == 3 and parts[1] == "health":
            with lock:
                state["healthy"] = parts[2] == "1"
            self.reply(204)
        else:
            self.reply(404, b"no such control route", "text/plain")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_any


def main():
    global NAME
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--name", default="app")
    a = p.parse_args()
    NAME = a.name
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    srv.request_queue_size = 64
    print("PORT %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
