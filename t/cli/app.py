"""A tiny app for the dapr CLI tests, started by `dapr run`.

Serves GET /env (the Dapr variables it was given, as JSON), subscribes to
topic "orders" of pub/sub "pubsub" (deliveries listed by GET /received),
and answers any
other path with {"method": ..., "path": ..., "body": ...} so that service
invocation can be checked.  Prints "app ready" once listening.

Arguments: --exit-after SECONDS CODE   exit by itself with CODE.
           --exit-now CODE             exit at once with CODE (no server).
"""
import http.server
import json
import os
import sys
import threading

VARS = ["APP_ID", "APP_PORT", "APP_PROTOCOL", "APP_CHANNEL_ADDRESS", "DAPR_HTTP_PORT",
        "DAPR_GRPC_PORT", "DAPR_METRICS_PORT", "EXTRA", "COMMON"]


RECEIVED = []  # CloudEvents delivered to /orders (dapr publish test)


class Handler(http.server.BaseHTTPRequestHandler):
    def _answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode("utf-8", "replace") if n else ""
        if self.path == "/env":
            out = {k: os.environ.get(k) for k in VARS}
            out["cwd"] = os.getcwd()
        elif self.path == "/dapr/subscribe":
            out = [{"pubsubname": "pubsub", "topic": "orders", "route": "/orders"}]
        elif self.path == "/received":
            out = RECEIVED
        elif self.path == "/orders":
            RECEIVED.append(json.loads(body))
            out = {"status": "SUCCESS"}
        else:
            out = {"method": self.command, "path": self.path, "body": body}
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, fmt, *args):
        print("request " + fmt % args, flush=True)


def main():
    args = sys.argv[1:]
    if args[:1] == ["--exit-now"]:
        print("app exiting with %s" % args[1], flush=True)
        sys.exit(int(args[1]))
    port = int(os.environ.get("APP_PORT") or 0)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    if args[:1] == ["--exit-after"]:
        code = int(args[2])

        def stop():
            print("app exiting with %d" % code, flush=True)
            os._exit(code)
        threading.Timer(float(args[1]), stop).start()
    print("app ready APP_ID=%s DAPR_HTTP_PORT=%s" % (os.environ.get("APP_ID"), os.environ.get("DAPR_HTTP_PORT")),
          flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
