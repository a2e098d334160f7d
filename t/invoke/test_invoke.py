"""Service invocation between two sidecars (reference §4, §10.2): apps A
and B, each with its own daprd; A's sidecar calls B.  Checks what reaches
B's app (verb, path, query, headers, body) and what comes back (status,
headers, body unchanged), the other addressing forms, self-invocation,
tracing headers, large bodies and the sidecar's own errors."""

import base64
import http.client
import json
import os
import re
import threading

import pytest

from conftest import REQUEST_TIMEOUT, assert_error, echo_headers, wait_invocable

VERBS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@pytest.fixture(scope="module")
def pair(world):
    b = world.pair("B")
    a = world.pair("A")
    wait_invocable(a, "B")
    return a, b


@pytest.fixture(scope="module")
def a(pair):
    return pair[0]


@pytest.fixture(scope="module")
def b(pair):
    return pair[1]


# ---- verbs, paths, query ---------------------------------------------------------

@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_reaches_the_other_app(a, b, verb):
    body = None if verb in ("GET", "HEAD", "OPTIONS") else b"payload-" + verb.encode()
    r = a.invoke("B", "echo/verb", verb, body=body,
                 headers={"Content-Type": "text/plain"} if body else None)
    assert r.status == 200, r
    assert r.header("X-App-Instance") == "B", r.headers
    if verb == "HEAD":
        assert r.body == b"", r
        return
    got = r.json()
    assert got["app"] == "B"
    assert got["method"] == verb
    assert got["path"] == "/echo/verb"
    assert base64.b64decode(got["body_b64"]) == (body or b"")


def test_path_segments_and_percent_encoding_arrive_raw(a):
    r = a.invoke("B", "orders/2024/a%20b/c%2Fd/%C3%A9t%C3%A9")
    assert r.status == 200, r
    assert r.json()["path"] == "/orders/2024/a%20b/c%2Fd/%C3%A9t%C3%A9"


def test_query_string_is_forwarded_raw(a):
    query = "a=1&a=2&b=%2B+x&metadata.ttlInSeconds=5&empty=&flag&c=%26%3D"
    r = a.client.get("/v1.0/invoke/B/method/search?" + query)
    assert r.status == 200, r
    assert r.json()["path"] == "/search?" + query


def test_method_dot_segments_are_cleaned(a):
    r = a.client.get("/v1.0/invoke/B/method/a/../b/./c")
    assert r.status == 200, r
    assert r.json()["path"] == "/b/c"


@pytest.mark.parametrize("method", ["a%23b", "a%3Fb", "a%00b", "a%0Ab"])
def test_invalid_characters_in_method(a, method):
    r = a.client.get("/v1.0/invoke/B/method/" + method)
    assert_error(r, 500, "ERR_DIRECT_INVOKE", "failed to invoke, id: B")


# ---- headers -------------------------------------------------------------------

def test_custom_headers_are_forwarded_and_hop_by_hop_are_not(a):
    r = a.invoke("B", "echo", headers={
        "X-Custom-Header": "hello world",
        "X-Multi": "one",
        "Connection": "keep-alive, X-Drop-Me",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "X-Drop-Me": "listed in Connection",
        "Proxy-Authorization": "Basic Zm9vOmJhcg==",
    })
    h = echo_headers(r)
    assert h.get("x-custom-header") == ["hello world"], h
    assert h.get("x-multi") == ["one"], h
    for name in ("keep-alive", "te", "x-drop-me", "proxy-authorization"):
        assert name not in h, "hop-by-hop header %s reached the app: %r" % (name, h)
    # The sidecar may open its own keep-alive connection, but the caller's
    # Connection value must not leak through.
    for v in h.get("connection", []):
        assert "x-drop-me" not in v.lower(), h


def test_repeated_request_header_keeps_all_values(a):
    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=REQUEST_TIMEOUT)
    try:
        conn.putrequest("GET", "/v1.0/invoke/B/method/echo")
        conn.putheader("X-Repeat", "first")
        conn.putheader("X-Repeat", "second")
        conn.endheaders()
        resp = conn.getresponse()
        got = resp.read()
    finally:
        conn.close()
    assert resp.status == 200, got
    values = [v for k, v in json.loads(got)["headers"] if k.lower() == "x-repeat"]
    # Two lines or one comma-joined line are equivalent in HTTP.
    assert ", ".join(values) == "first, second", values


