"""State API (reference §2, §12, §13): get, save, delete, bulk get,
transactions, TTL, key handling and input validation, against both the
in-memory and the SQLite store.  One daprd serves the whole module; each
test uses its own keys."""

import http.client
import re
import time
import urllib.parse
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from conftest import assert_error, error_reason, memory_store, sqlite_store

STORES = ["statestore", "sqlitestore"]


@pytest.fixture(scope="module")
def daprd(module_factory):
    res = module_factory.resources({
        "memory.yaml": memory_store("statestore"),
        "sqlite.yaml": sqlite_store("sqlitestore", module_factory.path("state.db")),
    })
    return module_factory.start([res], name="state")


@pytest.fixture
def client(daprd):
    return daprd.client


@pytest.fixture(params=STORES)
def store(request):
    return request.param


@pytest.fixture
def key():
    """A key no other test uses."""
    return "k-" + uuid.uuid4().hex[:12]


def enc(key):
    return urllib.parse.quote(key, safe="")


def save(client, store, items, **kw):
    return client.post("/v1.0/state/%s" % store, json=items, **kw)


def get(client, store, key, **kw):
    return client.get("/v1.0/state/%s/%s" % (store, enc(key)), **kw)


def assert_absent(client, store, key):
    r = get(client, store, key)
    assert r.status == 204, r
    assert r.body == b"", r


def assert_value(client, store, key, value):
    r = get(client, store, key)
    assert r.status == 200, r
    assert r.json() == value, r
    return r


def etag_of(client, store, key):
    r = get(client, store, key)
    assert r.status == 200, r
    etag = r.header("ETag")
    assert etag, "no ETag header on %r" % r
    return etag


# ---- get / save --------------------------------------------------------------

def test_get_missing_is_204_empty(client, store, key):
    r = get(client, store, key)
    assert r.status == 204
    assert r.body == b""
    assert r.header("Content-Type") is None


def test_save_then_get_returns_raw_json(client, store, key):
    r = save(client, store, [{"key": key, "value": "hello"}])
    assert r.status == 204, r
    assert r.body == b""
    r = get(client, store, key)
    assert r.status == 200, r
    assert r.content_type == "application/json"
    # The stored JSON comes back verbatim: a string keeps its quotes.
    assert r.body.strip() == b'"hello"'
    assert r.header("ETag"), r.headers


@pytest.mark.parametrize("value", [
    {"qty": 2, "nested": {"a": [1, 2, {"b": None}]}, "s": "x\u00e9\u65e5"},
    [1, "two", 3.5, True, False],
    42,
    -1.25,
    True,
    "",
    "with \"quotes\" and \\ backslash",
])
def test_value_types_round_trip(client, store, key, value):
    assert save(client, store, [{"key": key, "value": value}]).status == 204
    assert_value(client, store, key, value)


def test_save_with_put_method(client, store, key):
    r = client.put("/v1.0/state/%s" % store, json=[{"key": key, "value": 7}])
    assert r.status == 204, r
    assert_value(client, store, key, 7)


def test_save_several_items(client, store, key):
    items = [{"key": "%s-%d" % (key, i), "value": {"i": i}} for i in range(5)]
    assert save(client, store, items).status == 204
    for i in range(5):
        assert_value(client, store, "%s-%d" % (key, i), {"i": i})


def test_overwrite_changes_etag(client, store, key):
    assert save(client, store, [{"key": key, "value": 1}]).status == 204
    e1 = etag_of(client, store, key)
    assert save(client, store, [{"key": key, "value": 2}]).status == 204
    e2 = etag_of(client, store, key)
    assert e1 != e2
    assert_value(client, store, key, 2)


def test_save_with_right_etag(client, store, key):
    assert save(client, store, [{"key": key, "value": 1}]).status == 204
    etag = etag_of(client, store, key)
    r = save(client, store, [{"key": key, "value": 2, "etag": etag}])
    assert r.status == 204, r
    assert_value(client, store, key, 2)
    assert etag_of(client, store, key) != etag


