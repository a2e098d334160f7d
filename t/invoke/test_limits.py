"""Limits and tokens on invocation (reference §1.4, §1.5, §11.1): request
body limit, --app-max-concurrency, DAPR_API_TOKEN and APP_API_TOKEN."""

import socket
import threading
import time

import pytest

from conftest import REQUEST_TIMEOUT, echo_headers, wait_for, wait_invocable

SLOW_MS = 300
PARALLEL = 4


@pytest.fixture(scope="module")
def a(world):
    return world.pair("A")


@pytest.fixture(scope="module")
def limited(world):
    return world.pair("limited", args=["--dapr-http-max-request-size", "1"])


@pytest.fixture(scope="module")
def serial(world, a):
    d = world.pair("serial", args=["--app-max-concurrency", "1"])
    wait_invocable(a, "serial")
    return d


@pytest.fixture(scope="module")
def guarded(world):
    """Sidecar T requires the token "secret" from its callers; its app gets
    no token."""
    return world.pair("T", env={"DAPR_API_TOKEN": "secret"})


@pytest.fixture(scope="module")
def apptoken(world, a):
    """Sidecar P sends "apptok" to its app and requires "ptok" itself."""
    d = world.pair("P", env={"APP_API_TOKEN": "apptok", "DAPR_API_TOKEN": "ptok"})
    wait_invocable(a, "P")
    return d


# ---- body size -----------------------------------------------------------------

def raw_status(port, head):
    """Send only a request head and return the status code of the answer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT)
    try:
        s.sendall(head.encode())
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    assert data.startswith(b"HTTP/1.1 "), data[:200]
    return int(data.split(b" ", 2)[1])


def test_body_over_the_limit_is_413(limited):
    size = 2 * 1024 * 1024
    head = ("POST /v1.0/invoke/limited/method/raw HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % size)
    assert raw_status(limited.port, head) == 413


def test_body_over_the_limit_with_expect_continue_is_413(limited):
    size = 2 * 1024 * 1024
    head = ("PUT /v1.0/invoke/limited/method/raw HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % size)
    assert raw_status(limited.port, head) == 413


def test_body_under_the_limit_passes(limited):
    body = b"z" * (512 * 1024)
    r = limited.invoke("limited", "raw", "POST", body=body, headers={"Content-Type": "application/octet-stream"})
    assert r.status == 200, r
    assert r.body == body


# ---- app concurrency ---------------------------------------------------------------

def test_app_max_concurrency_serialises_calls(a, serial):
    r = serial.app.client.get("/reset-stats")
    assert r.status == 204, r
    results = [None] * PARALLEL

    def call(i):
        try:
            results[i] = a.invoke("serial", "slow/%d" % SLOW_MS, "POST", body=b"%d" % i)
        except Exception as e:  # reported below with the others
            results[i] = e

    threads = [threading.Thread(target=call, args=(i,)) for i in range(PARALLEL)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(REQUEST_TIMEOUT * 2)
    elapsed = time.monotonic() - t0
    for r in results:
        assert not isinstance(r, Exception) and r is not None and r.status == 200, results
    stats = serial.app.stats()
    assert stats["requests"] == PARALLEL, stats
    assert stats["max_concurrent"] == 1, stats
    # Serialised: at least PARALLEL sleeps back to back (small clock slack).
    assert elapsed >= PARALLEL * SLOW_MS / 1000.0 * 0.95, elapsed


def test_app_max_concurrency_in_metadata(serial):
    r = serial.client.get("/v1.0/metadata")
    assert r.status == 200, r
    acp = r.json().get("appConnectionProperties", {})
    assert acp.get("port") == serial.app.port, acp
    assert acp.get("protocol") == "http", acp
    assert acp.get("maxConcurrency") == 1, acp


# ---- tokens -----------------------------------------------------------------------

def test_api_token_required_by_the_caller_sidecar(guarded):
    for headers in ({}, {"dapr-api-token": "wrong"}):
        r = guarded.client.get("/v1.0/invoke/T/method/echo", headers=headers)
        assert r.status == 401, r
        assert r.content_type == "text/plain", r.headers
        assert r.body == b"invalid api token\n"
    # The app never saw those calls.
    assert guarded.app.stats()["requests"] == 0


def test_api_token_exempts_healthz(guarded):
    assert guarded.client.get("/v1.0/healthz").status == 204
    assert guarded.client.get("/v1.0/healthz/outbound").status == 204


def test_api_token_is_not_forwarded_to_own_app(guarded):
    r = guarded.client.get("/v1.0/invoke/T/method/echo", headers={"dapr-api-token": "secret"})
    h = echo_headers(r)
    assert "dapr-api-token" not in h, h


def wait_invocable_with_token(caller, target):
    return wait_for(lambda: caller.client.get("/v1.0/invoke/%s/method/ping" % target,
                                              headers={"dapr-api-token": "secret"}).status == 200,
                    10, "%s cannot invoke %s" % (caller.app_id, target))


def test_api_token_is_not_forwarded_to_another_app(guarded, world):
    b = world.pair("plainB")
    wait_invocable_with_token(guarded, "plainB")
    r = guarded.client.get("/v1.0/invoke/plainB/method/echo", headers={"dapr-api-token": "secret"})
    h = echo_headers(r)
    assert r.json()["app"] == "plainB"
    assert "dapr-api-token" not in h, h
    assert b.alive()


def test_app_api_token_reaches_the_app(a, apptoken):
    # Through another sidecar: P's sidecar adds APP_API_TOKEN for its app.
    # P's own DAPR_API_TOKEN guards P's API port, not sidecar-to-sidecar calls.
    r = a.invoke("P", "echo")
    h = echo_headers(r)
    assert h.get("dapr-api-token") == ["apptok"], h


def test_app_api_token_on_self_invocation(apptoken):
    r = apptoken.client.get("/v1.0/invoke/P/method/echo", headers={"dapr-api-token": "ptok"})
    h = echo_headers(r)
    # The caller's token is consumed; the app gets APP_API_TOKEN only.
    assert h.get("dapr-api-token") == ["apptok"], h


def test_app_api_token_replaces_a_client_supplied_one(a, apptoken):
    r = a.invoke("P", "echo", headers={"dapr-api-token": "forged"})
    h = echo_headers(r)
    assert h.get("dapr-api-token") == ["apptok"], h
