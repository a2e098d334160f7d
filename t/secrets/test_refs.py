"""secretKeyRef in Component manifests (reference §6, §9.2): resolved from
an initialised secret store before the component starts, secret stores
first; a missing secret stops daprd with an error naming the component
and the key (or skips the component with ignoreErrors)."""

import json

import pytest

from conftest import assert_error, component, have_plugin, secret_ref

needs_sqlite = pytest.mark.skipif(not have_plugin("state-sqlite"), reason="state.sqlite plugin not built")


def file_store(d, secrets, name="localsecrets"):
    path = d.file(name + ".json", json.dumps(secrets))
    return component(name, "secretstores.local.file", [("secretsFile", path)])


@needs_sqlite
def test_state_store_connection_from_secret(daprd_factory):
    d = daprd_factory()
    db = d.workdir + "/from-secret.db"
    # The state store is listed before the secret store: order must not matter.
    d.write("a-state.yaml", component("statestore", "state.sqlite",
                                      [("connectionString", secret_ref("sqlite", "connectionString")),
                                       ("tableName", secret_ref("tablename"))],
                                      secret_store="localsecrets"))
    d.write("b-secrets.yaml", file_store(d, {}, "unused") + "---\n" +
            component("localsecrets", "secretstores.local.file",
                      [("secretsFile", d.file("s.json", json.dumps(
                          {"sqlite": {"connectionString": db}, "tablename": "fromsecret"}))),
                       ("multiValued", "true")]))
    d.start()
    r = d.client.post_json("/v1.0/state/statestore", [{"key": "k1", "value": {"n": 1}}])
    assert r.status == 204, r
    r = d.client.get("/v1.0/state/statestore/k1")
    assert r.status == 200 and r.json() == {"n": 1}, r
    d.stop()
    # the store really used the file and the table named by the secrets
    import sqlite3
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT key FROM fromsecret").fetchall()
    finally:
        con.close()
    assert ("secretsapp||k1",) in rows


def test_secret_store_reading_from_another_secret_store(daprd_factory):
    # local.file takes its secretsFile from local.env: stores start in
    # dependency order whatever the manifest order.
    d = daprd_factory(env={"REFTEST_SECRETS_FILE": ""})
    path = d.file("chained.json", json.dumps({"x": "chained-value"}))
    d.env_extra["REFTEST_SECRETS_FILE"] = path
    d.write("stores.yaml", component("chained", "secretstores.local.file",
                                     [("secretsFile", secret_ref("SECRETS_FILE"))],
                                     secret_store="envstore") + "---\n" +
            component("envstore", "secretstores.local.env", [("prefix", "REFTEST_")]))
    d.start()
    r = d.client.get("/v1.0/secrets/chained/x")
    assert r.status == 200 and r.json() == {"x": "chained-value"}, r


def start_failure(d):
    rc = d.run_to_exit()
    assert rc != 0, d.logs()
    return d.output()


def test_missing_secret_stops_daprd(daprd_factory):
    d = daprd_factory()
    d.write("c.yaml", file_store(d, {"present": "v"}) + "---\n" +
            component("needy", "secretstores.probe", [("password", secret_ref("absent-secret", "pw"))],
                      secret_store="localsecrets"))
    out = start_failure(d)
    assert "component 'needy'" in out and "'password'" in out, out
    assert "secret 'absent-secret'" in out and "key 'pw'" in out and "secret store 'localsecrets'" in out, out


def test_missing_key_stops_daprd(daprd_factory):
    d = daprd_factory()
    d.write("c.yaml", component("localsecrets", "secretstores.local.file",
                                [("secretsFile", d.file("m.json", json.dumps({"db": {"user": "u"}}))),
                                 ("multiValued", "true")]) + "---\n" +
            component("needy", "secretstores.probe", [("password", secret_ref("db", "password"))],
                      secret_store="localsecrets"))
    out = start_failure(d)
    assert "component 'needy'" in out and "has no key 'password'" in out, out


def test_empty_value_counts_as_missing(daprd_factory):
    # local.env answers an unset variable with "": that is not a password
    d = daprd_factory()
    d.write("c.yaml", component("envstore", "secretstores.local.env") + "---\n" +
            component("needy", "secretstores.probe", [("password", secret_ref("SURELY_UNSET_VAR_1234"))],
                      secret_store="envstore"))
    out = start_failure(d)
    assert "component 'needy'" in out and "empty value for key 'SURELY_UNSET_VAR_1234'" in out, out