def test_save_with_wrong_etag_is_409(client, store, key):
    assert save(client, store, [{"key": key, "value": 1}]).status == 204
    etag = etag_of(client, store, key)
    r = save(client, store, [{"key": key, "value": 2, "etag": etag + "x"}])
    assert_error(r, 409, "ERR_STATE_SAVE", "failed saving state in state store %s" % store)
    assert_value(client, store, key, 1)
    assert etag_of(client, store, key) == etag


def test_save_with_stale_etag_is_409(client, store, key):
    assert save(client, store, [{"key": key, "value": 1}]).status == 204
    old = etag_of(client, store, key)
    assert save(client, store, [{"key": key, "value": 2}]).status == 204
    r = save(client, store, [{"key": key, "value": 3, "etag": old}])
    assert_error(r, 409, "ERR_STATE_SAVE")
    assert_value(client, store, key, 2)


def test_save_with_etag_on_missing_key_is_409(client, store, key):
    r = save(client, store, [{"key": key, "value": 1, "etag": "1"}])
    # A syntactically invalid etag may be 400 on some stores (§2.4); both
    # stores here use opaque etags, so a missing key is a mismatch.
    assert_error(r, 409, "ERR_STATE_SAVE")
    assert_absent(client, store, key)


def test_first_write_on_new_key(client, store, key):
    r = save(client, store, [{"key": key, "value": 1, "options": {"concurrency": "first-write"}}])
    assert r.status == 204, r
    assert_value(client, store, key, 1)


def test_first_write_on_existing_key_is_409(client, store, key):
    assert save(client, store, [{"key": key, "value": 1}]).status == 204
    r = save(client, store, [{"key": key, "value": 2, "options": {"concurrency": "first-write"}}])
    assert_error(r, 409, "ERR_STATE_SAVE")
    assert_value(client, store, key, 1)


def test_first_write_with_right_etag(client, store, key):
    assert save(client, store, [{"key": key, "value": 1}]).status == 204
    etag = etag_of(client, store, key)
    r = save(client, store, [{"key": key, "value": 2, "etag": etag,
                              "options": {"concurrency": "first-write"}}])
    assert r.status == 204, r
    assert_value(client, store, key, 2)


def test_options_fields_case_insensitive(client, store, key):
    assert save(client, store, [{"key": key, "value": 1}]).status == 204
    r = save(client, store, [{"Key": key, "Value": 2, "Options": {"Concurrency": "first-write"}}])
    assert_error(r, 409, "ERR_STATE_SAVE")
    assert_value(client, store, key, 1)


def test_empty_array_is_204(client, store):
    r = client.post("/v1.0/state/%s" % store, body=b"[]")
    assert r.status == 204, r


def test_get_consistency_query_parameter(client, store, key):
    assert save(client, store, [{"key": key, "value": 1}]).status == 204
    r = client.get("/v1.0/state/%s/%s?consistency=strong" % (store, key))
    assert r.status == 200, r
    assert r.json() == 1


# ---- delete ------------------------------------------------------------------

def delete(client, store, key, **kw):
    return client.delete("/v1.0/state/%s/%s" % (store, enc(key)), **kw)


def test_delete(client, store, key):
    assert save(client, store, [{"key": key, "value": 1}]).status == 204
    r = delete(client, store, key)
    assert r.status == 204, r
    assert r.body == b""
    assert_absent(client, store, key)


def test_delete_missing_is_204(client, store, key):
    r = delete(client, store, key)
    assert r.status == 204, r


def test_delete_with_right_if_match(client, store, key):
    assert save(client, store, [{"key": key, "value": 1}]).status == 204
    etag = etag_of(client, store, key)
    r = delete(client, store, key, headers={"If-Match": etag})
    assert r.status == 204, r
    assert_absent(client, store, key)


def test_delete_with_wrong_if_match_is_409(client, store, key):
    assert save(client, store, [{"key": key, "value": 1}]).status == 204
    etag = etag_of(client, store, key)
    r = delete(client, store, key, headers={"If-Match": etag + "x"})
    assert_error(r, 409, "ERR_STATE_DELETE", "failed deleting state with key %s" % key)
    assert_value(client, store, key, 1)


def test_delete_missing_with_if_match_is_409(client, store, key):
    r = delete(client, store, key, headers={"If-Match": "00000000-0000-0000-0000-000000000000"})
    assert_error(r, 409, "ERR_STATE_DELETE")


