"""Shared fixtures for the service invocation tests (reference §4).

Each test module starts its own small world on 127.0.0.1: test apps
(echo_app.py, one process each) and one daprd per app, all sharing one
Configuration that points name resolution at a SQLite file in the
module's temporary folder.  HOME is a temporary folder too, so nothing
touches the machine's ~/.dapr.  Paths come from the environment:

  DAPRD                    the daprd binary (required)
  DAPR_TEST_PLUGINS_PATH   colon-separated folders holding the plugin .so
                           files (the name resolver's folder among them)

Readiness is decided by polling (healthz, the app's first stdout line),
never by sleeping.  Processes are stopped by their PID (SIGTERM, then
SIGKILL); logs of failing tests' processes are attached to the report.
"""

import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ECHO_APP = os.path.join(HERE, "echo_app.py")
START_TIMEOUT = 15.0     # seconds until healthz must answer 204
STOP_TIMEOUT = 10.0      # seconds between SIGTERM and SIGKILL
REQUEST_TIMEOUT = 20.0   # per HTTP request (covers daprd's connect retries)

# Every process started by this run and not yet stopped.
_running = []


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
    independent of keep-alive behaviour.  Paths are sent verbatim."""

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


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _tail(path, limit=6000):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return "(no log at %s)" % path
    text = data.decode("utf-8", "replace")
    return text if len(text) <= limit else "...\n" + text[-limit:]


def wait_for(predicate, timeout, what, interval=0.05):
    """Poll predicate() until it returns a true value; fail with `what`
    (a string or a function returning one) when the time is up."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = predicate()
        except (OSError, http.client.HTTPException) as e:
            last = e
            value = None
        else:
            value = last
        if value:
            return value
        if time.monotonic() >= deadline:
            msg = what() if callable(what) else what
            pytest.fail("%s (waited %.0f s; last: %r)" % (msg, timeout, last), pytrace=False)
        time.sleep(interval)


# ---- processes -----------------------------------------------------------------

class Proc:
    """Common part of apps and daprds: logs, stop by PID."""

    def __init__(self, workdir, name):
        self.workdir = str(workdir)
        self.name = name
        self.proc = None
        os.makedirs(self.workdir, exist_ok=True)
        self.stdout_path = os.path.join(self.workdir, name + ".stdout.log")
        self.stderr_path = os.path.join(self.workdir, name + ".stderr.log")

    def logs(self):
        return ("---- %s stdout (%s)\n%s\n---- %s stderr (%s)\n%s" %
                (self.name, self.stdout_path, _tail(self.stdout_path),
                 self.name, self.stderr_path, _tail(self.stderr_path)))

    def _popen(self, cmd, env, stdout_pipe=False):
        # Append: a restart keeps the earlier run's log for failure messages.
        self._out = open(self.stdout_path, "ab")
        self._err = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE if stdout_pipe else self._out,
                                     stderr=self._err, stdin=subprocess.DEVNULL, env=env,
                                     cwd=self.workdir)
        _running.append(self)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _closed(self):
        for f in (getattr(self, "_out", None), getattr(self, "_err", None)):
            if f and not f.closed:
                f.close()
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()
        if self in _running:
            _running.remove(self)

    def kill(self, sig=signal.SIGKILL):
        """Send sig and wait for the exit (used by the fault tests)."""
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._closed()

    def stop(self):
        """SIGTERM, then SIGKILL after STOP_TIMEOUT.  Idempotent."""
        if self.proc is None:
            return None
        self.kill(signal.SIGTERM)
        return self.proc.returncode


class App(Proc):
    """One echo_app.py process."""

    def __init__(self, workdir, name, port=0):
        super().__init__(workdir, "app-" + name)
        self.instance = name
        self.port = port
        self.client = None

    def start(self, timeout=START_TIMEOUT):
        self._popen([sys.executable, ECHO_APP, "--port", str(self.port), "--name", self.instance],
                    dict(os.environ, PYTHONDONTWRITEBYTECODE="1"), stdout_pipe=True)
        # The first stdout line says where it listens.
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("PORT "):
            self.stop()
            pytest.fail("test app %s did not start (stdout %r)\n%s" % (self.name, line, self.logs()),
                        pytrace=False)
        self.port = int(line.split()[1])
        self.client = Client(self.port)
        return self

    def stats(self):
        r = self.client.get("/stats")
        assert r.status == 200, r
        return r.json()

    def set_health(self, ok):
        r = self.client.get("/set-health/%d" % (1 if ok else 0))
        assert r.status == 204, r


def _daprd_path():
    path = os.environ.get("DAPRD")
    if not path:
        pytest.fail("DAPRD is not set: point it at the built daprd binary "
                    "(e.g. DAPRD=$builddir/core/daprd); t/invoke/run.sh does this for make check",
                    pytrace=False)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail("DAPRD=%s is not an executable file: build daprd first (make)" % path, pytrace=False)
    return path


def _plugin_dirs():
    raw = os.environ.get("DAPR_TEST_PLUGINS_PATH", "")
    return [d for d in raw.split(":") if d]


class DaprdExited(Exception):
    pass