def test_caller_and_callee_ids_are_set_and_not_spoofable(a):
    r = a.invoke("B", "echo", headers={"dapr-caller-app-id": "evil", "dapr-callee-app-id": "evil"})
    h = echo_headers(r)
    assert h.get("dapr-caller-app-id") == ["A"], h
    assert h.get("dapr-callee-app-id") == ["B"], h


def test_content_type_and_binary_body_are_exact(a):
    body = bytes(range(256)) * 16 + b"\x00\r\n\r\n\xff"
    r = a.invoke("B", "echo", "POST", body=body, headers={"Content-Type": "application/x-custom; charset=binary"})
    assert r.status == 200, r
    got = r.json()
    assert base64.b64decode(got["body_b64"]) == body
    h = {k.lower(): v for k, v in got["headers"]}
    assert h.get("content-type") == "application/x-custom; charset=binary", h


def test_no_content_type_stays_absent(a):
    r = a.invoke("B", "echo", "POST", body=b"abc")
    h = echo_headers(r)
    assert "content-type" not in h, h


def test_forwarded_headers_name_the_original_client(a):
    r = a.invoke("B", "echo")
    h = echo_headers(r)
    assert h.get("x-forwarded-for") == ["127.0.0.1"], h
    assert h.get("x-forwarded-host") == ["127.0.0.1:%d" % a.port], h
    assert any("for=127.0.0.1" in v for v in h.get("forwarded", [])), h


# ---- response from the app ---------------------------------------------------------

@pytest.mark.parametrize("code", [201, 404, 418, 500, 503])
def test_app_status_and_body_are_returned_unwrapped(a, code):
    r = a.invoke("B", "status/%d" % code, "POST", body=b"x")
    assert r.status == code, r
    assert r.body == ("app status %d" % code).encode(), r
    assert r.content_type == "text/plain", r.headers
    assert r.header("X-From-App") == "B", r.headers


def test_app_204_has_no_body(a):
    r = a.invoke("B", "status/204")
    assert r.status == 204, r
    assert r.body == b""


def test_app_response_headers_are_returned(a):
    r = a.invoke("B", "resp-headers")
    assert r.status == 200, r
    assert r.body == b"headers"
    assert r.header("X-Resp-One") == "one", r.headers
    assert r.header("Cache-Control") == "no-store", r.headers
    assert sorted(r.headers.get_all("Set-Cookie") or []) == ["a=1", "b=2"], r.headers


def test_binary_response_round_trip(a):
    body = os.urandom(64 * 1024)
    r = a.invoke("B", "raw", "PUT", body=body, headers={"Content-Type": "application/octet-stream"})
    assert r.status == 200, r
    assert r.content_type == "application/octet-stream"
    assert r.body == body


def test_chunked_request_body_arrives_whole(a):
    body = b"chunk-" * 5000
    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=REQUEST_TIMEOUT)
    try:
        conn.request("POST", "/v1.0/invoke/B/method/raw", body=iter([body[:7], body[7:20000], body[20000:]]),
                     headers={"Content-Type": "application/octet-stream"}, encode_chunked=True)
        resp = conn.getresponse()
        got = resp.read()
    finally:
        conn.close()
    assert resp.status == 200, got[:200]
    assert got == body


def test_chunked_app_response_is_relayed_whole(a):
    body = os.urandom(200 * 1024)
    r = a.invoke("B", "chunked", "POST", body=body, headers={"Content-Type": "application/octet-stream"})
    assert r.status == 200, r
    assert r.body == body


def test_app_closing_without_answer_is_an_invoke_error(a):
    r = a.invoke("B", "hangup")
    assert_error(r, 500, "ERR_DIRECT_INVOKE", "failed to invoke, id: B")
    # The next call uses a fresh connection and works.
    assert a.invoke("B", "echo").status == 200


def test_concurrent_mixed_calls_get_their_own_responses(a):
    """Many calls at once over the sidecars' pooled keep-alive connections:
    every caller gets the answer to its own request."""
    errors = []

    def worker(n):
        conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=REQUEST_TIMEOUT)
        try:
            for i in range(8):
                verb = VERBS[(n + i) % 5]   # GET POST PUT DELETE PATCH
                tag = "w%d-%d" % (n, i)
                body = None if verb == "GET" else tag.encode() * (1 + i * 100)
                conn.request(verb, "/v1.0/invoke/B/method/echo/" + tag, body=body,
                             headers={"Content-Type": "text/plain"} if body else {})
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 200:
                    errors.append((tag, verb, resp.status, data[:200]))
                    continue
                got = json.loads(data)
                if got["path"] != "/echo/" + tag or got["method"] != verb or \
                        base64.b64decode(got["body_b64"]) != (body or b""):
                    errors.append((tag, verb, got["method"], got["path"], len(base64.b64decode(got["body_b64"]))))
        except Exception as e:
            errors.append(("worker %d" % n, repr(e)))
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(REQUEST_TIMEOUT * 4)
    assert not errors, errors