def test_delete_with_empty_if_match_means_no_etag(client, store, key):
    assert save(client, store, [{"key": key, "value": 1}]).status == 204
    r = delete(client, store, key, headers={"If-Match": ""})
    assert r.status == 204, r
    assert_absent(client, store, key)


# ---- bulk get ----------------------------------------------------------------

def test_bulk_get(client, store, key):
    a, b, c = key + "-a", key + "-missing", key + "-c"
    assert save(client, store, [{"key": a, "value": {"x": 1}}, {"key": c, "value": "three"}]).status == 204
    ea, ec = etag_of(client, store, a), etag_of(client, store, c)
    r = client.post("/v1.0/state/%s/bulk" % store, json={"keys": [c, b, a], "parallelism": 2})
    assert r.status == 200, r
    assert r.content_type == "application/json"
    items = r.json()
    assert [i["key"] for i in items] == [c, b, a]
    assert items[1] == {"key": b}
    assert items[0]["data"] == "three"
    assert items[0]["etag"] == ec
    assert items[2]["data"] == {"x": 1}     # embedded raw, not a string
    assert items[2]["etag"] == ea
    for i in (items[0], items[2]):
        assert "error" not in i


def test_bulk_get_with_put(client, store, key):
    assert save(client, store, [{"key": key, "value": 5}]).status == 204
    r = client.put("/v1.0/state/%s/bulk" % store, json={"keys": [key]})
    assert r.status == 200, r
    assert r.json()[0]["data"] == 5


def test_bulk_get_empty_keys(client, store):
    r = client.post("/v1.0/state/%s/bulk" % store, json={"keys": []})
    assert r.status == 200, r
    assert r.json() == []


def test_bulk_get_malformed(client, store):
    r = client.post("/v1.0/state/%s/bulk" % store, body=b"{not json")
    assert_error(r, 400, "ERR_MALFORMED_REQUEST")


# ---- transactions ------------------------------------------------------------

def txn(client, store, ops, **kw):
    return client.post("/v1.0/state/%s/transaction" % store, json=ops, **kw)


def test_transaction_upsert_and_delete(client, store, key):
    a, b = key + "-a", key + "-b"
    assert save(client, store, [{"key": b, "value": "old"}]).status == 204
    r = txn(client, store, {"operations": [
        {"operation": "upsert", "request": {"key": a, "value": {"n": 1}}},
        {"operation": "delete", "request": {"key": b}},
    ]})
    assert r.status == 204, r
    assert r.body == b""
    assert_value(client, store, a, {"n": 1})
    assert_absent(client, store, b)


def test_transaction_with_right_etags(client, store, key):
    a, b = key + "-a", key + "-b"
    assert save(client, store, [{"key": a, "value": 1}, {"key": b, "value": 2}]).status == 204
    ea, eb = etag_of(client, store, a), etag_of(client, store, b)
    r = client.put("/v1.0/state/%s/transaction" % store, json={"operations": [
        {"operation": "upsert", "request": {"key": a, "value": 10, "etag": ea}},
        {"operation": "delete", "request": {"key": b, "etag": eb}},
    ]})
    assert r.status == 204, r
    assert_value(client, store, a, 10)
    assert_absent(client, store, b)


def test_transaction_wrong_etag_applies_nothing(client, store, key):
    a, b, c = key + "-a", key + "-b", key + "-c"
    assert save(client, store, [{"key": b, "value": "b0"}, {"key": c, "value": "c0"}]).status == 204
    eb = etag_of(client, store, b)
    r = txn(client, store, {"operations": [
        {"operation": "upsert", "request": {"key": a, "value": "new"}},
        {"operation": "delete", "request": {"key": c}},
        {"operation": "upsert", "request": {"key": b, "value": "b1", "etag": eb + "x"}},
    ]})
    assert_error(r, 500, "ERR_STATE_TRANSACTION", "error while executing state transaction")
    assert_absent(client, store, a)
    assert_value(client, store, b, "b0")
    assert_value(client, store, c, "c0")
    assert etag_of(client, store, b) == eb


