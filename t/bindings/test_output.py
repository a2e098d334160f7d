"""Output bindings over HTTP (reference §5.1) with bindings.localstorage
(§5.3): the route, Dapr's error paths, data encoding, and the containment
of file names in rootPath."""

import base64
import json
import os

import pytest

from conftest import assert_error, component


@pytest.fixture
def store(world):
    root = world.path("root")
    outside = world.path("outside")
    os.makedirs(outside)
    with open(os.path.join(outside, "secret.txt"), "w") as f:
        f.write("SECRET-CONTENT")
    d = world.daprd([component("files", "bindings.localstorage", {"rootPath": root}),
                     component("tick", "bindings.cron", {"schedule": "@every 1h"})])
    d.root, d.outside = root, outside
    return d


def create(d, name, data, op="create"):
    body = {"operation": op, "metadata": {"fileName": name}}
    if data is not None:
        body["data"] = data
    return d.invoke("files", body)


def read_file(d, name):
    with open(os.path.join(d.root, name), "rb") as f:
        return f.read()


def test_create_get_list_delete(store):
    r = create(store, "notes/a.txt", "plain text")
    assert r.status == 200, r
    assert r.content_type == "application/json"
    assert r.json() == {"fileName": "notes/a.txt"}
    # Dapr strips one level of JSON string quoting
    assert read_file(store, "notes/a.txt") == b"plain text"

    r = store.invoke("files", {"operation": "get", "metadata": {"fileName": "notes/a.txt"}})
    assert r.status == 200 and r.body == b"plain text", r
    assert r.content_type == "application/json"   # always, as Dapr

    create(store, "notes/b.json", {"k": [1, 2.5, "x"], "a": None})
    assert read_file(store, "notes/b.json") == b'{"a":null,"k":[1,2.5,"x"]}'   # re-encoded, keys sorted

    r = store.invoke("files", {"operation": "list", "metadata": {"fileName": "notes"}})
    assert r.status == 200, r
    assert r.json() == [os.path.join(store.root, "notes", "a.txt"), os.path.join(store.root, "notes", "b.json")]
    r = store.invoke("files", {"operation": "list"})
    assert len(r.json()) == 2

    r = store.invoke("files", {"operation": "delete", "metadata": {"fileName": "notes/a.txt"}})
    assert r.status == 204 and r.body == b"", r
    assert not os.path.exists(os.path.join(store.root, "notes", "a.txt"))
    r = store.invoke("files", {"operation": "get", "metadata": {"fileName": "notes/a.txt"}})
    assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING", "file not found")
    r = store.invoke("files", {"operation": "delete", "metadata": {"fileName": "notes/a.txt"}})
    assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING", "error deleting file")
    # an empty folder lists as null (a nil Go slice)
    os.makedirs(os.path.join(store.root, "empty"))
    r = store.invoke("files", {"operation": "list", "metadata": {"fileName": "empty"}})
    assert r.status == 200 and r.body == b"null", r


def test_base64_and_quoting(store):
    create(store, "b64.bin", base64.b64encode(b"\x00\x01binary\xff").decode())
    assert read_file(store, "b64.bin") == b"\x00\x01binary\xff"
    # escapes are undone as Go's strconv.Unquote does
    create(store, "esc.txt", 'line1\nline2 "q" \\ \u00e9')
    assert read_file(store, "esc.txt") == 'line1\nline2 "q" \\ \u00e9'.encode()
    # text that happens to be base64 is decoded too (Dapr does the same)
    create(store, "word.txt", "test")
    assert read_file(store, "word.txt") == base64.b64decode("test")
    # numbers are re-encoded like Go's float64 ...
    create(store, "num.txt", 2.50)
    assert read_file(store, "num.txt") == b"2.5"
    # ... and 20 digits happen to be valid base64 as well
    create(store, "big.txt", 12345678901234567890)
    assert read_file(store, "big.txt") == base64.b64decode("12345678901234567000")
    # no data: Dapr's JSON null, which is itself valid base64
    create(store, "none.txt", None)
    assert read_file(store, "none.txt") == base64.b64decode("null")


def test_create_without_file_name_and_put(store):
    r = store.invoke("files", {"operation": "create", "data": "x y"}, method="PUT")
    assert r.status == 200, r
    name = r.json()["fileName"]
    assert len(name) == 36 and name.count("-") == 4, name
    assert read_file(store, name) == b"x y"


@pytest.mark.parametrize("name", ["../escape.txt", "a/../../escape.txt", "/etc/passwd",
                                  "/tmp/escape.txt"])
def test_traversal_refused(store, name):
    for op in ("create", "get", "delete", "list"):
        r = store.invoke("files", {"operation": op, "data": "x", "metadata": {"fileName": name}})
        assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING", "outside rootPath")
    assert not os.path.exists(os.path.join(os.path.dirname(store.root), "escape.txt"))


