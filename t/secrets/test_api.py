"""The secrets HTTP API (reference §6): every route, Dapr's response
shapes and error codes, the local.file / local.env stores and the
Configuration's secret scopes, all on one daprd."""

import json

import pytest

from conftest import Daprd, assert_error, component, configuration

SECRETS = {
    "db": {"user": "alice", "pass": "pw-1", "nested": {"deep": "d"}},
    "token": "tok-123",
    "list": ["a", 2, 0.1, True, None],
    "a": "A",
    "b": "B",
    "c": "C",
}

MULTI = {
    "redis": {"host": "h", "password": "p", "tls": {"ca": "c"}},
    "plain": "only",
    "skipped-number": 5,
}

ENV = {
    "TESTSEC_ONE": "1",
    "TESTSEC_TWO": "two words",
    "TESTSEC_DAPR_X": "not daprd's",   # allowed: the name after the prefix is not the variable
    "DAPR_SECRET_THING": "never",     # daprd's namespace: never exposed
    "OTHER_VAR": "unprefixed",
}

SCOPES = [
    # allowedSecrets decides alone (deniedSecrets ignored when it is set)
    {"storeName": "allowlisted", "defaultAccess": "deny", "allowedSecrets": ["a", "b"], "deniedSecrets": ["a"]},
    {"storeName": "denylisted", "deniedSecrets": ["b"]},
    {"storeName": "denyall", "defaultAccess": "DENY"},
    {"storeName": "allowall", "defaultAccess": "allow"},
]


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    d = Daprd(tmp_path_factory.mktemp("secrets-api"), env=ENV)
    f = d.file("secrets.json", json.dumps(SECRETS))
    m = d.file("multi.json", json.dumps(MULTI))
    d.write("stores.yaml", "---\n".join([
        component("localsecrets", "secretstores.local.file", [("secretsFile", f)]),
        component("slashed", "secretstores.local.file", [("secretsFile", f), ("nestedSeparator", "/")]),
        component("multi", "secretstores.local.file", [("secretsFile", m), ("multiValued", "true")]),
        component("envsecrets", "secretstores.local.env", [("prefix", "TESTSEC_")]),
        component("allenv", "secretstores.local.env"),
        component("probe", "secretstores.probe"),
        component("allowlisted", "secretstores.local.file", [("secretsFile", f)]),
        component("denylisted", "secretstores.local.file", [("secretsFile", f)]),
        component("denyall", "secretstores.local.file", [("secretsFile", f)]),
        component("allowall", "secretstores.local.file", [("secretsFile", f)]),
    ]))
    d.set_config(configuration(SCOPES))
    d.start()
    yield d
    d.stop()


def get(d, path):
    return d.client.get("/v1.0/secrets/" + path)


def ok_json(r):
    assert r.status == 200, r
    assert r.content_type == "application/json", r.headers.get("Content-Type")
    return r.json()


# ---- local.file ---------------------------------------------------------------

def test_get_single_value(d):
    assert ok_json(get(d, "localsecrets/token")) == {"token": "tok-123"}


def test_nested_names_use_the_separator(d):
    assert ok_json(get(d, "localsecrets/db:user")) == {"db:user": "alice"}
    assert ok_json(get(d, "localsecrets/db:nested:deep")) == {"db:nested:deep": "d"}
    assert ok_json(get(d, "slashed/db%2Fnested%2Fdeep")) == {"db/nested/deep": "d"}
    # the object itself is not a secret when flattened
    assert_error(get(d, "localsecrets/db"), 500, "ERR_SECRET_GET")


def test_arrays_and_non_string_leaves(d):
    assert ok_json(get(d, "localsecrets/list:0")) == {"list:0": "a"}
    assert ok_json(get(d, "localsecrets/list:1")) == {"list:1": "2"}
    assert ok_json(get(d, "localsecrets/list:2")) == {"list:2": "0.1"}
    assert ok_json(get(d, "localsecrets/list:3")) == {"list:3": "true"}
    assert ok_json(get(d, "localsecrets/list:4")) == {"list:4": ""}


def test_missing_secret_is_err_secret_get(d):
    assert_error(get(d, "localsecrets/nope"), 500, "ERR_SECRET_GET",
                 "failed getting secret with key nope from secret store localsecrets: secret nope not found")