def test_transaction_delete_wrong_etag_applies_nothing(client, store, key):
    a, b = key + "-a", key + "-b"
    assert save(client, store, [{"key": b, "value": "b0"}]).status == 204
    r = txn(client, store, {"operations": [
        {"operation": "upsert", "request": {"key": a, "value": 1}},
        {"operation": "delete", "request": {"key": b, "etag": "not-the-etag"}},
    ]})
    assert_error(r, 500, "ERR_STATE_TRANSACTION")
    assert_absent(client, store, a)
    assert_value(client, store, b, "b0")


def test_transaction_first_write_conflict_applies_nothing(client, store, key):
    a, b = key + "-a", key + "-b"
    assert save(client, store, [{"key": b, "value": "b0"}]).status == 204
    r = txn(client, store, {"operations": [
        {"operation": "upsert", "request": {"key": a, "value": 1}},
        {"operation": "upsert", "request": {"key": b, "value": "b1",
                                            "options": {"concurrency": "first-write"}}},
    ]})
    assert_error(r, 500, "ERR_STATE_TRANSACTION")
    assert_absent(client, store, a)
    assert_value(client, store, b, "b0")


def test_transaction_unsupported_operation(client, store, key):
    r = txn(client, store, {"operations": [
        {"operation": "upsert", "request": {"key": key, "value": 1}},
        {"operation": "merge", "request": {"key": key, "value": 2}},
    ]})
    assert_error(r, 400, "ERR_NOT_SUPPORTED_STATE_OPERATION", "operation type merge not supported")
    assert_absent(client, store, key)


def test_transaction_empty_operations(client, store):
    r = txn(client, store, {"operations": []})
    assert r.status == 204, r


def test_transaction_malformed_body(client, store):
    r = client.post("/v1.0/state/%s/transaction" % store, body=b'{"operations": [')
    assert_error(r, 400, "ERR_MALFORMED_REQUEST")


def test_transaction_on_store_without_transactions(client, store, key):
    comps = client.get("/v1.0/metadata").json().get("components", [])
    plain = [c["name"] for c in comps
             if c.get("type", "").startswith("state.") and "TRANSACTIONAL" not in c.get("capabilities", [])]
    if not plain:
        pytest.skip("no state store without TRANSACTIONAL is configured")
    r = txn(client, plain[0], {"operations": [
        {"operation": "upsert", "request": {"key": key, "value": 1}}]})
    body = assert_error(r, 500, "ERR_STATE_STORE_NOT_SUPPORTED",
                        "state store %s doesn't support transactions" % plain[0])
    if "details" in body:
        assert error_reason(body) == "DAPR_STATE_TRANSACTIONS_NOT_SUPPORTED"


# ---- TTL ---------------------------------------------------------------------

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def parse_rfc3339(s):
    base = s[:19]
    return datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)


def test_ttl_expiry_and_header(client, store, key):
    before = datetime.now(timezone.utc).replace(microsecond=0)
    r = save(client, store, [{"key": key, "value": "short", "metadata": {"ttlInSeconds": "1"}}])
    assert r.status == 204, r
    r = get(client, store, key)
    if r.status == 200:
        exp = r.header("metadata.ttlExpireTime")
        assert exp, "no metadata.ttlExpireTime header: %s" % dict(r.headers)
        assert RFC3339_UTC.match(exp), exp
        t = parse_rfc3339(exp)
        assert before <= t <= datetime.now(timezone.utc) + timedelta(seconds=2), exp
    else:
        # On a slow machine the read may already be past the expiry.
        assert r.status == 204, r
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = get(client, store, key)
        if r.status == 204:
            break
        assert r.status == 200, r
        time.sleep(0.1)
    assert r.status == 204, "key with ttlInSeconds=1 still present after 10 s"
    # Expired items are absent for bulk get too.
    r = client.post("/v1.0/state/%s/bulk" % store, json={"keys": [key]})
    assert r.status == 200 and r.json() == [{"key": key}], r


def test_ttl_item_without_ttl_has_no_expire_header(client, store, key):
    assert save(client, store, [{"key": key, "value": 1}]).status == 204
    r = get(client, store, key)
    assert r.status == 200
    assert r.header("metadata.ttlExpireTime") is None


