"""The planted-secret leak test: a unique secret reaches components through
secretKeyRef (a state.sqlite connection string, the probe store's
password, which the probe itself logs and quotes in errors on purpose),
daprd runs with --log-level debug --log-as-json, every API is exercised
including its failures and the metadata API, and then all of daprd's
output is searched for the secret: it must not be there."""

import json
import uuid

import pytest

from conftest import Daprd, component, have_plugin, secret_ref


@pytest.fixture(scope="module")
def planted():
    return "PLANTED-%s" % uuid.uuid4().hex


@pytest.fixture(scope="module")
def run(tmp_path_factory, planted):
    d = Daprd(tmp_path_factory.mktemp("secrets-leak"), args=["--log-as-json"])
    with_sqlite = have_plugin("state-sqlite")
    db = "%s/%s.db" % (d.workdir, planted)
    secrets = {
        "probe-password": planted,
        "sqlite": {"connectionString": db},
        "bad-duration": planted,
        "public": "not-a-secret",
    }
    store = component("localsecrets", "secretstores.local.file",
                      [("secretsFile", d.file("secrets.json", json.dumps(secrets))), ("multiValued", "true")])
    docs = [store,
            component("probe", "secretstores.probe", [("password", secret_ref("probe-password"))],
                      secret_store="localsecrets"),
            # init fails with an error that quotes the secret (ignoreErrors: daprd goes on)
            component("probefail", "secretstores.probe",
                      [("password", secret_ref("probe-password")), ("failInit", "true")],
                      secret_store="localsecrets", ignore_errors=True)]
    if with_sqlite:
        docs += [component("statestore", "state.sqlite",
                           [("connectionString", secret_ref("sqlite", "connectionString"))],
                           secret_store="localsecrets"),
                 # a secret in a field of the wrong type: the schema error must not echo it
                 component("badstate", "state.sqlite",
                           [("connectionString", d.workdir + "/other.db"),
                            ("timeout", secret_ref("bad-duration"))],
                           secret_store="localsecrets", ignore_errors=True)]
    d.write("components.yaml", "---\n".join(docs))
    d.set_config("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: leak\n"
                 "spec:\n  secrets:\n    scopes:\n"
                 "      - {storeName: localsecrets, deniedSecrets: [probe-password, sqlite, bad-duration]}\n")
    d.start()
    responses = []

    def call(method, path, body=None):
        r = d.client.request(method, path, body=body,
                             headers={"Content-Type": "application/json"} if body else None)
        responses.append((method, path, r))
        return r

    # the secrets API: successes and every failure
    call("GET", "/v1.0/secrets/probe/password")
    call("GET", "/v1.0/secrets/probe/fail-with-secret")
    call("GET", "/v1.0/secrets/probe/fail")
    call("GET", "/v1.0/secrets/probe/bulk")
    call("GET", "/v1.0/secrets/localsecrets/probe-password")   # denied by scope
    call("GET", "/v1.0/secrets/localsecrets/bulk")
    call("GET", "/v1.0/secrets/localsecrets/missing")
    call("GET", "/v1.0/secrets/nosuch/x")
    call("GET", "/v1.0/secrets/probefail/x")
    # metadata and other APIs
    call("GET", "/v1.0/metadata")
    call("PUT", "/v1.0/metadata/k", b"v")
    if with_sqlite:
        call("POST", "/v1.0/state/statestore", json.dumps([{"key": "a", "value": 1}]).encode())
        call("GET", "/v1.0/state/statestore/a")
        call("POST", "/v1.0/state/statestore", b"not json")
        call("POST", "/v1.0/state/statestore/transaction", json.dumps({"operations": [{"operation": "bad"}]}).encode())
        call("GET", "/v1.0/state/badstate/a")
    call("POST", "/v1.0/publish/nopubsub/topic", b"{}")
    call("GET", "/v1.0/invoke/nobody/method/x")
    rc = d.stop()
    return {"daprd": d, "responses": responses, "rc": rc, "sqlite": with_sqlite}


def test_daprd_ran_and_stopped_cleanly(run):
    assert run["rc"] == 0, run["daprd"].logs()


def test_secret_was_really_used(run, planted):
    """The test means something only if the secret reached the components
    and the careless probe tried to log it."""
    by_path = {(m, p): r for m, p, r in run["responses"]}
    r = by_path[("GET", "/v1.0/secrets/probe/password")]
    assert r.status == 200 and r.json() == {"password": planted}, r
    out = run["daprd"].output()
    assert "probe starting with password=***" in out, run["daprd"].logs()
    assert "cannot log in with password ***" in out, run["daprd"].logs()
    if run["sqlite"]:
        r = by_path[("GET", "/v1.0/state/statestore/a")]
        assert r.status == 200 and r.body == b"1", r
        assert "badstate" in out and "metadata field 'timeout' must be" in out


def test_planted_secret_never_in_output(run, planted):
    out = run["daprd"].output()
    assert out, "daprd wrote nothing"
    assert planted not in out, [ln for ln in out.splitlines() if planted in ln][:5]
    # no fragment long enough to matter either
    assert planted[:20] not in out


def test_output_is_json_lines(run):
    with open(run["daprd"].stdout_path, encoding="utf-8") as f:
        lines = [ln for ln in f if ln.strip()]
    assert lines
    for line in lines:
        assert isinstance(json.loads(line), dict), line


def test_planted_secret_not_in_error_or_metadata_responses(run, planted):
    for method, path, r in run["responses"]:
        if path == "/v1.0/secrets/probe/password":
            continue   # the one answer that is meant to hold it
        assert planted.encode() not in r.body, (method, path, r)
    errs = {p: r for m, p, r in run["responses"] if r.status >= 400}
    r = errs["/v1.0/secrets/probe/fail-with-secret"]
    assert r.json()["errorCode"] == "ERR_SECRET_GET" and "***" in r.json()["message"], r
    assert errs["/v1.0/secrets/localsecrets/probe-password"].json()["errorCode"] == "ERR_PERMISSION_DENIED"
    bulk = [r for m, p, r in run["responses"] if p == "/v1.0/secrets/localsecrets/bulk"][0]
    assert bulk.status == 200 and bulk.json() == {"public": {"public": "not-a-secret"}}, bulk