def test_bulk_flattened(d):
    body = ok_json(get(d, "localsecrets/bulk"))
    assert body["db:pass"] == {"db:pass": "pw-1"}
    assert body["token"] == {"token": "tok-123"}
    assert body["list:1"] == {"list:1": "2"}
    assert set(body) == {"db:user", "db:pass", "db:nested:deep", "token", "a", "b", "c",
                         "list:0", "list:1", "list:2", "list:3", "list:4"}
    # Go's map order: keys sorted in the JSON text
    assert list(json.loads(get(d, "localsecrets/bulk").text)) == sorted(body)


def test_multivalued(d):
    assert ok_json(get(d, "multi/redis")) == {"host": "h", "password": "p", "tls:ca": "c"}
    assert ok_json(get(d, "multi/plain")) == {"plain": "only"}
    assert_error(get(d, "multi/skipped-number"), 500, "ERR_SECRET_GET")
    assert ok_json(get(d, "multi/bulk")) == {
        "redis": {"host": "h", "password": "p", "tls:ca": "c"},
        "plain": {"plain": "only"},
    }


def test_metadata_capabilities(d):
    comps = {c["name"]: c for c in ok_json(d.client.get("/v1.0/metadata"))["components"]}
    assert comps["multi"]["type"] == "secretstores.local.file"
    assert comps["multi"]["capabilities"] == ["MULTIPLE_KEY_VALUES_PER_SECRET"]
    assert "capabilities" not in comps["localsecrets"]
    assert comps["envsecrets"]["type"] == "secretstores.local.env"


# ---- local.env ------------------------------------------------------------------

def test_env_get(d):
    assert ok_json(get(d, "envsecrets/ONE")) == {"ONE": "1"}
    assert ok_json(get(d, "envsecrets/TWO")) == {"TWO": "two words"}
    # unset: an empty value, not an error (as in Dapr)
    assert ok_json(get(d, "envsecrets/UNSET_VARIABLE")) == {"UNSET_VARIABLE": ""}


def test_env_never_exposes_daprd_variables(d):
    assert ok_json(get(d, "allenv/DAPR_SECRET_THING")) == {"DAPR_SECRET_THING": ""}
    assert ok_json(get(d, "allenv/dapr_secret_thing")) == {"dapr_secret_thing": ""}
    assert ok_json(get(d, "allenv/OTHER_VAR")) == {"OTHER_VAR": "unprefixed"}
    bulk = ok_json(get(d, "allenv/bulk"))
    assert bulk["OTHER_VAR"] == {"OTHER_VAR": "unprefixed"}
    assert not [k for k in bulk if k.upper().startswith("DAPR_") or k.upper() == "APP_API_TOKEN"]


def test_env_bulk_strips_the_prefix(d):
    assert ok_json(get(d, "envsecrets/bulk")) == {
        "ONE": {"ONE": "1"},
        "TWO": {"TWO": "two words"},
        "DAPR_X": {"DAPR_X": "not daprd's"},
    }


# ---- errors and routing ------------------------------------------------------------

def test_unknown_store_is_401(d):
    assert_error(get(d, "nosuchstore/token"), 401, "ERR_SECRET_STORE_NOT_FOUND",
                 "failed finding secret store with key nosuchstore")
    assert_error(get(d, "nosuchstore/bulk"), 401, "ERR_SECRET_STORE_NOT_FOUND",
                 "failed finding secret store with key nosuchstore")


def test_plugin_failures(d):
    assert_error(get(d, "probe/fail"), 500, "ERR_SECRET_GET",
                 "failed getting secret with key fail from secret store probe: backend down")
    assert_error(get(d, "probe/missing"), 500, "ERR_SECRET_GET",
                 "failed getting secret with key missing from secret store probe: secret not found")
    assert_error(get(d, "probe/bulk?metadata.fail=1"), 500, "ERR_SECRET_GET",
                 "failed getting secrets from secret store probe: bulk backend down")


def test_no_data_is_204(d):
    r = get(d, "probe/empty")
    assert r.status == 204 and r.body == b"", r