def test_ttl_negative_means_no_expiry(client, store, key):
    r = save(client, store, [{"key": key, "value": 1, "metadata": {"ttlInSeconds": "-1"}}])
    assert r.status == 204, r
    r = get(client, store, key)
    assert r.status == 200, r
    assert r.header("metadata.ttlExpireTime") is None


def test_ttl_long_header_in_future(client, store, key):
    r = save(client, store, [{"key": key, "value": 1, "metadata": {"ttlInSeconds": "3600"}}])
    assert r.status == 204, r
    r = get(client, store, key)
    assert r.status == 200, r
    exp = r.header("metadata.ttlExpireTime")
    assert exp and RFC3339_UTC.match(exp), exp
    delta = (parse_rfc3339(exp) - datetime.now(timezone.utc)).total_seconds()
    assert 3500 < delta <= 3601, exp


def test_ttl_query_parameter_metadata(client, store, key):
    # metadata.* query parameters are merged into each item's metadata.
    r = client.post("/v1.0/state/%s?metadata.ttlInSeconds=3600" % store, json=[{"key": key, "value": 1}])
    assert r.status == 204, r
    r = get(client, store, key)
    assert r.status == 200
    assert r.header("metadata.ttlExpireTime"), dict(r.headers)


def test_ttl_not_an_integer_is_an_error(client, store, key):
    r = save(client, store, [{"key": key, "value": 1, "metadata": {"ttlInSeconds": "soon"}}])
    assert r.status in (400, 500), r
    assert r.json()["errorCode"] in ("ERR_STATE_SAVE", "ERR_MALFORMED_REQUEST"), r
    assert_absent(client, store, key)


# ---- store lookup --------------------------------------------------------------

@pytest.mark.parametrize("method,path,body", [
    ("GET", "/v1.0/state/nosuch/k", None),
    ("POST", "/v1.0/state/nosuch", [{"key": "k", "value": 1}]),
    ("PUT", "/v1.0/state/nosuch", [{"key": "k", "value": 1}]),
    ("DELETE", "/v1.0/state/nosuch/k", None),
    ("POST", "/v1.0/state/nosuch/bulk", {"keys": ["k"]}),
    ("POST", "/v1.0/state/nosuch/transaction",
     {"operations": [{"operation": "upsert", "request": {"key": "k", "value": 1}}]}),
    ("POST", "/v1.0-alpha1/state/nosuch/query", {"filter": {"EQ": {"a": 1}}}),
])
def test_unknown_store(client, method, path, body):
    r = client.request(method, path, json_body=body)
    b = assert_error(r, 400, "ERR_STATE_STORE_NOT_FOUND", "state store nosuch is not found")
    if "details" in b:
        assert error_reason(b) == "DAPR_STATE_NOT_FOUND"


# ---- keys ----------------------------------------------------------------------

def test_key_with_double_pipe_in_path(client, store):
    r = client.get("/v1.0/state/%s/a%%7C%%7Cb" % store)
    b = assert_error(r, 400, "ERR_MALFORMED_REQUEST", "input key/keyPrefix 'a||b' can't contain '||'")
    if "details" in b:
        assert error_reason(b) == "DAPR_STATE_ILLEGAL_KEY"
    r = client.delete("/v1.0/state/%s/a%%7C%%7Cb" % store)
    assert_error(r, 400, "ERR_MALFORMED_REQUEST", "can't contain '||'")


def test_key_with_double_pipe_in_bodies(client, store, key):
    bad = key + "||x"
    r = save(client, store, [{"key": key, "value": 1}, {"key": bad, "value": 2}])
    assert_error(r, 400, "ERR_MALFORMED_REQUEST", "can't contain '||'")
    assert_absent(client, store, key)
    r = client.post("/v1.0/state/%s/bulk" % store, json={"keys": [bad]})
    assert_error(r, 400, "ERR_MALFORMED_REQUEST", "can't contain '||'")
    r = txn(client, store, {"operations": [
        {"operation": "upsert", "request": {"key": key, "value": 1}},
        {"operation": "upsert", "request": {"key": bad, "value": 1}}]})
    assert_error(r, 400, "ERR_MALFORMED_REQUEST", "can't contain '||'")
    assert_absent(client, store, key)


