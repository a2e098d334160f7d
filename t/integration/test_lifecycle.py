"""Process life cycle (reference §8.3, §10.3, §2.1): shutdown by API and by
SIGTERM, persistence across restarts, JSON logs, a daprd without stores."""

import json
import signal
import time

import pytest

from conftest import APP_ID, assert_error, error_reason, memory_store, sqlite_store

EXIT_TIMEOUT = 8   # seconds; graceful shutdown is bounded by 5 s by default


def test_shutdown_endpoint(daprd_factory):
    res = daprd_factory.resources({"memory.yaml": memory_store()})
    d = daprd_factory.start([res], name="shutdown")
    r = d.client.post("/v1.0/shutdown")
    assert r.status == 204, r
    assert r.body == b""
    rc = d.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, "daprd exit code %r after POST /v1.0/shutdown\n%s" % (rc, d.logs())


def test_shutdown_endpoint_put(daprd_factory):
    # Only POST is a route; PUT falls through to invocation.
    res = daprd_factory.resources({"memory.yaml": memory_store()})
    d = daprd_factory.start([res], name="shutdown-put")
    r = d.client.put("/v1.0/shutdown")
    assert_error(r, 404, "ERR_DIRECT_INVOKE")
    d.assert_healthy()


def test_sigterm_exits_zero(daprd_factory):
    res = daprd_factory.resources({"memory.yaml": memory_store()})
    d = daprd_factory.start([res], name="sigterm")
    d.signal(signal.SIGTERM)
    rc = d.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, "daprd exit code %r after SIGTERM\n%s" % (rc, d.logs())


def test_sigint_exits_zero(daprd_factory):
    res = daprd_factory.resources({"memory.yaml": memory_store()})
    d = daprd_factory.start([res], name="sigint")
    d.signal(signal.SIGINT)
    rc = d.wait_exit(EXIT_TIMEOUT)
    assert rc == 0, "daprd exit code %r after SIGINT\n%s" % (rc, d.logs())


def test_sqlite_survives_restart(daprd_factory):
    db = daprd_factory.path("persist.db")
    res = daprd_factory.resources({"sqlite.yaml": sqlite_store("sqlitestore", db)})
    d1 = daprd_factory.start([res], name="persist1")
    c = d1.client
    r = c.post("/v1.0/state/sqlitestore", json=[
        {"key": "kept", "value": {"n": 1}},
        {"key": "gone", "value": 2},
        {"key": "ttl", "value": 3, "metadata": {"ttlInSeconds": "3600"}},
    ])
    assert r.status == 204, r
    assert c.delete("/v1.0/state/sqlitestore/gone").status == 204
    etag = c.get("/v1.0/state/sqlitestore/kept").header("ETag")
    exp = c.get("/v1.0/state/sqlitestore/ttl").header("metadata.ttlExpireTime")
    assert d1.stop() == 0

    d2 = daprd_factory.start([res], name="persist2")
    c = d2.client
    r = c.get("/v1.0/state/sqlitestore/kept")
    assert r.status == 200, r
    assert r.json() == {"n": 1}
    assert r.header("ETag") == etag
    assert c.get("/v1.0/state/sqlitestore/gone").status == 204
    r = c.get("/v1.0/state/sqlitestore/ttl")
    assert r.status == 200 and r.header("metadata.ttlExpireTime") == exp, r
    # The old etag still guards writes after the restart.
    r = c.post("/v1.0/state/sqlitestore", json=[{"key": "kept", "value": 2, "etag": etag}])
    assert r.status == 204, r


def test_memory_store_is_empty_after_restart(daprd_factory):
    res = daprd_factory.resources({"memory.yaml": memory_store()})
    d1 = daprd_factory.start([res], name="mem1")
    assert d1.client.post("/v1.0/state/statestore", json=[{"key": "k", "value": 1}]).status == 204
    d1.stop()
    d2 = daprd_factory.start([res], name="mem2")
    assert d2.client.get("/v1.0/state/statestore/k").status == 204


def test_log_as_json(daprd_factory):
    res = daprd_factory.resources({"memory.yaml": memory_store()})
    d = daprd_factory.start([res], args=["--log-as-json"], name="jsonlog")
    # Generate a few request-time log lines too.
    d.client.get("/v1.0/state/nosuch/k")
    d.client.get("/v1.0/nosuchroute")
    assert d.stop() == 0
    lines = [l for l in d.log_text().splitlines() if l.strip()]
    assert lines, "daprd --log-as-json wrote nothing"
    levels = set()
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            pytest.fail("log line is not JSON: %r" % line)
        assert isinstance(obj, dict), line
        for k in ("time", "level", "type", "msg", "scope", "app_id"):
            assert k in obj, "key %r missing in %r" % (k, line)
        assert obj["type"] == "log", line
        assert obj["app_id"] == APP_ID, line
        assert obj["level"] in ("debug", "info", "warning", "warn", "error", "fatal"), line
        assert obj["time"][:4].isdigit() and "T" in obj["time"], line
        levels.add(obj["level"])
    assert "debug" in levels   # the fixture passes --log-level debug
    assert "info" in levels


def test_no_state_store_configured(daprd_factory):
    empty = daprd_factory.resources({})
    d = daprd_factory.start([empty], name="nostores")
    c = d.client
    for method, path, body in (
            ("GET", "/v1.0/state/statestore/k", None),
            ("POST", "/v1.0/state/statestore", [{"key": "k", "value": 1}]),
            ("DELETE", "/v1.0/state/statestore/k", None),
            ("POST", "/v1.0/state/statestore/bulk", {"keys": ["k"]}),
            ("POST", "/v1.0/state/statestore/transaction", {"operations": []})):
        r = c.request(method, path, json_body=body)
        b = assert_error(r, 500, "ERR_STATE_STORE_NOT_CONFIGURED", "state store statestore is not configured")
        if "details" in b:
            assert error_reason(b) == "DAPR_STATE_NOT_CONFIGURED"
    r = c.post("/v1.0-alpha1/state/statestore/query", json={"filter": {"EQ": {"a": 1}}})
    assert_error(r, 500, "ERR_STATE_STORE_NOT_CONFIGURED")
    m = c.get("/v1.0/metadata").json()
    assert m["id"] == APP_ID
    assert not m.get("components")
    d.assert_healthy()


def test_daprd_not_found_fails_fast(tmp_path, monkeypatch):
    """The fixture's own behaviour: a missing binary is a clear failure."""
    import conftest
    monkeypatch.setenv("DAPRD", str(tmp_path / "no-such-daprd"))
    d = conftest.Daprd(tmp_path / "x")
    t0 = time.monotonic()
    with pytest.raises(pytest.fail.Exception) as e:
        d.start()
    assert "not an executable file" in str(e.value)
    assert time.monotonic() - t0 < 2


def test_daprd_exiting_early_fails_fast(tmp_path, monkeypatch):
    """A binary that exits at once is reported with its exit code and log."""
    import conftest
    fake = tmp_path / "fake-daprd"
    fake.write_text("#!/bin/sh\necho 'placeholder daprd' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("DAPRD", str(fake))
    d = conftest.Daprd(tmp_path / "x")
    t0 = time.monotonic()
    with pytest.raises(pytest.fail.Exception) as e:
        d.start()
    assert "exited with code 3" in str(e.value)
    assert "placeholder daprd" in str(e.value)
    assert time.monotonic() - t0 < 5
