"""Component manifests (reference §9.1, §9.2): fatal errors name the file
and component, ignoreErrors, multi-document files, scopes."""

import os

from conftest import (APP_ID, assert_error, component_yaml, free_port, memory_store, multi_doc,
                      sqlite_store)

EXIT_TIMEOUT = 10


def start_expect_exit(factory, files, name):
    res = factory.resources(files)
    d = factory.create([res], name=name)
    d.spawn(free_port())
    rc = d.wait_exit(EXIT_TIMEOUT)
    if rc is None:
        d.stop()
        raise AssertionError("daprd kept running with a bad manifest\n%s" % d.logs())
    return d, rc


def components(d):
    r = d.client.get("/v1.0/metadata")
    assert r.status == 200, r
    return {c["name"]: c for c in r.json().get("components", [])}


def test_unknown_component_type_is_fatal(daprd_factory):
    d, rc = start_expect_exit(daprd_factory, {
        "good.yaml": memory_store("statestore"),
        "broken-store.yaml": component_yaml("mybroken", "state.nosuchstore"),
    }, "unknowntype")
    assert rc != 0
    log = d.log_text()
    assert "broken-store.yaml" in log, log
    assert "mybroken" in log, log


def test_unknown_component_type_with_ignore_errors(daprd_factory):
    res = daprd_factory.resources({
        "good.yaml": memory_store("statestore"),
        "broken-store.yaml": component_yaml("mybroken", "state.nosuchstore", ignore_errors=True),
    })
    d = daprd_factory.start([res], name="ignoreerrors")
    comps = components(d)
    assert "statestore" in comps
    assert "mybroken" not in comps
    assert d.client.post("/v1.0/state/statestore", json=[{"key": "k", "value": 1}]).status == 204
    r = d.client.get("/v1.0/state/mybroken/k")
    assert_error(r, 400, "ERR_STATE_STORE_NOT_FOUND")


def test_init_failure_is_fatal(daprd_factory):
    # Missing required metadata: the component fails init.
    d, rc = start_expect_exit(daprd_factory, {
        "nosqlconn.yaml": component_yaml("sqlnoconn", "state.sqlite"),
    }, "initfail")
    assert rc != 0
    log = d.log_text()
    assert "sqlnoconn" in log, log
    assert "connectionString" in log, log


def test_init_failure_with_ignore_errors(daprd_factory):
    res = daprd_factory.resources({
        "nosqlconn.yaml": component_yaml("sqlnoconn", "state.sqlite", ignore_errors=True),
        "good.yaml": memory_store("statestore"),
    })
    d = daprd_factory.start([res], name="initfail-ignored")
    assert set(components(d)) == {"statestore"}


def test_key_prefix_with_double_pipe_is_fatal(daprd_factory):
    d, rc = start_expect_exit(daprd_factory, {
        "badprefix.yaml": sqlite_store("badprefix", daprd_factory.path("bp.db"), {"keyPrefix": "a||b"}),
    }, "badprefix")
    assert rc != 0
    assert "badprefix" in d.log_text()


def test_invalid_yaml_is_fatal(daprd_factory):
    d, rc = start_expect_exit(daprd_factory, {
        "garbage.yaml": "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: [unclosed\n",
    }, "badyaml")
    assert rc != 0
    assert "garbage.yaml" in d.log_text()


def test_multi_document_file_and_scopes(daprd_factory):
    db = daprd_factory.path("multi.db")
    res = daprd_factory.resources({
        "two.yaml": multi_doc(memory_store("memone"), sqlite_store("sqltwo", db)),
        # Documents of other kinds in the same file are ignored by the
        # component loader.
        "mixed.yml": multi_doc(
            "apiVersion: dapr.io/v1alpha1\nkind: Subscription\nmetadata:\n  name: sub\n"
            "spec:\n  topic: t\n  routes:\n    default: /t\n  pubsubname: ps\n",
            memory_store("memthree")),
        "scoped-out.yaml": memory_store("otherapps", scopes=["someapp", "anotherapp"]),
        "scoped-in.yaml": memory_store("mine", scopes=["someapp", APP_ID]),
        # Not a .yaml/.yml file: skipped.
        "notes.txt": memory_store("fromtxt"),
    })
    os.makedirs(os.path.join(res, "sub"))
    with open(os.path.join(res, "sub", "nested.yaml"), "w") as f:
        f.write(memory_store("nested"))   # no recursion into sub-folders
    d = daprd_factory.start([res], name="multidoc")
    comps = components(d)
    assert set(comps) == {"memone", "sqltwo", "memthree", "mine"}, comps
    assert comps["memone"]["type"] == "state.in-memory"
    assert comps["sqltwo"]["type"] == "state.sqlite"
    c = d.client
    for store in ("memone", "sqltwo", "memthree", "mine"):
        assert c.post("/v1.0/state/%s" % store, json=[{"key": "k", "value": store}]).status == 204
        assert c.get("/v1.0/state/%s/k" % store).json() == store
    for store in ("otherapps", "fromtxt", "nested"):
        assert_error(c.get("/v1.0/state/%s/k" % store), 400, "ERR_STATE_STORE_NOT_FOUND",
                     "state store %s is not found" % store)


def test_several_resources_paths(daprd_factory):
    a = daprd_factory.resources({"a.yaml": memory_store("froma")})
    b = daprd_factory.resources({"b.yaml": memory_store("fromb")})
    d = daprd_factory.start([a, b], name="twopaths")
    assert set(components(d)) == {"froma", "fromb"}