def test_single_pipe_key_is_fine(client, store, key):
    k = key + "|x"
    assert save(client, store, [{"key": k, "value": 1}]).status == 204
    assert_value(client, store, k, 1)


def test_percent_encoded_slash(client, store, key):
    k = key + "/b"
    assert save(client, store, [{"key": k, "value": "slash"}]).status == 204
    r = client.get("/v1.0/state/%s/%s%%2Fb" % (store, key))
    assert r.status == 200, r
    assert r.json() == "slash"
    r = client.delete("/v1.0/state/%s/%s%%2fb" % (store, key))
    assert r.status == 204, r
    assert_absent(client, store, k)


def test_plus_decodes_to_space(client, store, key):
    k = key + " sp"
    assert save(client, store, [{"key": k, "value": "space"}]).status == 204
    r = client.get("/v1.0/state/%s/%s+sp" % (store, key))
    assert r.status == 200, r
    assert r.json() == "space"
    r = client.get("/v1.0/state/%s/%s%%20sp" % (store, key))
    assert r.status == 200, r


def test_unicode_key(client, store, key):
    k = key + "-\u043a\u043b\u044e\u0447-\u65e5\u672c-\U0001F600"
    assert save(client, store, [{"key": k, "value": {"u": "\u00fc"}}]).status == 204
    r = get(client, store, k)
    assert r.status == 200, r
    assert r.json() == {"u": "\u00fc"}
    r = client.post("/v1.0/state/%s/bulk" % store, json={"keys": [k]})
    assert r.status == 200
    assert r.json()[0]["key"] == k
    assert r.json()[0]["data"] == {"u": "\u00fc"}


def test_repeated_slashes(client, store, key):
    r = client.post("//v1.0//state//%s" % store, json=[{"key": key, "value": "ss"}])
    assert r.status == 204, r
    r = client.get("//v1.0//state/%s//%s" % (store, key))
    assert r.status == 200, r
    assert r.json() == "ss"


# ---- input validation ------------------------------------------------------------

def test_malformed_json_writes_nothing(client, store, key):
    r = client.post("/v1.0/state/%s" % store, body=('[{"key":"%s","value":1},' % key).encode())
    assert_error(r, 400, "ERR_MALFORMED_REQUEST")
    assert_absent(client, store, key)


def test_missing_key_field(client, store, key):
    r = save(client, store, [{"key": key, "value": 1}, {"value": 2}])
    assert_error(r, 400, "ERR_MALFORMED_REQUEST", '"key" is a required field')
    assert_absent(client, store, key)


def test_empty_key_field(client, store):
    r = save(client, store, [{"key": "", "value": 1}])
    assert_error(r, 400, "ERR_MALFORMED_REQUEST", '"key" is a required field')


@pytest.mark.parametrize("body", [
    b'{"key":"k","value":1}',        # object instead of array
    b'"just a string"',
    b"42",
    b"[1, 2]",                       # array of non-objects
    b'[{"key": 5, "value": 1}]',     # key of the wrong type
    b'[{"key": ["a"], "value": 1}]',
    b"\x00\x01\x02garbage\xff\xfe",
    b"<xml/>",
    b"[",
])
def test_bad_save_bodies(daprd, client, store, body):
    r = client.post("/v1.0/state/%s" % store, body=body)
    assert_error(r, 400, "ERR_MALFORMED_REQUEST")
    daprd.assert_healthy()


def test_invalid_utf8_in_body(daprd, client, store, key):
    # Go's encoding/json would replace invalid bytes with U+FFFD and store
    # them; this project refuses them instead (the brief asks for a clear
    # 400 and no write).
    body = b'[{"key":"' + key.encode() + b'","value":"\xff\xfe"}]'
    r = client.post("/v1.0/state/%s" % store, body=body)
    assert_error(r, 400, "ERR_MALFORMED_REQUEST")
    assert_absent(client, store, key)
    body = b'[{"key":"' + key.encode() + b'\xc3","value":1}]'
    r = client.post("/v1.0/state/%s" % store, body=body)
    assert_error(r, 400, "ERR_MALFORMED_REQUEST")
    daprd.assert_healthy()