def test_no_auth_secret_store(daprd_factory):
    d = daprd_factory()
    d.write("c.yaml", file_store(d, {"pw": "v"}) + "---\n" +
            component("needy", "secretstores.probe", [("password", secret_ref("pw"))]))
    out = start_failure(d)
    assert "component 'needy'" in out and "auth.secretStore" in out, out


def test_unknown_auth_secret_store(daprd_factory):
    d = daprd_factory()
    d.write("c.yaml", component("needy", "secretstores.probe", [("password", secret_ref("pw"))],
                                secret_store="nosuchstore"))
    out = start_failure(d)
    assert "component 'needy'" in out and "secret store 'nosuchstore', which is not loaded" in out, out


def test_failed_secret_store_with_ignore_errors(daprd_factory):
    # the store is skipped (ignoreErrors); its dependant then cannot start
    d = daprd_factory()
    d.write("c.yaml", component("broken", "secretstores.local.file", [("secretsFile", "/nonexistent/x.json")],
                                ignore_errors=True) + "---\n" +
            component("needy", "secretstores.probe", [("password", secret_ref("pw"))], secret_store="broken"))
    out = start_failure(d)
    assert "component 'broken'" in out and "skipped (ignoreErrors)" in out, out
    assert "component 'needy'" in out and "which is not loaded" in out, out


def test_missing_secret_with_ignore_errors_skips_the_component(daprd_factory):
    d = daprd_factory()
    d.write("c.yaml", file_store(d, {"pw": "v"}) + "---\n" +
            component("needy", "secretstores.probe", [("password", secret_ref("absent"))],
                      secret_store="localsecrets", ignore_errors=True))
    d.start()
    names = [c["name"] for c in d.client.get("/v1.0/metadata").json()["components"]]
    assert names == ["localsecrets"], names
    out = d.output()
    assert "component 'needy'" in out and "skipped (ignoreErrors)" in out and "secret 'absent'" in out, out
    assert_error(d.client.get("/v1.0/secrets/needy/x"), 401, "ERR_SECRET_STORE_NOT_FOUND")


def test_key_defaults_to_the_secret_name(daprd_factory):
    d = daprd_factory()
    d.write("c.yaml", file_store(d, {"pw": "resolved-pw"}) + "---\n" +
            component("probe", "secretstores.probe", [("password", secret_ref("pw"))],
                      secret_store="localsecrets"))
    d.start()
    r = d.client.get("/v1.0/secrets/probe/password")
    assert r.status == 200 and r.json() == {"password": "resolved-pw"}, r


def test_env_ref_cannot_read_daprd_secrets(daprd_factory):
    d = daprd_factory(env={"DAPR_SOMETHING": "daprd-only", "PLAIN_VAR": "plain-value"})
    d.write("c.yaml", component("p1", "secretstores.probe", [("password", {"envRef": "DAPR_SOMETHING"})]) +
            "---\n" + component("p2", "secretstores.probe", [("password", {"envRef": "PLAIN_VAR"})]))
    d.start()
    assert d.client.get("/v1.0/secrets/p1/password").json() == {"password": ""}
    assert d.client.get("/v1.0/secrets/p2/password").json() == {"password": "plain-value"}
    assert "DAPR_SOMETHING" in d.output()   # the warning names the variable


def test_blocking_secret_store_resolves_refs(daprd_factory):
    # the probe store is not NONBLOCKING: start-up reads it on the worker pool
    d = daprd_factory()
    d.write("c.yaml", component("consumer", "secretstores.probe", [("password", secret_ref("db", "db"))],
                                secret_store="blockingstore") + "---\n" +
            component("blockingstore", "secretstores.probe"))
    d.start()
    r = d.client.get("/v1.0/secrets/consumer/password")
    assert r.status == 200 and r.json() == {"password": "value-of-db"}, r
    # a store error at start-up names the store and keeps its message
    d2 = daprd_factory("d2")
    d2.write("c.yaml", component("consumer", "secretstores.probe", [("password", secret_ref("fail"))],
                                 secret_store="blockingstore") + "---\n" +
             component("blockingstore", "secretstores.probe"))
    out = start_failure(d2)
    assert "cannot read secret 'fail' (key 'fail') from secret store 'blockingstore': backend down" in out, out
