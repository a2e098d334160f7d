"""A planted secret (resolved through secretKeyRef, like t/secrets) never
reaches exported spans: not from the component's metadata, not from the
secrets API's answer, and not from a dapr-* request header that Dapr copies
into span attributes (redacted to ***)."""

import json
import os
import uuid

import pytest

from conftest import World, zipkin_tracing


def test_planted_secret_not_exported(tmp_path, zipkin):
    if not any(os.path.isfile(os.path.join(d, "state-sqlite.so"))
               for d in os.environ.get("DAPR_TEST_PLUGINS_PATH", "").split(":") if d):
        pytest.skip("state-sqlite.so not built")
    planted = "PLANTED-%s" % uuid.uuid4().hex
    secrets_file = os.path.join(str(tmp_path), "secrets.json")
    db = os.path.join(str(tmp_path), "%s.db" % planted)
    with open(secrets_file, "w") as f:
        json.dump({"dbconn": db, "token": planted}, f)
    store = ("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: localsecrets\nspec:\n"
             "  type: secretstores.local.file\n  version: v1\n  metadata:\n"
             "  - name: secretsFile\n    value: %s\n" % json.dumps(secrets_file))
    state = ("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n"
             "  type: state.sqlite\n  version: v1\n  metadata:\n"
             "  - name: connectionString\n    secretKeyRef:\n      name: dbconn\n"
             "  - name: password\n    secretKeyRef:\n      name: token\n"
             "auth:\n  secretStore: localsecrets\n")
    w = World(tmp_path, zipkin_tracing(zipkin.port, "1"), resources=[store, state])
    d = w.daprd("secretspan")
    c = d.client
    r = c.get("/v1.0/secrets/localsecrets/token", headers={"dapr-planted": planted})
    assert r.status == 200 and planted in r.text, r
    assert c.post("/v1.0/state/statestore", json=[{"key": "k", "value": 1}]).status == 204
    assert c.get("/v1.0/state/statestore/k").status == 200
    c.get("/v1.0/state/statestore/k?metadata.password=%s" % planted)
    c.get("/v1.0/metadata")
    trace = r.header("traceparent").split("-")[1]
    assert d.stop() == 0
    raw = zipkin.raw_traces("secretspan")
    spans = [s for t in json.loads(raw) for s in t]
    assert len(spans) >= 5, raw[:2000]
    assert planted not in raw
    (sec,) = zipkin.trace(trace)
    assert sec["tags"]["dapr-planted"] == "***", sec
    assert sec["tags"]["db.system"] == "secrets", sec