def test_invalid_utf8_in_path_key(daprd, client, store):
    # Go's runtime accepts arbitrary bytes here; an implementation may also
    # refuse them.  Either way: an answer, not a crash or a 5xx.
    r = client.get("/v1.0/state/%s/bad%%FF%%FEkey" % store)
    assert r.status in (204, 400), r
    daprd.assert_healthy()


def test_bad_percent_escape_in_path(daprd, client, store):
    r = client.get("/v1.0/state/%s/bad%%zzkey" % store)
    assert r.status == 400, r
    daprd.assert_healthy()


def test_huge_key_in_body(daprd, client, store):
    k = "h" * 200000
    r = save(client, store, [{"key": k, "value": 1}])
    # A store may refuse a key this long; it must say so clearly.
    assert r.status in (204, 400, 500), r
    if r.status != 204:
        assert r.json()["errorCode"] in ("ERR_STATE_SAVE", "ERR_MALFORMED_REQUEST")
    else:
        r = client.post("/v1.0/state/%s/bulk" % store, json={"keys": [k]})
        assert r.status == 200 and r.json()[0].get("data") == 1, r
    daprd.assert_healthy()


def test_huge_key_in_path(daprd, client, store):
    # Longer than the default 4 KiB header read limit (§1.1).
    try:
        r = client.get("/v1.0/state/%s/%s" % (store, "p" * 70000))
        assert r.status >= 400 or r.status == 204, r
    except (OSError, http.client.HTTPException):
        pass   # closing the connection is an acceptable refusal
    daprd.assert_healthy()


def test_bad_bulk_bodies(daprd, client, store):
    for body in (b"[]", b'{"keys": "a"}', b'{"keys": [1, 2]}', b"\xff\xff"):
        r = client.post("/v1.0/state/%s/bulk" % store, body=body)
        assert_error(r, 400, "ERR_MALFORMED_REQUEST")
    daprd.assert_healthy()


def test_bad_transaction_bodies(daprd, client, store, key):
    bodies = [
        b"[]",
        b'{"operations": {"a": 1}}',
        b'{"operations": [{"operation": "upsert"}]}',
        b'{"operations": [{"operation": "upsert", "request": {"value": 1}}]}',
        b'{"operations": [5]}',
    ]
    for body in bodies:
        r = client.post("/v1.0/state/%s/transaction" % store, body=body)
        assert r.status == 400, (body, r)
        assert r.json()["errorCode"] in ("ERR_MALFORMED_REQUEST", "ERR_NOT_SUPPORTED_STATE_OPERATION"), r
    daprd.assert_healthy()


# ---- concurrency -------------------------------------------------------------------

def test_concurrent_first_write_has_one_winner(daprd, client, store, key):
    """Many clients race to create the same key with first-write: exactly
    one succeeds, every other one gets 409."""
    from concurrent.futures import ThreadPoolExecutor
    n = 16

    def attempt(i):
        return save(client, store, [{"key": key, "value": i,
                                     "options": {"concurrency": "first-write"}}]).status

    with ThreadPoolExecutor(max_workers=n) as pool:
        statuses = list(pool.map(attempt, range(n)))
    assert sorted(statuses) == [204] + [409] * (n - 1), statuses
    r = get(client, store, key)
    assert r.status == 200 and r.json() in range(n)


def test_concurrent_etag_increments_lose_nothing(daprd, client, store, key):
    """Read-modify-write with etags from several threads: no update lost."""
    from concurrent.futures import ThreadPoolExecutor
    assert save(client, store, [{"key": key, "value": 0}]).status == 204
    workers, per_worker = 4, 10

    def worker(_):
        conflicts = 0
        for _ in range(per_worker):
            while True:
                r = get(client, store, key)
                assert r.status == 200, r
                w = save(client, store, [{"key": key, "value": r.json() + 1, "etag": r.header("ETag")}])
                if w.status == 204:
                    break
                assert w.status == 409, w
                conflicts += 1
        return conflicts

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(worker, range(workers)))
    assert_value(client, store, key, workers * per_worker)
