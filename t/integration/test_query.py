"""State query API, alpha (reference §2.8): filters, sort and paging on the
in-memory store; a store without QUERY_API answers 500."""

import uuid

import pytest

from conftest import assert_error, error_reason, memory_store, sqlite_store

QUERY = "/v1.0-alpha1/state/%s/query"

PEOPLE = [
    # key suffix, state, org, id
    ("p1", "CA", "Dev", 1),
    ("p2", "CA", "Ops", 2),
    ("p3", "WA", "Dev", 3),
    ("p4", "WA", "Finance", 4),
    ("p5", "CA", "Finance", 5),
    ("p6", "NY", "Dev", 6),
]


@pytest.fixture(scope="module")
def env(module_factory):
    res = module_factory.resources({
        "memory.yaml": memory_store("statestore"),
        "sqlite.yaml": sqlite_store("sqlitestore", module_factory.path("q.db")),
    })
    d = module_factory.start([res], name="query")
    # A run id marks this module's rows, so filters never see other data.
    run = uuid.uuid4().hex[:8]
    items = [{"key": "%s-%s" % (run, k),
              "value": {"run": run, "state": st, "person": {"org": org, "id": i}}}
             for k, st, org, i in PEOPLE]
    items.append({"key": run + "-other", "value": "not an object"})
    r = d.client.post("/v1.0/state/statestore", json=items)
    assert r.status == 204, r
    return d, run


@pytest.fixture
def client(env):
    return env[0].client


def query(client, body, store="statestore"):
    return client.post(QUERY % store, json=body)


def ids(resp):
    assert resp.status == 200, resp
    assert resp.content_type == "application/json"
    return [r["data"]["person"]["id"] for r in resp.json()["results"]]


def run_filter(run, f):
    return {"AND": [{"EQ": {"run": run}}, f]}


def test_eq(env, client):
    _, run = env
    r = query(client, {"filter": run_filter(run, {"EQ": {"state": "WA"}}),
                       "sort": [{"key": "person.id"}]})
    assert ids(r) == [3, 4]
    res = r.json()["results"]
    # Keys come back without the app-id prefix; etags are included.
    assert [x["key"] for x in res] == ["%s-p3" % run, "%s-p4" % run]
    assert all(x.get("etag") for x in res)
    assert all("error" not in x for x in res)


def test_in_on_nested_path(env, client):
    _, run = env
    r = query(client, {"filter": run_filter(run, {"IN": {"person.org": ["Dev", "Ops"]}}),
                       "sort": [{"key": "person.id", "order": "ASC"}]})
    assert ids(r) == [1, 2, 3, 6]


def test_and_or(env, client):
    _, run = env
    f = {"AND": [{"EQ": {"run": run}},
                 {"OR": [{"EQ": {"state": "NY"}},
                         {"AND": [{"EQ": {"state": "CA"}}, {"EQ": {"person.org": "Finance"}}]}]}]}
    r = query(client, {"filter": f, "sort": [{"key": "person.id"}]})
    assert ids(r) == [5, 6]


def test_sort_desc(env, client):
    _, run = env
    r = query(client, {"filter": run_filter(run, {"EQ": {"state": "CA"}}),
                       "sort": [{"key": "person.id", "order": "DESC"}]})
    assert ids(r) == [5, 2, 1]


def test_sort_two_keys(env, client):
    _, run = env
    r = query(client, {"filter": {"EQ": {"run": run}},
                       "sort": [{"key": "state", "order": "ASC"}, {"key": "person.id", "order": "DESC"}]})
    assert ids(r) == [5, 2, 1, 6, 4, 3]


def test_paging(env, client):
    _, run = env
    base = {"filter": {"EQ": {"run": run}}, "sort": [{"key": "person.id"}]}
    seen, token = [], None
    for _ in range(10):
        body = dict(base, page={"limit": 4})
        if token:
            body["page"]["token"] = token
        r = query(client, body)
        if r.status == 204:
            break
        page = ids(r)
        assert 0 < len(page) <= 4
        seen += page
        token = r.json().get("token")
        if not token:
            break
    assert seen == [1, 2, 3, 4, 5, 6]
    # The first page is exactly the limit.
    assert ids(query(client, dict(base, page={"limit": 4}))) == [1, 2, 3, 4]


def test_no_results_is_204(env, client):
    _, run = env
    r = query(client, {"filter": run_filter(run, {"EQ": {"state": "TX"}})})
    assert r.status == 204, r
    assert r.body == b""


def test_put_method(env, client):
    _, run = env
    r = client.put(QUERY % "statestore", json={"filter": run_filter(run, {"EQ": {"person.id": 4}})})
    assert ids(r) == [4]


def test_malformed_query_body(client):
    r = client.post(QUERY % "statestore", body=b"{nope")
    assert r.status in (400, 500), r
    assert r.json()["errorCode"] in ("ERR_MALFORMED_REQUEST", "ERR_STATE_QUERY"), r


def test_unknown_operator(client):
    r = query(client, {"filter": {"LIKE": {"state": "C%"}}})
    b = assert_error(r, 500, "ERR_STATE_QUERY")
    if "details" in b:
        assert error_reason(b) == "DAPR_STATE_QUERY_FAILED"


def test_sqlite_does_not_support_query(client):
    r = query(client, {"filter": {"EQ": {"state": "CA"}}}, store="sqlitestore")
    b = assert_error(r, 500, "ERR_STATE_STORE_NOT_SUPPORTED", "state store does not support querying")
    if "details" in b:
        assert error_reason(b) == "DAPR_STATE_QUERYING_NOT_SUPPORTED"


def test_query_capability_matches_metadata(client):
    comps = {c["name"]: c for c in client.get("/v1.0/metadata").json()["components"]}
    assert "QUERY_API" in comps["statestore"]["capabilities"]
    assert "QUERY_API" not in comps["sqlitestore"].get("capabilities", [])
