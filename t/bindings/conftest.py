"""Shared helpers for the bindings tests (reference §5).

Each test builds a small world in a temporary folder: a resources folder
of Component manifests, one daprd on 127.0.0.1 and a free port, and the
processes the test needs (bindings_app.py as the app of input bindings,
target_server.py as the far end of bindings.http).  HOME is a temporary
folder too.  Paths come from the environment (t/bindings/run.sh sets them):

  DAPRD                    the daprd binary
  DAPR_TEST_PLUGINS_PATH   colon-separated folders holding the plugin .so
                           files (bindings-cron, -localstorage, -http)

Readiness is decided by polling (healthz, the first stdout line of a
helper process), never by sleeping; processes are stopped by their PID
(SIGTERM, then SIGKILL) and their output kept in files that failing tests
print.
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
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
REQUEST_TIMEOUT = 20.0

_running = []
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def clean_exit(proc, rc):
    """rc == 0, or (sanitizer builds only) the exit status 1 of LeakSanitizer's
    own tracer crashing while it suspends the exiting process ("Tracer caught
    signal 11" then "LeakSanitizer has encountered a fatal error", with GCC
    12's libsanitizer about one run in ten here, after every thread was
    joined).  That crash reports no leak and no error of daprd's; a real
    leak report ("ERROR: LeakSanitizer") still fails the test in stop_all."""
    if rc == 0:
        return True
    text = _tail(proc.stderr_path, 10 ** 6)
    return (rc == 1 and "Tracer caught signal" in text and
            "LeakSanitizer has encountered a fatal error" in text and
            "ERROR: LeakSanitizer" not in text)


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

    def header(self, name):
        return self.headers.get(name)

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
        if isinstance(body, str):
            body = body.encode("utf-8")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return Response(r.status, r.headers, r.read())
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def _tail(path, limit=8000):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return "(no log at %s)" % path
    text = data.decode("utf-8", "replace")
    return text if len(text) <= limit else "...\n" + text[-limit:]


def wait_for(predicate, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = predicate()
        except (OSError, http.client.HTTPException) as e:
            last, value = e, None
        else:
            value = last
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail("%s (waited %.0f s; last: %r)" % (what() if callable(what) else what, timeout, last),
                        pytrace=False)
        time.sleep(interval)


class Proc:
    def __init__(self, workdir, name):
        self.workdir = str(workdir)
        self.name = name
        self.proc = None
        os.makedirs(self.workdir, exist_ok=True)
        self.stdout_path = os.path.join(self.workdir, name + ".stdout.log")
        self.stderr_path = os.path.join(self.workdir, name + ".stderr.log")

    def logs(self):
        return ("---- %s stdout\n%s\n---- %s stderr\n%s" %
                (self.name, _tail(self.stdout_path), self.name, _tail(self.stderr_path)))

    def log_text(self):
        return _tail(self.stdout_path, 10 ** 7) + _tail(self.stderr_path, 10 ** 7)

    def _popen(self, cmd, env=None, stdout_pipe=False):
        self._out = open(self.stdout_path, "ab")
        self._err = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE if stdout_pipe else self._out,
                                     stderr=self._err, stdin=subprocess.DEVNULL, env=env, cwd=self.workdir)
        _running.append(self)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM):
        if self.proc is None:
            return None
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (getattr(self, "_out", None), getattr(self, "_err", None)):
            if f and not f.closed:
                f.close()
        if self.proc.stdout:
            self.proc.stdout.close()
        if self in _running:
            _running.remove(self)
        return self.proc.returncode


class Helper(Proc):
    """A Python helper process that prints "PORT <n>" first."""

    def __init__(self, workdir, name, script, args=()):
        super().__init__(workdir, name)
        self.cmd = [sys.executable, os.path.join(HERE, script)] + list(args)
        self.port = None

    def start(self):
        self._popen(self.cmd, dict(os.environ, PYTHONDONTWRITEBYTECODE="1"), stdout_pipe=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], START_TIMEOUT)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("PORT "):
            self.stop()
            pytest.fail("%s did not start (stdout %r)\n%s" % (self.name, line, self.logs()), pytrace=False)
        self.port = int(line.split()[1])
        self.client = Client(self.port)
        return self


class App(Helper):
    def __init__(self, workdir, options=(), post=(), delay=(), options_delay=()):
        args = []
        for k, v in options_delay:
            args += ["--options-delay", "%s=%s" % (k, v)]
        for k, v in options:
            args += ["--options", "%s=%d" % (k, v)]
        for k, v in post:
            args += ["--post", "%s=%d" % (k, v)]
        for k, v in delay:
            args += ["--delay", "%s=%s" % (k, v)]
        super().__init__(workdir, "app", "bindings_app.py", args)

    def state(self):
        r = self.client.get("/events")
        assert r.status == 200, r
        return r.json()

    def events(self, route=None):
        return [e for e in self.state()["events"] if route is None or e["route"] == route]

    def options_seen(self, route=None):
        return [e for e in self.state()["options"] if route is None or e["route"] == route]

    def set_health(self, ok):
        assert self.client.get("/set-health/%d" % (1 if ok else 0)).status == 204

    def reset(self):
        assert self.client.get("/reset").status == 204


def component(name, type_, meta=None):
    lines = ["apiVersion: dapr.io/v1alpha1", "kind: Component", "metadata:", "  name: %s" % name, "spec:",
             "  type: %s" % type_, "  version: v1", "  metadata:"]
    for k, v in (meta or {}).items():
        lines += ["  - name: %s" % k, "    value: %s" % json.dumps(v)]
    if not meta:
        lines[-1] = "  metadata: []"
    return "\n".join(lines) + "\n"


def _plugin_dirs():
    return [d for d in os.environ.get("DAPR_TEST_PLUGINS_PATH", "").split(":") if d]


class Daprd(Proc):
    def __init__(self, world, components, app=None, args=(), name="daprd"):
        super().__init__(world.path(name), name)
        self.world = world
        self.resources = world.path(name, "resources")
        os.makedirs(self.resources, exist_ok=True)
        with open(os.path.join(self.resources, "components.yaml"), "w", encoding="utf-8") as f:
            f.write("---\n".join(components))
        self.app = app
        self.args = list(args)
        self.port = None

    def command(self, port):
        daprd = os.environ.get("DAPRD")
        if not daprd or not os.access(daprd, os.X_OK):
            pytest.fail("DAPRD must name the built daprd binary (t/bindings/run.sh sets it)", pytrace=False)
        cmd = [daprd, "--app-id", "bindtest", "--dapr-http-port", str(port), "--dapr-internal-grpc-port", "0",
               "--dapr-listen-addresses", "127.0.0.1", "--resources-path", self.resources, "--log-level", "debug"]
        if self.app is not None:
            cmd += ["--app-port", str(self.app.port)]
        for d in _plugin_dirs():
            cmd += ["--plugins-dir", d]
        return cmd + self.args

    def start(self, wait="healthz", attempts=3):
        for attempt in range(attempts):
            port = free_port()
            env = dict(os.environ, HOME=self.world.path("home"))
            for k in ("DAPR_API_TOKEN", "APP_API_TOKEN", "DAPR_PLUGINS_PATH"):
                env.pop(k, None)
            self.port = port
            self._popen(self.command(port), env)
            self.client = Client(port)
            deadline = time.monotonic() + START_TIMEOUT
            last = None
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    r = self.client.get("/v1.0/" + wait)
                    if r.status == 204:
                        return self
                    last = r
                except (OSError, http.client.HTTPException) as e:
                    last = e
                time.sleep(0.02)
            log = self.log_text().lower()
            self.stop(signal.SIGKILL)
            if "address already in use" in log and attempt + 1 < attempts:
                continue
            pytest.fail("daprd did not become ready (last %r)\n%s" % (last, self.logs()), pytrace=False)
        return self

    def invoke(self, name, body, method="POST", headers=None):
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        return self.client.request(method, "/v1.0/bindings/" + name, body=body,
                                   headers=dict({"Content-Type": "application/json"}, **(headers or {})))


class World:
    def __init__(self, tmpdir):
        self.tmpdir = str(tmpdir)
        os.makedirs(self.path("home"), exist_ok=True)
        self.procs = []

    def path(self, *parts):
        return os.path.join(self.tmpdir, *parts)

    def app(self, **kw):
        a = App(self.path("app"), **kw)
        self.procs.append(a)
        return a.start()

    def target(self, name="target", args=()):
        t = Helper(self.path(name), name, "target_server.py", args)
        self.procs.append(t)
        return t.start()

    def daprd(self, components, app=None, args=(), name="daprd", wait="healthz", start=True):
        d = Daprd(self, components, app=app, args=args, name=name)
        self.procs.append(d)
        return d.start(wait) if start else d

    def stop_all(self):
        for p in reversed(self.procs):
            p.stop()
        # Under --enable-sanitizers a report in a daprd's log fails the
        # test, even when what the test saw was right (leaks show at exit).
        for p in self.procs:
            if isinstance(p, Daprd):
                text = _tail(p.stderr_path, 10 ** 7) + _tail(p.stdout_path, 10 ** 7)
                if any(m in text for m in SANITIZER_MARKS):
                    pytest.fail("sanitizer report from %s:\n%s" % (p.name, p.logs()), pytrace=False)


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.stop_all()


def assert_error(r, status, code, part=None):
    assert r.status == status, "expected %d %s, got %r" % (status, code, r)
    assert r.content_type == "application/json", r.headers.get("Content-Type")
    body = r.json()
    assert body.get("errorCode") == code, body
    if part is not None:
        assert part in body.get("message", ""), body
    return body


def headers_of(event):
    """Lower-case name -> value of the headers an app request carried."""
    return {k.lower(): v for k, v in event["headers"]}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when in ("setup", "call"):
        for p in list(_running):
            report.sections.append(("process %s" % p.name, p.logs()))


def pytest_sessionfinish(session, exitstatus):
    for p in list(_running):
        p.stop(signal.SIGKILL)
