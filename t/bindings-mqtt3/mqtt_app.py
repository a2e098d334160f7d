#!/usr/bin/env python3
"""The app of the bindings.mqtt3 tests: records every event daprd POSTs.

  OPTIONS /<route>   200 (the app takes the binding's events)
  POST /<route>      records the event, then answers by its body:
                       contains "failN" (N a digit): 500 for the first N
                       deliveries of that exact body, then 200;
                       contains "slow": answers after 20 s (the test kills
                       daprd meanwhile);
                       anything else: 200.
  GET /events        {"events": [{"route", "t", "body", "headers"}, ...]}

The first stdout line is "PORT <n>"; then it serves until killed.
"""

import http.server
import json
import re
import sys
import threading
import time

lock = threading.Lock()
events = []
seen = {}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b""):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_OPTIONS(self):
        self.reply(200)

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode("utf-8", "replace")
        with lock:
            events.append({"route": self.path.lstrip("/"), "t": time.time(), "body": body,
                           "headers": {k.lower(): v for k, v in self.headers.items()}})
            seen[body] = seen.get(body, 0) + 1
            count = seen[body]
        m = re.search(r"fail(\d)", body)
        if m and count <= int(m.group(1)):
            self.reply(500, b'{"error":"told to fail"}')
            return
        if "slow" in body:
            time.sleep(20)
        self.reply(200, b'{"ok":true}')

    def do_GET(self):
        with lock:
            body = json.dumps({"events": events}).encode()
        self.reply(200, body)


def main():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    print("PORT %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
