"""Shared helpers for the secrets tests (reference §6, §9.4).

Each test builds a small world in a temporary folder: a resources folder
of Component manifests, optionally a Configuration, secret files, and one
daprd on 127.0.0.1 and a free port.  HOME is a temporary folder too.
Paths come from the environment (t/secrets/run.sh sets them):

  DAPRD                    the daprd binary
  DAPR_TEST_PLUGINS_PATH   colon-separated folders holding the plugin .so
                           files (secret stores, the probe store, state.sqlite)

Readiness is decided by polling healthz, never by sleeping; daprd is
stopped by its PID (SIGTERM, then SIGKILL) and its output kept in files
that failing tests print.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import time

import pytest

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
REQUEST_TIMEOUT = 15.0

_running = []


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    @property
    def content_type(self):
        ct = self.headers.get("Content-Type")
        return ct.split(";")[0].strip().lower() if ct else None

    def __repr__(self):
        return "<Response %d %s>" % (self.status, self.text[:400])


class Client:
    def __init__(self, port):
        self.port = port

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return Response(r.status, r.headers, r.read())
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post_json(self, path, value):
        return self.request("POST", path, body=json.dumps(value).encode(),
                            headers={"Content-Type": "application/json"})


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def plugin_dirs():
    raw = os.environ.get("DAPR_TEST_PLUGINS_PATH", "")
    return [d for d in raw.split(":") if d and os.path.isdir(d)]


def have_plugin(name):
    """Is <name>.so in one of the plugin folders (e.g. "state-sqlite")?"""
    return any(os.path.isfile(os.path.join(d, name + ".so")) for d in plugin_dirs())


def daprd_path():
    path = os.environ.get("DAPRD")
    if not path or not os.access(path, os.X_OK):
        pytest.fail("DAPRD must name the built daprd binary (t/secrets/run.sh sets it)", pytrace=False)
    return path


def component(name, type_, metadata=(), secret_store=None, ignore_errors=False, scopes=None):
    """A Component manifest.  metadata: (name, value) pairs, where value
    is a string or a dict such as {"secretKeyRef": {"name": n, "key": k}}
    or {"envRef": "VAR"}."""
    lines = ["apiVersion: dapr.io/v1alpha1", "kind: Component", "metadata:", "  name: %s" % name,
             "spec:", "  type: %s" % type_, "  version: v1"]
    if ignore_errors:
        lines.append("  ignoreErrors: true")
    if metadata:
        lines.append("  metadata:")
        for k, v in metadata:
            lines.append("  - name: %s" % k)
            if isinstance(v, dict):
                for vk, vv in v.items():
                    lines.append("    %s: %s" % (vk, json.dumps(vv)))
            else:
                lines.append("    value: %s" % json.dumps(str(v)))
    if secret_store:
        lines += ["auth:", "  secretStore: %s" % secret_store]
    if scopes:
        lines.append("scopes: %s" % json.dumps(scopes))
    return "\n".join(lines) + "\n"


def secret_ref(name, key=None):
    ref = {"name": name}
    if key is not None:
        ref["key"] = key
    return {"secretKeyRef": ref}


def configuration(scopes=None, extra=""):
    text = ("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: secrets-test\nspec:\n")
    if scopes is not None:
        text += "  secrets:\n    scopes:\n"
        for s in scopes:
            text += "      - %s\n" % json.dumps(s)
    text += extra
    if scopes is None and not extra:
        text += "  {}\n"
    return text


def _tail(path, limit=8000):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return "(no log)"
    text = data.decode("utf-8", "replace")
    return text if len(text) <= limit else "...\n" + text[-limit:]


class Daprd:
    def __init__(self, workdir, app_id="secretsapp", args=(), env=None):
        self.workdir = str(workdir)
        self.app_id = app_id
        self.args = list(args)
        self.env_extra = dict(env or {})
        self.resources = os.path.join(self.workdir, "resources")
        self.home = os.path.join(self.workdir, "home")
        os.makedirs(self.resources, exist_ok=True)
        os.makedirs(self.home, exist_ok=True)
        self.stdout_path = os.path.join(self.workdir, "daprd.stdout.log")
        self.stderr_path = os.path.join(self.workdir, "daprd.stderr.log")
        self.proc = None
        self.port = None
        self.client = None
        self.config = None

    def write(self, filename, text):
        path = os.path.join(self.resources, filename)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def file(self, filename, text):
        """A file in the work folder (not a manifest); returns its path."""
        path = os.path.join(self.workdir, filename)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def set_config(self, text):
        self.config = self.file("config.yaml", text)

    def command(self):
        cmd = [daprd_path(), "--app-id", self.app_id, "--dapr-http-port", str(self.port),
               "--dapr-internal-grpc-port", "0", "--dapr-listen-addresses", "127.0.0.1",
               "--resources-path", self.resources, "--log-level", "debug"]
        if self.config:
            cmd += ["--config", self.config]
        for d in plugin_dirs():
            cmd += ["--plugins-dir", d]
        return cmd + self.args

    def spawn(self):
        env = dict(os.environ)
        for k in ("DAPR_API_TOKEN", "APP_API_TOKEN", "NAMESPACE", "DAPR_PLUGINS_PATH"):
            env.pop(k, None)
        env["HOME"] = self.home
        env.update(self.env_extra)
        self.port = free_port()
        self._out = open(self.stdout_path, "ab")
        self._err = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=self._out, stderr=self._err,
                                     stdin=subprocess.DEVNULL, env=env, cwd=self.workdir)
        _running.append(self)
        self.client = Client(self.port)

    def start(self):
        """Start and wait for healthz 204; fails the test if daprd exits."""
        for attempt in range(3):
            self.spawn()
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                rc = self.proc.poll()
                if rc is not None:
                    self._closed()
                    if "address already in use" in self.output().lower() and attempt < 2:
                        break
                    pytest.fail("daprd exited with code %d at start-up\n%s" % (rc, self.logs()),
                                pytrace=False)
                try:
                    if self.client.get("/v1.0/healthz").status == 204:
                        return self
                except (OSError, http.client.HTTPException):
                    pass
                time.sleep(0.02)
            else:
                self.stop()
                pytest.fail("daprd did not become healthy\n%s" % self.logs(), pytrace=False)
        pytest.fail("daprd could not find a free port", pytrace=False)

    def run_to_exit(self, timeout=START_TIMEOUT):
        """Start daprd expecting it to fail: returns its exit code."""
        self.spawn()
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail("daprd kept running; expected a start-up failure\n%s" % self.logs(),
                        pytrace=False)
        self._closed()
        return rc

    def _closed(self):
        for f in (getattr(self, "_out", None), getattr(self, "_err", None)):
            if f and not f.closed:
                f.close()
        if self in _running:
            _running.remove(self)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._closed()
        return self.proc.returncode if self.proc else None

    def output(self):
        """Everything daprd wrote so far (stdout and stderr)."""
        out = b""
        for p in (self.stdout_path, self.stderr_path):
            try:
                with open(p, "rb") as f:
                    out += f.read()
            except OSError:
                pass
        return out.decode("utf-8", "replace")

    def logs(self):
        return "---- stdout\n%s\n---- stderr\n%s" % (_tail(self.stdout_path), _tail(self.stderr_path))


@pytest.fixture
def daprd_factory(tmp_path):
    made = []

    def make(name="d", **kw):
        d = Daprd(tmp_path / name, **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()


def assert_error(r, status, code, message=None):
    """Dapr's error body: exact status and errorCode, message equal to
    `message` when given."""
    assert r.status == status, "expected %d %s, got %r" % (status, code, r)
    assert r.content_type == "application/json", r.headers.get("Content-Type")
    body = r.json()
    assert body.get("errorCode") == code, body
    assert isinstance(body.get("message"), str), body
    if message is not None:
        assert body["message"] == message, body
    return body


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when in ("setup", "call"):
        for d in list(_running):
            report.sections.append(("daprd %s" % d.workdir, d.logs()))


def pytest_sessionfinish(session, exitstatus):
    for d in list(_running):
        d.stop()
