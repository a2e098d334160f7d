#!/usr/bin/env python3
"""A strict OTLP/HTTP JSON trace receiver for the tracing tests.

    python3 otlp_receiver.py --port P

Run it with a Python that has the opentelemetry-proto package (PyPI).  The
first stdout line is "PORT <n>".  Every POST /v1/traces body is checked:

  - Content-Type application/json or application/x-protobuf;
  - protobuf bodies must be exactly protobuf's own encoding of the parsed
    message (no unknown fields, canonical field order);
  - it parses into opentelemetry.proto.collector.trace.v1.
    ExportTraceServiceRequest with protobuf's json_format and
    ignore_unknown_fields=False (so a misspelt or misplaced field fails);
    trace and span ids are hex strings in OTLP/JSON, so they are turned
    into the base64 form protobuf's JSON mapping expects first, and must
    be lowercase hex of exactly 16 / 8 bytes;
  - every span has a name, a kind other than UNSPECIFIED, and
    0 < startTimeUnixNano <= endTimeUnixNano; the resource has
    service.name.

A valid payload is answered 200 with an empty ExportTraceServiceResponse
and its spans are kept; an invalid one is answered 400 and the reason is
kept.  GET /spans answers {"spans": [...], "errors": [...], "payloads": n}
where each span is the JSON span plus "service".
"""

import argparse
import base64
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

lock = threading.Lock()
store = {"spans": [], "errors": [], "payloads": 0, "protobuf_payloads": 0, "raw": []}

HEX = {"traceId": 32, "spanId": 16, "parentSpanId": 16}


def hex_to_b64(obj, path="$"):
    """Convert OTLP/JSON hex ids to protobuf JSON's base64, checking them."""
    if isinstance(obj, dict):
        for k, v in list(obj.items()):
            if k in HEX and isinstance(v, str):
                if not re.fullmatch("[0-9a-f]{%d}" % HEX[k], v):
                    raise ValueError("%s.%s is not %d lowercase hex digits: %r" % (path, k, HEX[k], v))
                obj[k] = base64.b64encode(bytes.fromhex(v)).decode()
            else:
                hex_to_b64(v, path + "." + k)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            hex_to_b64(v, "%s[%d]" % (path, i))


def b64_to_hex(obj):
    """The inverse of hex_to_b64, for protobuf payloads shown as JSON."""
    if isinstance(obj, dict):
        for k, v in list(obj.items()):
            if k in HEX and isinstance(v, str):
                obj[k] = base64.b64decode(v).hex()
            else:
                b64_to_hex(v)
    elif isinstance(obj, list):
        for v in obj:
            b64_to_hex(v)


def parse_protobuf(body):
    """Parse a binary ExportTraceServiceRequest strictly: the bytes must be
    exactly what protobuf itself encodes for the message once unknown
    fields are dropped (a round trip through JSON drops them), so an
    unknown or misnumbered field, a wrong wire type or a non-canonical
    encoding fails."""
    msg = ExportTraceServiceRequest.FromString(body)
    again = ExportTraceServiceRequest()
    json_format.Parse(json_format.MessageToJson(msg), again, ignore_unknown_fields=False)
    if again.SerializeToString() != body:
        raise ValueError("protobuf body has unknown fields or a non-canonical encoding")
    doc = json_format.MessageToDict(msg, use_integers_for_enums=True)
    b64_to_hex(doc)
    return msg, doc


def validate(body, ctype):
    media = (ctype or "").split(";")[0].strip().lower()
    if media == "application/x-protobuf":
        msg, original = parse_protobuf(body)
        with lock:
            store["protobuf_payloads"] += 1
    elif media == "application/json":
        doc = json.loads(body.decode("utf-8"))
        original = json.loads(body.decode("utf-8"))
        hex_to_b64(doc)
        msg = ExportTraceServiceRequest()
        json_format.Parse(json.dumps(doc), msg, ignore_unknown_fields=False)
    else:
        raise ValueError("Content-Type is %r, not application/json or application/x-protobuf" % ctype)
    if not msg.resource_spans:
        raise ValueError("no resourceSpans")
    spans = []
    for rs_json, rs in zip(original["resourceSpans"], msg.resource_spans):
        service = None
        for a in rs.resource.attributes:
            if a.key == "service.name":
                service = a.value.string_value
        if not service:
            raise ValueError("resource without service.name")
        for ss_json, ss in zip(rs_json["scopeSpans"], rs.scope_spans):
            for sj, sp in zip(ss_json["spans"], ss.spans):
                if not sp.name:
                    raise ValueError("span without a name")
                if sp.kind == 0:
                    raise ValueError("span %s has kind UNSPECIFIED" % sp.name)
                if not (0 < sp.start_time_unix_nano <= sp.end_time_unix_nano):
                    raise ValueError("span %s: bad times %d..%d" % (sp.name, sp.start_time_unix_nano,
                                                                     sp.end_time_unix_nano))
                if len(sp.trace_id) != 16 or len(sp.span_id) != 8 or sp.parent_span_id and len(sp.parent_span_id) != 8:
                    raise ValueError("span %s: id lengths" % sp.name)
                s = dict(sj)
                s["service"] = service
                spans.append(s)
    return spans


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("otlp %s\n" % (fmt % args))

    def reply(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        if self.path != "/v1/traces":
            self.reply(404, {"error": "not found"})
            return
        try:
            spans = validate(body, self.headers.get("Content-Type"))
        except Exception as e:  # noqa: BLE001 - every failure is a finding
            with lock:
                store["errors"].append("%s: %s" % (type(e).__name__, e))
                store["raw"].append(body.decode("utf-8", "replace"))
            self.reply(400, {"error": str(e)})
            return
        with lock:
            store["payloads"] += 1
            store["spans"].extend(spans)
            store["raw"].append(body.decode("utf-8", "replace"))
        self.reply(200, {})  # an empty ExportTraceServiceResponse

    def do_GET(self):
        with lock:
            data = dict(store)
        self.reply(200, data)


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
