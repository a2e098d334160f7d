"""Key prefixing (reference §2.2).  Several state.sqlite components share
one database file with different keyPrefix strategies; the rows are then
read straight from the file (Python's sqlite3 module) to see the exact
stored keys, and cross-read through the API where the strategy allows."""

import sqlite3
import uuid

import pytest

from conftest import APP_ID, sqlite_store


@pytest.fixture(scope="module")
def env(module_factory):
    db = module_factory.path("shared.db")
    docs = {
        "default.yaml": sqlite_store("sqldefault", db),
        "name.yaml": sqlite_store("sqlname", db, {"keyPrefix": "name"}),
        "none.yaml": sqlite_store("sqlnone", db, {"keyPrefix": "none"}),
        # Name matched case-insensitively, value lower-cased.
        "nonecase.yaml": sqlite_store("sqlnonecase", db, {"KEYPREFIX": "NONE"}),
        "appid.yaml": sqlite_store("sqlappid", db, {"keyPrefix": "appid"}),
        "shared1.yaml": sqlite_store("sqlshared1", db, {"keyPrefix": "shared"}),
        "shared2.yaml": sqlite_store("sqlshared2", db, {"keyPrefix": "shared"}),
    }
    d = module_factory.start([module_factory.resources(docs)], name="prefix")
    return d, db


@pytest.fixture
def client(env):
    return env[0].client


@pytest.fixture
def key():
    return "p-" + uuid.uuid4().hex[:12]


def stored(db, key_like):
    """Rows of the shared file whose key ends with key_like."""
    con = sqlite3.connect(db, timeout=5)
    try:
        rows = con.execute("SELECT key, value FROM state WHERE key LIKE ?", ("%" + key_like,)).fetchall()
    finally:
        con.close()
    return dict(rows)


def save(client, store, key, value):
    r = client.post("/v1.0/state/%s" % store, json=[{"key": key, "value": value}])
    assert r.status == 204, r


def get(client, store, key):
    return client.get("/v1.0/state/%s/%s" % (store, key))


@pytest.mark.parametrize("store,prefix", [
    ("sqldefault", APP_ID + "||"),
    ("sqlappid", APP_ID + "||"),
    ("sqlname", "sqlname||"),
    ("sqlnone", ""),
    ("sqlnonecase", ""),
    ("sqlshared1", "shared||"),
])
def test_stored_key(env, client, key, store, prefix):
    _, db = env
    save(client, store, key, {"from": store})
    rows = stored(db, key)
    assert list(rows) == [prefix + key], rows
    # Reads strip the prefix back off.
    r = get(client, store, key)
    assert r.status == 200 and r.json() == {"from": store}, r
    r = client.post("/v1.0/state/%s/bulk" % store, json={"keys": [key]})
    assert r.status == 200 and r.json()[0]["key"] == key and r.json()[0]["data"] == {"from": store}, r


def test_none_prefix_sees_only_unprefixed_rows(env, client, key):
    save(client, "sqldefault", key, "appid-value")
    save(client, "sqlname", key, "name-value")
    assert get(client, "sqlnone", key).status == 204
    save(client, "sqlnone", key, "plain-value")
    assert get(client, "sqlnone", key).json() == "plain-value"
    assert get(client, "sqlnonecase", key).json() == "plain-value"
    assert get(client, "sqldefault", key).json() == "appid-value"
    assert get(client, "sqlappid", key).json() == "appid-value"
    assert get(client, "sqlname", key).json() == "name-value"
    _, db = env
    assert sorted(stored(db, key)) == sorted([APP_ID + "||" + key, "sqlname||" + key, key])


def test_custom_prefix_is_shared(client, key):
    save(client, "sqlshared1", key, "shared-value")
    r = get(client, "sqlshared2", key)
    assert r.status == 200 and r.json() == "shared-value", r
    assert get(client, "sqldefault", key).status == 204


def test_transaction_and_delete_use_the_prefix(env, client, key):
    _, db = env
    r = client.post("/v1.0/state/sqlname/transaction", json={"operations": [
        {"operation": "upsert", "request": {"key": key + "-a", "value": 1}},
        {"operation": "upsert", "request": {"key": key + "-b", "value": 2}}]})
    assert r.status == 204, r
    assert set(stored(db, key + "-a")) == {"sqlname||" + key + "-a"}
    r = client.delete("/v1.0/state/sqlname/%s-a" % key)
    assert r.status == 204, r
    assert stored(db, key + "-a") == {}
    r = client.post("/v1.0/state/sqlname/transaction", json={"operations": [
        {"operation": "delete", "request": {"key": key + "-b"}}]})
    assert r.status == 204, r
    assert stored(db, key + "-b") == {}