class Daprd(Proc):
    """One daprd process with its app channel (app_port may be None)."""

    def __init__(self, world, app_id, app_port=None, args=(), env=None, name=None):
        super().__init__(world.path(name or "daprd-" + app_id), name or "daprd-" + app_id)
        self.world = world
        self.app_id = app_id
        self.app_port = app_port
        self.args = list(args)
        self.env_extra = dict(env or {})
        self.port = None
        self.client = None

    def command(self, port):
        cmd = [_daprd_path(), "--app-id", self.app_id, "--dapr-http-port", str(port),
               "--dapr-internal-grpc-port", "0", "--dapr-listen-addresses", "127.0.0.1",
               "--resources-path", self.world.resources, "--config", self.world.config,
               "--log-level", "debug"]
        if self.app_port is not None:
            cmd += ["--app-port", str(self.app_port)]
        for d in _plugin_dirs():
            cmd += ["--plugins-dir", d]
        return cmd + self.args

    def spawn(self, port):
        env = dict(os.environ)
        for k in ("DAPR_API_TOKEN", "APP_API_TOKEN", "NAMESPACE", "DAPR_PLUGINS_PATH"):
            env.pop(k, None)   # only tests that ask for them get them
        env["HOME"] = self.world.home
        env.update(self.env_extra)
        self.port = port
        self._popen(self.command(port), env)
        self.client = Client(port)

    def start(self, wait="healthz", attempts=3):
        """Start and wait until GET /v1.0/{wait} answers 204 (wait may be
        "healthz/outbound").  Retries with another port on a clash."""
        for attempt in range(attempts):
            self.spawn(free_port())
            try:
                self.wait_ready(wait)
                return self
            except DaprdExited as e:
                log = _tail(self.stderr_path).lower() + _tail(self.stdout_path).lower()
                clash = "address already in use" in log or "eaddrinuse" in log
                if clash and attempt + 1 < attempts:
                    continue
                pytest.fail("%s\n%s" % (e, self.logs()), pytrace=False)
        return self

    def wait_ready(self, what="healthz", timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                self._closed()
                raise DaprdExited("daprd (%s) exited with code %d before /v1.0/%s answered 204: %s"
                                  % (self.name, rc, what, " ".join(self.command(self.port))))
            try:
                r = Client(self.port).get("/v1.0/" + what)
                if r.status == 204:
                    return
                last = r
            except (OSError, http.client.HTTPException) as e:
                last = e
            time.sleep(0.02)   # polling interval, not a readiness guess
        self.stop()
        pytest.fail("daprd (%s) did not answer GET /v1.0/%s with 204 within %.0f s (last: %r)\n%s"
                    % (self.name, what, timeout, last, self.logs()), pytrace=False)

    def invoke(self, target, method, verb="GET", **kw):
        return self.client.request(verb, "/v1.0/invoke/%s/method/%s" % (target, method), **kw)


class World:
    """Apps and sidecars of one test module sharing one name-resolution
    database.  stop_all() stops everything it started."""

    def __init__(self, tmpdir):
        self.tmpdir = str(tmpdir)
        self.home = self.path("home")
        self.resources = self.path("resources")   # empty: no components needed
        os.makedirs(self.home, exist_ok=True)
        os.makedirs(self.resources, exist_ok=True)
        self.config = self.path("config.yaml")
        with open(self.config, "w", encoding="utf-8") as f:
            f.write("apiVersion: dapr.io/v1alpha1\n"
                    "kind: Configuration\n"
                    "metadata:\n"
                    "  name: test\n"
                    "spec:\n"
                    "  nameResolution:\n"
                    "    component: sqlite\n"
                    "    configuration:\n"
                    "      connectionString: %s\n"
                    # The shortest the resolver accepts: Dapr's rule is
                    # updateInterval >= timeout + 1s, timeout >= 1s.
                    "      updateInterval: 2s\n"
                    "      timeout: 1s\n" % json.dumps(self.path("nr.db")))
        self.procs = []

    def path(self, *parts):
        return os.path.join(self.tmpdir, *parts)

    def app(self, name, port=0, start=True):
        a = App(self.path("app-" + name), name, port)
        self.procs.append(a)
        return a.start() if start else a

    def daprd(self, app_id, app=None, wait="healthz", start=True, **kw):
        """A sidecar for app (an App, a port number, or None)."""
        port = app.port if isinstance(app, App) else app
        d = Daprd(self, app_id, port, **kw)
        self.procs.append(d)
        return d.start(wait) if start else d

    def pair(self, app_id, instance=None, **kw):
        """An app and its sidecar; returns the sidecar with .app set."""
        a = self.app(instance or app_id)
        d = self.daprd(app_id, a, name=kw.pop("name", "daprd-" + (instance or app_id)), **kw)
        d.app = a
        return d

    def stop_all(self):
        for p in reversed(self.procs):
            p.stop()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = World(tmp_path_factory.mktemp("invoke"))
    yield w
    w.stop_all()


def wait_invocable(caller, target, timeout=10.0):
    """Poll until caller's sidecar reaches target's app: the resolver
    registers sidecars as they start, so a sidecar started a moment ago may not be
    visible yet.  Returns the first successful response."""
    return wait_for(lambda: (lambda r: r if r.status == 200 else None)(caller.invoke(target, "ping")),
                    timeout, "%s cannot invoke %s" % (caller.app_id, target))


# ---- assertions ------------------------------------------------------------------

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
    return body


def echo_headers(r):
    """The request headers the app saw, as a dict of lower-case name ->
    list of values."""
    assert r.status == 200, r
    out = {}
    for k, v in r.json()["headers"]:
        out.setdefault(k.lower(), []).append(v)
    return out


# ---- attach logs to failing tests ---------------------------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when in ("setup", "call"):
        for p in list(_running):
            report.sections.append(("process %s" % p.name, p.logs()))


def pytest_sessionfinish(session, exitstatus):
    # Last resort: never leave a process behind.
    for p in list(_running):
        p.stop()
