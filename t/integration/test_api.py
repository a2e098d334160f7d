"""Routing, health, metadata and request limits (reference §1, §8.1, §8.2,
§13): one shared daprd for the read-only checks, separate ones where a
flag or environment variable changes behaviour."""

import http.client

import pytest

from conftest import APP_ID, assert_error, memory_store, sqlite_store

NO_APP_ID = "failed getting app id either from the URL path or the header dapr-app-id"


@pytest.fixture(scope="module")
def daprd(module_factory):
    res = module_factory.resources({
        "memory.yaml": memory_store("statestore"),
        "sqlite.yaml": sqlite_store("sqlitestore", module_factory.path("api.db")),
    })
    return module_factory.start([res], name="api")


@pytest.fixture
def client(daprd):
    return daprd.client


# ---- health ---------------------------------------------------------------------

def test_healthz(client):
    r = client.get("/v1.0/healthz")
    assert r.status == 204
    assert r.body == b""


def test_healthz_outbound(client):
    r = client.get("/v1.0/healthz/outbound")
    assert r.status == 204
    assert r.body == b""


def test_healthz_trailing_slash(client):
    assert client.get("/v1.0/healthz/").status == 204


def test_healthz_appid(client):
    assert client.get("/v1.0/healthz?appid=%s" % APP_ID).status == 204
    r = client.get("/v1.0/healthz?appid=someoneelse")
    assert_error(r, 500, "ERR_HEALTH_APPID_NOT_MATCH")


# ---- routing fallback -------------------------------------------------------------

@pytest.mark.parametrize("method,path", [
    ("GET", "/v1.0/nosuchapi"),
    ("GET", "/"),
    ("GET", "/v2.0/state/statestore/k"),
    ("POST", "/v1.0/healthz"),          # wrong method
    ("GET", "/v1.0/state/statestore"),  # save route, wrong method
    ("DELETE", "/v1.0/state/statestore"),
    ("PATCH", "/v1.0/state/statestore/k"),
    ("GET", "/v1.0/state/statestore/bulk/extra/segments"),
    ("DELETE", "/v1.0/metadata"),
])
def test_unknown_route_goes_to_invocation(client, method, path):
    r = client.request(method, path)
    assert_error(r, 404, "ERR_DIRECT_INVOKE", NO_APP_ID)


def test_repeated_slashes_on_metadata(client):
    r = client.get("//v1.0//metadata")
    assert r.status == 200, r
    assert r.json()["id"] == APP_ID


# ---- metadata ----------------------------------------------------------------------

def test_metadata_shape(client):
    r = client.get("/v1.0/metadata")
    assert r.status == 200, r
    assert r.content_type == "application/json"
    m = r.json()
    assert m["id"] == APP_ID
    assert isinstance(m["runtimeVersion"], str) and m["runtimeVersion"]
    comps = {c["name"]: c for c in m["components"]}
    assert set(comps) == {"statestore", "sqlitestore"}
    mem = comps["statestore"]
    assert mem["type"] == "state.in-memory"
    assert mem["version"] == "v1"
    for cap in ("ETAG", "TRANSACTIONAL", "TTL", "QUERY_API", "ACTOR"):
        assert cap in mem["capabilities"], mem
    sq = comps["sqlitestore"]
    assert sq["type"] == "state.sqlite"
    assert sq["version"] == "v1"
    for cap in ("ETAG", "TRANSACTIONAL", "TTL", "ACTOR"):
        assert cap in sq["capabilities"], sq
    for c in comps.values():
        assert len(set(c["capabilities"])) == len(c["capabilities"]), c
    # Secrets and connection strings never appear in metadata.
    assert "connectionString" not in r.text
    assert "api.db" not in r.text


def test_metadata_extended(client):
    r = client.put("/v1.0/metadata/myattr", body=b"some value")
    assert r.status == 204, r
    r = client.put("/v1.0/metadata/other", body=b"x")
    assert r.status == 204, r
    m = client.get("/v1.0/metadata").json()
    assert m["extended"]["myattr"] == "some value"
    assert m["extended"]["other"] == "x"
    # Setting again replaces.
    assert client.put("/v1.0/metadata/myattr", body=b"v2").status == 204
    assert client.get("/v1.0/metadata").json()["extended"]["myattr"] == "v2"


def test_metadata_extended_with_post(client):
    # Only PUT sets metadata; POST falls through to invocation (§1.2).
    r = client.post("/v1.0/metadata/viapost", body=b"x")
    assert_error(r, 404, "ERR_DIRECT_INVOKE")


# ---- API token ---------------------------------------------------------------------

def test_api_token(daprd_factory):
    res = daprd_factory.resources({"memory.yaml": memory_store("statestore")})
    d = daprd_factory.start([res], env={"DAPR_API_TOKEN": "s3cret"}, name="token")
    c = d.client
    for method, path in (("GET", "/v1.0/state/statestore/k"), ("GET", "/v1.0/metadata"),
                         ("POST", "/v1.0/shutdown"), ("GET", "/v1.0/nosuchroute")):
        r = c.request(method, path)
        assert r.status == 401, (method, path, r)
        assert r.content_type == "text/plain", r.headers.get("Content-Type")
        assert r.text.strip() == "invalid api token"
    r = c.get("/v1.0/metadata", headers={"dapr-api-token": "wrong"})
    assert r.status == 401
    # Health endpoints are exempt.
    assert c.get("/v1.0/healthz").status == 204
    assert c.get("/v1.0/healthz/outbound").status == 204
    ok = {"dapr-api-token": "s3cret"}
    r = c.post("/v1.0/state/statestore", json=[{"key": "k", "value": 1}], headers=ok)
    assert r.status == 204, r
    r = c.get("/v1.0/state/statestore/k", headers=ok)
    assert r.status == 200 and r.json() == 1
    assert c.get("/v1.0/metadata", headers=ok).status == 200
    d.assert_healthy()


# ---- body size -------------------------------------------------------------------

def test_request_body_too_large(daprd_factory):
    res = daprd_factory.resources({"memory.yaml": memory_store("statestore")})
    d = daprd_factory.start([res], args=["--dapr-http-max-request-size", "1"], name="maxbody")
    c = d.client
    small = [{"key": "small", "value": "x" * (512 * 1024)}]
    r = c.post("/v1.0/state/statestore", json=small)
    assert r.status == 204, r
    big = [{"key": "big", "value": "x" * (2 * 1024 * 1024)}]
    try:
        r = c.post("/v1.0/state/statestore", json=big)
        assert 400 <= r.status < 500, r
    except (OSError, http.client.HTTPException):
        pass   # the server may close the connection while the body is still arriving
    d.assert_healthy()
    assert c.get("/v1.0/state/statestore/big").status == 204
    r = c.get("/v1.0/state/statestore/small")
    assert r.status == 200 and len(r.json()) == 512 * 1024


def test_many_requests_on_one_connection(client):
    # Keep-alive: several requests over one HTTP/1.1 connection.
    conn = http.client.HTTPConnection(client.host, client.port, timeout=10)
    try:
        for i in range(20):
            conn.request("POST", "/v1.0/state/statestore", body=b'[{"key":"ka%d","value":%d}]' % (i, i))
            r = conn.getresponse()
            r.read()
            assert r.status == 204
            conn.request("GET", "/v1.0/state/statestore/ka%d" % i)
            r = conn.getresponse()
            assert r.status == 200 and r.read().strip() == str(i).encode()
    finally:
        conn.close()
