#!/usr/bin/env python3
"""The far end of the bindings.http tests: an HTTP(S) server that echoes.

Every method answers 200 with JSON {"method", "path", "query", "headers",
"body"} (headers as [name, value] pairs in arrival order), except:

  /status/<code>           answers <code> with {"status": code} and X-Status
  /redirect/<code>?to=P    answers <code> with Location: P
  /loop                    redirects to itself
  /sleep/<ms>              waits, then echoes
  /big/<n>                 answers n bytes of "x"
  /gzip                    answers a gzip-encoded echo when asked for gzip
  /headers                 answers with a repeated header (Set-Cookie a, b)

A leading /base segment is ignored.  Every response carries X-Target: yes.  With --cert/--key it speaks TLS;
with --client-ca it also requires a client certificate signed by it.
The first stdout line is "PORT <n>".
"""

import argparse
import gzip
import http.server
import json
import ssl
import sys
import time
from urllib.parse import parse_qs, urlsplit


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body, ctype="application/json", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("X-Target", "yes")
        for k, v in extra:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        u = urlsplit(self.path)
        parts = u.path.strip("/").split("/")
        if parts[0] == "base":  # the prefix some tests put in the binding's url
            parts = parts[1:] or [""]
        echo = json.dumps({"method": self.command, "path": u.path, "query": u.query,
                           "headers": [[k, v] for k, v in self.headers.items()],
                           "body": body.decode("utf-8", "replace")}).encode()
        if parts[0] == "status" and len(parts) > 1:
            code = int(parts[1])
            self.send(code, json.dumps({"status": code}).encode(), extra=[("X-Status", str(code))])
        elif parts[0] == "redirect" and len(parts) > 1:
            to = parse_qs(u.query).get("to", ["/"])[0]
            self.send(int(parts[1]), b"", extra=[("Location", to)])
        elif parts[0] == "loop":
            self.send(302, b"", extra=[("Location", u.path)])
        elif parts[0] == "sleep" and len(parts) > 1:
            time.sleep(int(parts[1]) / 1000.0)
            self.send(200, echo)
        elif parts[0] == "big" and len(parts) > 1:
            self.send(200, b"x" * int(parts[1]), "text/plain")
        elif parts[0] == "gzip":
            if "gzip" in (self.headers.get("Accept-Encoding") or ""):
                self.send(200, gzip.compress(echo), extra=[("Content-Encoding", "gzip")])
            else:
                self.send(200, echo)
        elif parts[0] == "headers":
            self.send(200, b"{}", extra=[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("x-lower", "v")])
        else:
            self.send(200, echo)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_TRACE = do_HEAD = handle_any


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--client-ca")
    a = p.parse_args()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    if a.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
        if a.client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(a.client_ca)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("PORT %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