def test_metadata_query_params_reach_the_plugin(d):
    body = ok_json(get(d, "probe/echo-metadata?metadata.namespace=ns1&metadata.version_id=7&other=x"))
    assert body == {"namespace": "ns1", "version_id": "7"}
    bulk = ok_json(get(d, "probe/bulk?metadata.a=1"))
    assert bulk == {"alpha": {"alpha": "1"}, "beta": {"b1": "x", "b2": "y"}, "metadata": {"a": "1"}}


def test_blocking_plugin_and_plain_names(d):
    # the probe is not NONBLOCKING: it runs on the worker pool
    assert ok_json(get(d, "probe/hello%20world")) == {"hello world": "value-of-hello world"}


def test_bulk_is_the_fixed_word(d):
    # a secret literally named "bulk" is unreachable, as in Dapr
    assert set(ok_json(get(d, "probe/bulk"))) == {"alpha", "beta", "metadata"}


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_other_methods_are_not_secrets_routes(d, method):
    # unmatched routes go to service invocation (reference §13.1)
    r = d.client.request(method, "/v1.0/secrets/localsecrets/token")
    assert r.status != 200 and b"tok-123" not in r.body, r
    assert r.json().get("errorCode") == "ERR_DIRECT_INVOKE", r


# ---- scopes ------------------------------------------------------------------------------

def test_scope_allowed_list_decides_alone(d):
    assert ok_json(get(d, "allowlisted/a")) == {"a": "A"}   # also denied, but allowed wins
    assert ok_json(get(d, "allowlisted/b")) == {"b": "B"}
    assert_error(get(d, "allowlisted/c"), 403, "ERR_PERMISSION_DENIED",
                 'access denied by policy to get "c" from "allowlisted"')
    # a denied key is refused before the store is asked: even a missing one
    assert_error(get(d, "allowlisted/nope"), 403, "ERR_PERMISSION_DENIED")
    assert ok_json(get(d, "allowlisted/bulk")) == {"a": {"a": "A"}, "b": {"b": "B"}}


def test_scope_denied_list(d):
    assert ok_json(get(d, "denylisted/a")) == {"a": "A"}
    assert_error(get(d, "denylisted/b"), 403, "ERR_PERMISSION_DENIED",
                 'access denied by policy to get "b" from "denylisted"')
    bulk = ok_json(get(d, "denylisted/bulk"))
    assert "b" not in bulk and bulk["a"] == {"a": "A"} and bulk["c"] == {"c": "C"}


def test_scope_default_deny(d):
    assert_error(get(d, "denyall/a"), 403, "ERR_PERMISSION_DENIED",
                 'access denied by policy to get "a" from "denyall"')
    assert_error(get(d, "denyall/db:user"), 403, "ERR_PERMISSION_DENIED",
                 'access denied by policy to get "db:user" from "denyall"')
    r = get(d, "denyall/bulk")
    assert ok_json(r) == {}


def test_scope_default_allow_and_unscoped(d):
    assert ok_json(get(d, "allowall/c")) == {"c": "C"}
    assert ok_json(get(d, "localsecrets/c")) == {"c": "C"}


def test_permission_message_quotes_like_go(d):
    r = get(d, 'denyall/we%22ird%5Ckey')
    assert_error(r, 403, "ERR_PERMISSION_DENIED",
                 'access denied by policy to get "we\\"ird\\\\key" from "denyall"')


# ---- no secret stores at all -------------------------------------------------------------

def test_no_secret_stores_configured(daprd_factory):
    d = daprd_factory("empty")
    d.start()
    assert_error(get(d, "any/key"), 500, "ERR_SECRET_STORES_NOT_CONFIGURED", "secret store is not configured")
    assert_error(get(d, "any/bulk"), 500, "ERR_SECRET_STORES_NOT_CONFIGURED", "secret store is not configured")


# ---- Configuration validation ------------------------------------------------------------

@pytest.mark.parametrize("scopes,needle", [
    ([{"storeName": "s", "defaultAccess": "maybe"}], 'can be either allow or deny'),
    ([{"storeName": "s"}, {"storeName": "s"}], 'storeName is repeated in secrets configuration'),
    ([{"storeName": "s", "allowedSecrets": "a"}], "allowedSecrets must be a list of strings"),
])
def test_bad_secret_scopes_stop_daprd(daprd_factory, scopes, needle):
    d = daprd_factory("badcfg")
    d.set_config(configuration(scopes))
    assert d.run_to_exit() != 0
    assert needle in d.output(), d.logs()
