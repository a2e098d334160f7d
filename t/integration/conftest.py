"""Shared fixtures for the daprd HTTP integration tests.

Each test talks to a real daprd started here on 127.0.0.1 and a free port,
with a temporary resources folder holding component manifests that the
test writes.  Paths come from the environment:

  DAPRD                    the daprd binary (required)
  DAPR_TEST_PLUGINS_PATH   colon-separated folders holding the plugin .so files

Readiness is decided by polling GET /v1.0/healthz, never by sleeping.  The
process is stopped by its PID (SIGTERM, then SIGKILL).  Its stdout and
stderr go to files whose tails are attached to failing tests' reports.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import time

import pytest

APP_ID = "myapp"
START_TIMEOUT = 15.0     # seconds until healthz must answer 204
STOP_TIMEOUT = 10.0      # seconds between SIGTERM and SIGKILL
REQUEST_TIMEOUT = 15.0   # per HTTP request

# Every daprd started by this run and not yet stopped; their logs are
# attached to the report of a failing test.
_running = []


# ---- manifests ---------------------------------------------------------------

def component_yaml(name, ctype, metadata=None, version="v1", scopes=None, ignore_errors=None):
    """One Component document.  metadata is a dict of name -> string value."""
    lines = [
        "apiVersion: dapr.io/v1alpha1",
        "kind: Component",
        "metadata:",
        "  name: %s" % name,
        "spec:",
        "  type: %s" % ctype,
        "  version: %s" % version,
    ]
    if ignore_errors is not None:
        lines.append("  ignoreErrors: %s" % ("true" if ignore_errors else "false"))
    if metadata:
        lines.append("  metadata:")
        for k, v in metadata.items():
            lines.append("  - name: %s" % k)
            lines.append("    value: %s" % json.dumps(str(v)))
    if scopes is not None:
        lines.append("scopes:")
        for s in scopes:
            lines.append("- %s" % s)
    return "\n".join(lines) + "\n"


def memory_store(name="statestore", **kw):
    return component_yaml(name, "state.in-memory", **kw)


def sqlite_store(name, path, extra=None, **kw):
    md = {"connectionString": str(path)}
    md.update(extra or {})
    return component_yaml(name, "state.sqlite", metadata=md, **kw)


def write_resources(directory, files):
    """files: dict of file name -> YAML text (documents joined with ---)."""
    os.makedirs(str(directory), exist_ok=True)
    for fname, text in files.items():
        with open(os.path.join(str(directory), fname), "w", encoding="utf-8") as f:
            f.write(text)
    return str(directory)


def multi_doc(*docs):
    return "---\n".join(docs)


# ---- HTTP client -------------------------------------------------------------

class Response:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers   # http.client.HTTPMessage: case-insensitive get()
        self.body = body

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def header(self, name):
        return self.headers.get(name)

    @property
    def content_type(self):
        ct = self.headers.get("Content-Type")
        return ct.split(";")[0].strip().lower() if ct else None

    def __repr__(self):
        body = self.text
        if len(body) > 400:
            body = body[:400] + "..."
        return "<Response %d %s>" % (self.status, body)


class Client:
    """A small HTTP/1.1 client; one connection per request keeps tests
    independent of keep-alive behaviour."""

    def __init__(self, port, host="127.0.0.1", headers=None):
        self.host = host
        self.port = port
        self.default_headers = dict(headers or {})

    def request(self, method, path, body=None, headers=None, json_body=None):
        hdrs = dict(self.default_headers)
        hdrs.update(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode("utf-8")
            hdrs.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode("utf-8")
        conn = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT)
        try:
            # skip_host/accept_encoding defaults are fine; the path is sent
            # verbatim, so tests can send repeated slashes and raw escapes.
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            data = r.read()
            return Response(r.status, r.reason, r.headers, data)
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, json=None, **kw):
        return self.request("POST", path, json_body=json, **kw)

    def put(self, path, json=None, **kw):
        return self.request("PUT", path, json_body=json, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


# ---- daprd process -----------------------------------------------------------

def _daprd_path():
    path = os.environ.get("DAPRD")
    if not path:
        pytest.fail("DAPRD is not set: point it at the built daprd binary "
                    "(e.g. DAPRD=$builddir/core/daprd); t/integration/run.sh does this for make check",
                    pytrace=False)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail("DAPRD=%s is not an executable file: build daprd first (make)" % path, pytrace=False)
    return path


def _plugin_dirs():
    raw = os.environ.get("DAPR_TEST_PLUGINS_PATH", "")
    return [d for d in raw.split(":") if d]


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def _tail(path, limit=6000):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return "(no log at %s)" % path
    text = data.decode("utf-8", "replace")
    return text if len(text) <= limit else "...\n" + text[-limit:]


class DaprdExited(Exception):
    pass


class Daprd:
    """One daprd process.  Use start(); stop() is idempotent."""

    def __init__(self, workdir, resources=(), app_id=APP_ID, args=(), env=None, name="daprd",
                 plugin_dirs=None):
        self.workdir = str(workdir)
        self.resources = [str(r) for r in resources]
        self.app_id = app_id
        self.args = list(args)
        self.env_extra = dict(env or {})
        self.name = name
        self.plugin_dirs = _plugin_dirs() if plugin_dirs is None else plugin_dirs
        self.proc = None
        self.port = None
        self.client = None
        self.returncode = None
        os.makedirs(self.workdir, exist_ok=True)
        self.stdout_path = os.path.join(self.workdir, name + ".stdout.log")
        self.stderr_path = os.path.join(self.workdir, name + ".stderr.log")

    def command(self, port):
        cmd = [_daprd_path(), "--app-id", self.app_id, "--dapr-http-port", str(port),
               "--dapr-listen-addresses", "127.0.0.1", "--log-level", "debug"]
        for r in self.resources:
            cmd += ["--resources-path", r]
        for d in self.plugin_dirs:
            cmd += ["--plugins-dir", d]
        return cmd + self.args

    def logs(self):
        return ("---- %s stdout (%s)\n%s\n---- %s stderr (%s)\n%s" %
                (self.name, self.stdout_path, _tail(self.stdout_path),
                 self.name, self.stderr_path, _tail(self.stderr_path)))

    def log_text(self):
        out = []
        for p in (self.stdout_path, self.stderr_path):
            try:
                with open(p, "rb") as f:
                    out.append(f.read().decode("utf-8", "replace"))
            except OSError:
                pass
        return "\n".join(out)

    def spawn(self, port):
        env = dict(os.environ)
        env.pop("DAPR_API_TOKEN", None)   # only tests that ask for it get a token
        env.update(self.env_extra)
        # Append: a restart keeps the earlier run's log for failure messages.
        self._out = open(self.stdout_path, "ab")
        self._err = open(self.stderr_path, "ab")
        self.port = port
        self.proc = subprocess.Popen(self.command(port), stdout=self._out, stderr=self._err,
                                     stdin=subprocess.DEVNULL, env=env, cwd=self.workdir)
        self.returncode = None
        _running.append(self)
        self.client = Client(port)

    def start(self, attempts=3):
        """Start and wait until healthz answers 204.  Retries with another
        port when the one picked was taken in between."""
        for attempt in range(attempts):
            self.spawn(free_port())
            try:
                self.wait_healthy()
                return self
            except DaprdExited as e:
                log = self.log_text().lower()
                clash = "address already in use" in log or "eaddrinuse" in log
                if clash and attempt + 1 < attempts:
                    continue
                pytest.fail("%s\n%s" % (e, self.logs()), pytrace=False)
        return self

    def wait_healthy(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                self._closed(rc)
                raise DaprdExited("daprd (%s) exited with code %d before becoming healthy: %s"
                                  % (self.name, rc, " ".join(self.command(self.port))))
            try:
                r = Client(self.port).get("/v1.0/healthz")
                if r.status == 204:
                    return
                last = r
            except (OSError, http.client.HTTPException) as e:
                last = e
            time.sleep(0.02)   # polling interval, not a readiness guess
        self.stop()
        pytest.fail("daprd (%s) did not answer GET /v1.0/healthz with 204 within %.0f s (last: %r)\n%s"
                    % (self.name, timeout, last, self.logs()), pytrace=False)

    def wait_exit(self, timeout):
        """Wait for the process to exit by itself; returns the exit code or
        None on timeout."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._closed(rc)
        return rc

    def signal(self, sig):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def _closed(self, rc):
        self.returncode = rc
        for f in (getattr(self, "_out", None), getattr(self, "_err", None)):
            if f and not f.closed:
                f.close()
        if self in _running:
            _running.remove(self)

    def stop(self):
        """SIGTERM, then SIGKILL after STOP_TIMEOUT.  Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._closed(self.proc.returncode)
        return self.returncode

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def assert_healthy(self):
        assert self.alive(), "daprd exited with code %r\n%s" % (self.proc.poll(), self.logs())
        r = self.client.get("/v1.0/healthz")
        assert r.status == 204, r


class DaprdFactory:
    """Starts daprd processes in a temporary folder; stop_all() at teardown."""

    def __init__(self, tmpdir):
        self.tmpdir = str(tmpdir)
        self.started = []
        self.count = 0

    def path(self, *parts):
        return os.path.join(self.tmpdir, *parts)

    def resources(self, files, name=None):
        self.count += 1
        return write_resources(self.path(name or "res%d" % self.count), files)

    def create(self, resources=(), **kw):
        self.count += 1
        kw.setdefault("name", "daprd%d" % self.count)
        d = Daprd(self.path(kw["name"]), resources=resources, **kw)
        self.started.append(d)
        return d

    def start(self, resources=(), **kw):
        return self.create(resources, **kw).start()

    def stop_all(self):
        for d in self.started:
            d.stop()


@pytest.fixture
def daprd_factory(tmp_path):
    """Per-test factory: every daprd it starts is stopped after the test."""
    f = DaprdFactory(tmp_path)
    yield f
    f.stop_all()


@pytest.fixture(scope="module")
def module_factory(tmp_path_factory):
    """Per-module factory for daprds shared by the tests of one module."""
    f = DaprdFactory(tmp_path_factory.mktemp("daprd"))
    yield f
    f.stop_all()


# ---- error-body helpers ------------------------------------------------------

def assert_error(r, status, code, message_part=None):
    """Dapr's JSON error body (§1.6): exact status and errorCode; message
    contains message_part when given."""
    assert r.status == status, "expected %d %s, got %r" % (status, code, r)
    assert r.content_type == "application/json", r.headers.get("Content-Type")
    body = r.json()
    assert body.get("errorCode") == code, body
    assert isinstance(body.get("message"), str), body
    if message_part is not None:
        assert message_part in body["message"], body
    if "details" in body:
        assert isinstance(body["details"], list), body
        for d in body["details"]:
            assert isinstance(d, dict) and "@type" in d, body
    return body


def error_reason(body):
    """ErrorInfo reason of a rich error body, or None."""
    for d in body.get("details", []) or []:
        if d.get("@type", "").endswith("google.rpc.ErrorInfo"):
            return d.get("reason")
    return None


# ---- attach daprd logs to failing tests -------------------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when in ("setup", "call"):
        for d in list(_running):
            report.sections.append(("daprd %s" % d.name, d.logs()))


def pytest_sessionfinish(session, exitstatus):
    # Last resort: never leave a daprd behind.
    for d in list(_running):
        d.stop()