def test_large_body_round_trips(a):
    body = os.urandom(3 * 1024 * 1024)
    r = a.invoke("B", "raw", "POST", body=body, headers={"Content-Type": "application/octet-stream"})
    assert r.status == 200, r
    assert len(r.body) == len(body)
    assert r.body == body


# ---- other addressing forms ------------------------------------------------------

def test_dapr_app_id_header_form(a):
    r = a.client.get("/some/path/here?q=1&r=a%20b", headers={"dapr-app-id": "B"})
    assert r.status == 200, r
    got = r.json()
    assert got["app"] == "B"
    assert got["path"] == "/some/path/here?q=1&r=a%20b"
    h = {k.lower() for k, _ in got["headers"]}
    assert "dapr-app-id" not in h, got["headers"]


def test_dapr_app_id_header_wins_over_invoke_path(a):
    r = a.client.post("/v1.0/invoke/A/method/x", headers={"dapr-app-id": "B"})
    assert r.status == 200, r
    got = r.json()
    assert got["app"] == "B"
    assert got["path"] == "/v1.0/invoke/A/method/x"


def test_basic_auth_form(a):
    token = base64.b64encode(b"dapr-app-id:B").decode()
    r = a.client.get("/other/path?z=9", headers={"Authorization": "Basic " + token})
    assert r.status == 200, r
    got = r.json()
    assert got["app"] == "B"
    assert got["path"] == "/other/path?z=9"


def test_self_invocation_goes_to_own_app(a):
    r = a.invoke("A", "echo/self", "POST", body=b"me")
    assert r.status == 200, r
    got = r.json()
    assert got["app"] == "A"
    assert got["path"] == "/echo/self"
    h = echo_headers(r)
    assert h.get("dapr-caller-app-id") == ["A"], h
    assert h.get("dapr-callee-app-id") == ["A"], h


def test_app_id_with_two_dots_is_rejected(a):
    # "app.namespace" allows one dot only (reference §4.1).
    r = a.invoke("B.x.y", "echo")
    assert_error(r, 500, "ERR_DIRECT_INVOKE", "failed to invoke, id: B.x.y")


# ---- tracing --------------------------------------------------------------------

def test_traceparent_keeps_trace_id_with_new_span(a):
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    span_id = "00f067aa0ba902b7"
    sent = "00-%s-%s-01" % (trace_id, span_id)
    r = a.invoke("B", "echo", headers={"traceparent": sent})
    h = echo_headers(r)
    assert len(h.get("traceparent", [])) == 1, h
    m = TRACEPARENT.match(h["traceparent"][0])
    assert m, h["traceparent"]
    assert m.group(1) == trace_id
    assert m.group(2) != span_id, "span id at the app equals the caller's"
    assert m.group(3) == "01"
    resp_tp = r.header("traceparent")
    assert resp_tp, "no traceparent on the response: %r" % dict(r.headers)
    m2 = TRACEPARENT.match(resp_tp)
    assert m2 and m2.group(1) == trace_id, resp_tp


def test_traceparent_is_created_when_absent(a):
    r = a.invoke("B", "echo")
    h = echo_headers(r)
    assert TRACEPARENT.match(h.get("traceparent", [""])[0]), h
    assert TRACEPARENT.match(r.header("traceparent") or ""), dict(r.headers)


# ---- errors produced by the sidecar -------------------------------------------------

def test_unknown_app_id(a):
    r = a.invoke("nope", "echo")
    assert_error(r, 500, "ERR_DIRECT_INVOKE", "failed to invoke, id: nope")


def test_unknown_app_id_in_header(a):
    r = a.client.get("/x", headers={"dapr-app-id": "nope"})
    assert_error(r, 500, "ERR_DIRECT_INVOKE", "failed to invoke, id: nope")


@pytest.mark.parametrize("path", ["/no/such/route", "/v1.0/invoke/B", "/v1.0/invoke/B/methods/x"])
def test_no_app_id_is_404(a, path):
    r = a.client.get(path)
    assert_error(r, 404, "ERR_DIRECT_INVOKE",
                 "failed getting app id either from the URL path or the header dapr-app-id")