def test_symlinks_leading_out_refused(store):
    os.makedirs(store.root, exist_ok=True)
    os.symlink(store.outside, os.path.join(store.root, "out"))                  # absolute, a folder
    os.symlink("../outside/secret.txt", os.path.join(store.root, "leak.txt"))  # relative, a file
    for name in ("out/secret.txt", "leak.txt"):
        r = store.invoke("files", {"operation": "get", "metadata": {"fileName": name}})
        body = assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING")
        assert "outside rootPath" in body["message"], body
        assert "SECRET-CONTENT" not in r.text, r   # nothing read from there
        r = create(store, name, "overwritten")
        assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING", "outside rootPath")
    r = create(store, "out/new.txt", "x")
    assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING", "outside rootPath")
    r = store.invoke("files", {"operation": "list", "metadata": {"fileName": "out"}})
    assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING", "outside rootPath")
    r = store.invoke("files", {"operation": "delete", "metadata": {"fileName": "out/secret.txt"}})
    assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING", "outside rootPath")
    with open(os.path.join(store.outside, "secret.txt")) as f:
        assert f.read() == "SECRET-CONTENT"
    assert sorted(os.listdir(store.outside)) == ["secret.txt"]
    # a listing shows the links themselves, never what is behind them
    r = store.invoke("files", {"operation": "list"})
    assert sorted(r.json()) == [os.path.join(store.root, "leak.txt"), os.path.join(store.root, "out")]
    # deleting a link removes the link only
    r = store.invoke("files", {"operation": "delete", "metadata": {"fileName": "leak.txt"}})
    assert r.status == 204, r
    assert os.path.exists(os.path.join(store.outside, "secret.txt"))


def test_names_inside_are_normalised(store):
    r = create(store, "a/./b/../c.txt", "v")
    assert r.status == 200 and r.json() == {"fileName": "a/c.txt"}, r
    assert read_file(store, "a/c.txt") == b"v"


def test_request_errors(store):
    # not JSON, not an object, wrong field types: 400 ERR_MALFORMED_REQUEST
    for body in ("{", "", "[1]", '"x"', '{"operation": 3}', '{"metadata": "x", "operation": "get"}',
                 '{"operation": "get", "metadata": {"fileName": 1}}'):
        assert_error(store.invoke("files", body), 400, "ERR_MALFORMED_REQUEST")
    # everything else: 500 ERR_INVOKE_OUTPUT_BINDING with Dapr's messages
    assert_error(store.invoke("files", {"data": 1}), 500, "ERR_INVOKE_OUTPUT_BINDING",
                 "error invoking output binding files: operation field is missing from request")
    assert_error(store.invoke("files", "null"), 500, "ERR_INVOKE_OUTPUT_BINDING", "operation field is missing")
    assert_error(store.invoke("nosuch", {"operation": "get"}), 500, "ERR_INVOKE_OUTPUT_BINDING",
                 "error invoking output binding nosuch: couldn't find output binding nosuch")
    assert_error(store.invoke("files", {"operation": "append"}), 500, "ERR_INVOKE_OUTPUT_BINDING",
                 "binding files does not support operation append. supported operations:create get list delete")
    # operations are case-sensitive, as in Dapr
    assert_error(store.invoke("files", {"operation": "GET"}), 500, "ERR_INVOKE_OUTPUT_BINDING", "does not support")
    # an input-only binding is no output binding
    assert_error(store.invoke("tick", {"operation": "create"}), 500, "ERR_INVOKE_OUTPUT_BINDING",
                 "couldn't find output binding tick")
    # field names match case-insensitively, as Go's decoder does
    r = store.invoke("files", {"Operation": "create", "DATA": "ci", "Metadata": {"fileName": "ci.txt"}})
    assert r.status == 200, r
    assert read_file(store, "ci.txt") == b"ci"


def test_metadata_api_lists_bindings(store):
    r = store.client.get("/v1.0/metadata")
    comps = {c["name"]: c for c in r.json()["components"]}
    assert comps["files"]["type"] == "bindings.localstorage"
    assert comps["files"]["capabilities"] == ["OUTPUT_BINDING"]
    assert comps["tick"]["capabilities"] == ["INPUT_BINDING"]


def test_root_path_checks(world):
    d = world.daprd([component("files", "bindings.localstorage", {"rootPath": "/proc/self"})], start=False)
    d._popen(d.command(0), dict(os.environ, HOME=world.path("home")))
    assert d.proc.wait(timeout=20) != 0
    assert "rootPath points to a disallowed location" in d.log_text()
    d.stop()
    f = world.path("afile")
    open(f, "w").close()
    d = world.daprd([component("files", "bindings.localstorage", {"rootPath": f})], start=False, name="d2")
    d._popen(d.command(0), dict(os.environ, HOME=world.path("home")))
    assert d.proc.wait(timeout=20) != 0
    assert "represents a file and not a directory" in d.log_text()
    d.stop()
    # a relative rootPath is relative to daprd's folder, and created
    d = world.daprd([component("files", "bindings.localstorage", {"rootPath": "rel/dir"})], name="d3")
    r = d.invoke("files", {"operation": "create", "data": "r", "metadata": {"fileName": "f"}})
    assert r.status == 200, r
    with open(world.path("d3", "rel", "dir", "f")) as fh:
        assert fh.read() == "r"
