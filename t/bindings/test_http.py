"""bindings.http (reference §5.3) against a local Python HTTP(S) server:
every verb, path and headers from the request metadata, status and header
passthrough, errorIfNot2XX, body limits, redirects, timeouts (with the
event loop staying responsive), TLS with a private CA and mutual TLS."""

import json
import os
import shutil
import subprocess
import threading
import time

import pytest

from conftest import World, assert_error, component, free_port


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True)


def make_certs(d):
    """A CA, a server certificate for 127.0.0.1 and a client certificate."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=bindings test CA",
            cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
                      ("client", "extendedKeyUsage=clientAuth\n")):
        openssl("req", *ec, "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name, cwd=d)
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write(ext)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext", cwd=d)
    return {n: os.path.join(d, n) for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    w = World(tmp_path_factory.mktemp("http"))
    plain = w.target()
    tls = None
    certs = None
    if shutil.which("openssl"):
        certs = make_certs(w.tmpdir)
        tls = w.target("tls", ["--cert", certs["server.pem"], "--key", certs["server.key"]])
        mtls = w.target("mtls", ["--cert", certs["server.pem"], "--key", certs["server.key"],
                                 "--client-ca", certs["ca.pem"]])
    base = "http://127.0.0.1:%d" % plain.port
    comps = [
        component("web", "bindings.http", {"url": base + "/base/", "securityToken": "s3cret-token",
                                           "securityTokenHeader": "x-api-key"}),
        component("lenient", "bindings.http", {"url": base, "errorIfNot2XX": "false"}),
        component("small", "bindings.http", {"url": base, "maxResponseBodySize": "10"}),
        component("slow", "bindings.http", {"url": base, "responseTimeout": "300ms"}),
        component("down", "bindings.http", {"url": "http://127.0.0.1:%d/x" % free_port()}),
    ]
    if tls:
        with open(certs["ca.pem"]) as f:
            ca_text = f.read()
        tls_url = "https://127.0.0.1:%d" % tls.port
        mtls_url = "https://127.0.0.1:%d" % mtls.port
        comps += [
            component("tls-file", "bindings.http", {"url": tls_url, "MTLSRootCA": certs["ca.pem"]}),
            component("tls-pem", "bindings.http", {"url": tls_url, "MTLSRootCA": ca_text,
                                                   "MTLSRenegotiation": "RenegotiateNever"}),
            component("tls-untrusted", "bindings.http", {"url": tls_url}),
            component("mtls", "bindings.http", {"url": mtls_url, "MTLSRootCA": certs["ca.pem"],
                                                "MTLSClientCert": certs["client.pem"],
                                                "MTLSClientKey": certs["client.key"]}),
            component("mtls-nocert", "bindings.http", {"url": mtls_url, "MTLSRootCA": certs["ca.pem"]}),
        ]
    d = w.daprd(comps)
    d.has_tls = tls is not None
    yield d
    w.stop_all()


def echo(r):
    assert r.status == 200, r
    assert r.content_type == "application/json"
    return r.json()


def hdrs(e):
    return {k.lower(): v for k, v in e["headers"]}


@pytest.mark.parametrize("op,method", [("get", "GET"), ("post", "POST"), ("create", "POST"), ("put", "PUT"),
                                       ("patch", "PATCH"), ("delete", "DELETE"), ("options", "OPTIONS"),
                                       ("trace", "TRACE")])
def test_verbs(env, op, method):
    e = echo(env.invoke("web", {"operation": op, "data": {"n": 1}}))
    assert e["method"] == method
    assert e["path"] == "/base/"
    if method in ("POST", "PUT", "PATCH"):
        assert e["body"] == '{"n":1}'
        assert hdrs(e)["content-type"] == "application/json; charset=utf-8"
    else:
        assert e["body"] == ""
        assert "content-type" not in hdrs(e)
    assert hdrs(e)["accept"] == "application/json; charset=utf-8"


def test_head(env):
    r = env.invoke("web", {"operation": "head"})
    assert r.status == 200 and r.body == b"", r
    assert r.header("metadata.statusCode") == "200"
    assert r.header("metadata.X-Target") == "yes"


def test_path_headers_and_token(env):
    r = env.invoke("web", {"operation": "post", "data": "raw",
                           "metadata": {"path": "/items/7?x=1", "X-Custom": "v1", "lowercase": "not a header",
                                        "Content-Type": "text/plain", "Accept": "text/csv"}},
                   headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
    e = echo(r)
    assert e["path"] == "/base/items/7" and e["query"] == "x=1"
    h = hdrs(e)
    assert h["x-custom"] == "v1"
    assert "lowercase" not in h
    assert h["content-type"] == "text/plain"
    assert h["accept"] == "text/csv"
    assert h["x-api-key"] == "s3cret-token"
    assert e["body"] == '"raw"'   # data arrives JSON-encoded, as Dapr hands it over
    # the call's trace continues at the target
    assert h["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
    assert h["traceparent"] != "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_status_and_header_passthrough(env):
    r = env.invoke("web", {"operation": "get", "metadata": {"path": "/status/404"}})
    assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING",
                 "error invoking output binding web: received status code 404")
    # the response metadata reaches the app even on failure
    assert r.header("metadata.statusCode") == "404"
    assert r.header("metadata.status") == "404 Not Found"
    assert r.header("metadata.X-Status") == "404"
    # per request, errorIfNot2XX=false turns it into a result
    r = env.invoke("web", {"operation": "get", "metadata": {"path": "/status/503", "errorIfNot2XX": "false"}})
    assert r.status == 200 and r.json() == {"status": 503}, r
    assert r.header("metadata.statusCode") == "503"
    # and so does the component's errorIfNot2XX: false
    r = env.invoke("lenient", {"operation": "post", "metadata": {"path": "/status/418"}})
    assert r.status == 200 and r.json() == {"status": 418}, r
    assert r.header("metadata.status").startswith("418 "), r.header("metadata.status")
    # 201 is a success like 200
    r = env.invoke("web", {"operation": "post", "metadata": {"path": "/status/201"}})
    assert r.status == 200 and r.header("metadata.statusCode") == "201", r
    # repeated headers are joined, names canonical
    r = env.invoke("web", {"operation": "get", "metadata": {"path": "/headers"}})
    assert r.status == 200
    assert r.header("metadata.Set-Cookie") == "a=1, b=2"
    assert "metadata.X-Lower" in [k for k in r.headers.keys()]


def test_body_limit_and_gzip(env):
    r = env.invoke("small", {"operation": "get", "metadata": {"path": "/big/100"}})
    assert r.status == 200 and r.body == b"x" * 10, r
    r = env.invoke("web", {"operation": "get", "metadata": {"path": "/big/300000"}})
    assert r.status == 200 and len(r.body) == 300000
    r = env.invoke("web", {"operation": "get", "metadata": {"path": "/gzip"}})
    e = echo(r)
    assert "gzip" in hdrs(e)["accept-encoding"]
    assert r.header("metadata.Content-Encoding") is None   # decoded, as Go's transport does


def test_redirects(env):
    # 302 after a POST: a GET without the body, as Go's client
    e = echo(env.invoke("web", {"operation": "post", "data": "d",
                                "metadata": {"path": "/redirect/302?to=/landed"}}))
    assert (e["method"], e["path"], e["body"]) == ("GET", "/landed", "")
    # 307 keeps the method and the body
    e = echo(env.invoke("web", {"operation": "put", "data": "d", "metadata": {"path": "/redirect/307?to=/kept"}}))
    assert (e["method"], e["path"], e["body"]) == ("PUT", "/kept", '"d"')
    # a redirect loop stops after 10
    r = env.invoke("web", {"operation": "get", "metadata": {"path": "/loop"}})
    assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING", "stopped after 10 redirects")


def test_unreachable(env):
    r = env.invoke("down", {"operation": "post"})
    body = assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING", 'error invoking output binding down: Post "http://127.0.0.1:')
    assert r.header("metadata.statusCode") is None, body


def test_timeout_does_not_block_the_loop(env):
    results = {}

    def slow_call():
        t0 = time.monotonic()
        results["r"] = env.invoke("slow", {"operation": "get", "metadata": {"path": "/sleep/3000"}})
        results["t"] = time.monotonic() - t0

    calls = [threading.Thread(target=slow_call) for _ in range(1)]
    for c in calls:
        c.start()
    # while the binding waits, daprd answers other calls at once
    t0 = time.monotonic()
    for _ in range(5):
        assert env.client.get("/v1.0/healthz").status == 204
    assert time.monotonic() - t0 < 2.0
    for c in calls:
        c.join()
    assert_error(results["r"], 500, "ERR_INVOKE_OUTPUT_BINDING", "timed out")
    assert results["t"] < 2.5, results


def test_many_concurrent_requests(env):
    out = []

    def call(i):
        out.append(env.invoke("web", {"operation": "post", "data": {"i": i}, "metadata": {"path": "/c/%d" % i}}))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(json.loads(echo(r)["body"])["i"] for r in out) == list(range(40))


def test_tls(env):
    if not env.has_tls:
        pytest.skip("openssl not installed: no certificates for the TLS tests")
    e = echo(env.invoke("tls-file", {"operation": "get", "metadata": {"path": "/secure"}}))
    assert e["path"] == "/secure"
    echo(env.invoke("tls-pem", {"operation": "post", "data": 1}))
    # the private CA is not trusted by default
    r = env.invoke("tls-untrusted", {"operation": "get"})
    body = assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING")
    assert "certificate" in body["message"].lower(), body


def test_mutual_tls(env):
    if not env.has_tls:
        pytest.skip("openssl not installed: no certificates for the TLS tests")
    e = echo(env.invoke("mtls", {"operation": "get", "metadata": {"path": "/m"}}))
    assert e["path"] == "/m"
    r = env.invoke("mtls-nocert", {"operation": "get"})
    assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING")


def test_bad_metadata_refused_at_init(tmp_path):
    w = World(tmp_path)
    try:
        for meta, why in (({"url": "http://x", "MTLSRenegotiation": "Sometimes"}, "invalid renegotiation value"),
                          ({"url": "http://x", "MTLSRootCA": "/nonexistent/ca.pem"}, "neither a valid file path"),
                          ({"url": "http://x", "maxResponseBodySize": "lots"}, "maxResponseBodySize"),
                          ({}, "'url' is required")):
            d = w.daprd([component("bad", "bindings.http", meta)], start=False, name="d%d" % len(w.procs))
            d._popen(d.command(0), dict(os.environ, HOME=w.path("home")))
            assert d.proc.wait(timeout=20) != 0
            assert why in d.log_text(), d.logs()
            d.stop()
    finally:
        w.stop_all()
