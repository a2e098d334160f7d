"""Shared fixtures for the pub/sub tests (reference §3).

Same approach as t/invoke/conftest.py: every test starts real processes on
127.0.0.1 (pubsub_app.py subscriber apps and daprd sidecars), waits for
readiness by polling, and stops them by PID.  Each sidecar gets its own
resources folder written by the test, so one module can try many
component and Subscription manifests.  Paths come from the environment:

  DAPRD                    the daprd binary (required)
  DAPR_TEST_PLUGINS_PATH   colon-separated folders holding plugin .so files
                           (pubsub-memory's folder among them)
  DAPR_TEST_REDIS_PLUGIN   folder of pubsub-redis.so (durable broker tests;
                           skipped when it holds no such file)
"""

import base64
import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.parse

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
APP = os.path.join(HERE, "pubsub_app.py")
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
REQUEST_TIMEOUT = 20.0

_running = []

MEMORY_PUBSUB = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: {name}
spec:
  type: pubsub.in-memory
  version: v1
  metadata: {metadata}
"""


def memory_pubsub(name="pubsub", **metadata):
    """A pubsub.in-memory Component manifest; metadata values as given."""
    if metadata:
        md = "\n" + "".join("  - name: %s\n    value: %s\n" % (k, json.dumps(str(v)))
                            for k, v in metadata.items())
    else:
        md = "[]"
    return MEMORY_PUBSUB.format(name=name, metadata=md)


# ---- HTTP client ---------------------------------------------------------------

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
        body = self.text
        if len(body) > 400:
            body = body[:400] + "..."
        return "<Response %d %s>" % (self.status, body)


class Client:
    def __init__(self, port, host="127.0.0.1"):
        self.host = host
        self.port = port

    def request(self, method, path, body=None, headers=None, json_body=None):
        hdrs = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode("utf-8")
            hdrs.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode("utf-8")
        conn = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            return Response(r.status, r.headers, r.read())
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, json=None, **kw):
        return self.request("POST", path, json_body=json, **kw)

    def put(self, path, json=None, **kw):
        return self.request("PUT", path, json_body=json, **kw)


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
    """Poll predicate() until it returns a true value; fail with `what`
    (a string or a function returning one) when the time is up."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = predicate()
            value = last
        except (OSError, http.client.HTTPException) as e:
            last = e
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            msg = what() if callable(what) else what
            pytest.fail("%s (waited %.0f s; last: %r)" % (msg, timeout, last), pytrace=False)
        time.sleep(interval)


def settle(predicate, duration):
    """Check that predicate() stays true for `duration` seconds (used to
    show that something does NOT happen: a delivery that must not come)."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        assert predicate()
        time.sleep(0.05)
    assert predicate()


# ---- processes -------------------------------------------------------------------

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

    def _popen(self, cmd, env, stdout_pipe=False):
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
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._closed()

    def stop(self):
        if self.proc is None:
            return None
        self.kill(signal.SIGTERM)
        return self.proc.returncode


class App(Proc):
    """One pubsub_app.py process."""

    def __init__(self, workdir, name, port=0):
        super().__init__(workdir, "app-" + name)
        self.port = port
        self.client = None

    def start(self):
        self._popen([sys.executable, APP, "--port", str(self.port), "--name", self.name],
                    dict(os.environ, PYTHONDONTWRITEBYTECODE="1"), stdout_pipe=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], START_TIMEOUT)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("PORT "):
            self.stop()
            pytest.fail("test app %s did not start (%r)\n%s" % (self.name, line, self.logs()),
                        pytrace=False)
        self.port = int(line.split()[1])
        self.client = Client(self.port)
        return self

    # -- control
    def subscribe_answer(self, body, status=200):
        assert self.client.put("/_ctl/subscribe", json={"status": status, "body": body}).status == 204

    def rules(self, rules):
        assert self.client.put("/_ctl/rules", json=rules).status == 204

    def reset(self):
        assert self.client.post("/_ctl/reset").status == 204

    def set_health(self, ok):
        assert self.client.get("/_ctl/health/%d" % (1 if ok else 0)).status == 204

    def stats(self):
        return self.client.get("/_ctl/stats").json()

    def deliveries(self, path=None):
        out = []
        for d in self.client.get("/_ctl/deliveries").json():
            if path is None or d["path"].split("?")[0] == path:
                out.append(Delivery(d))
        return out

    def wait_deliveries(self, n, path=None, timeout=10.0):
        """Wait until at least n deliveries (to path) arrived; return them."""
        return wait_for(lambda: (lambda ds: ds if len(ds) >= n else None)(self.deliveries(path)),
                        timeout, "app %s: fewer than %d deliveries%s" %
                        (self.name, n, " to " + path if path else ""))


class Delivery:
    def __init__(self, d):
        self.seq = d["seq"]
        self.path = d["path"]
        self.header_list = d["headers"]
        self.body = base64.b64decode(d["body_b64"])
        self.t = d["t"]

    def header(self, name):
        for k, v in self.header_list:
            if k.lower() == name.lower():
                return v
        return None

    def headers(self, name):
        return [v for k, v in self.header_list if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<Delivery %d %s %r>" % (self.seq, self.path, self.body[:300])


def _daprd_path():
    path = os.environ.get("DAPRD")
    if not path:
        pytest.fail("DAPRD is not set (t/pubsub/run.sh sets it for make check)", pytrace=False)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail("DAPRD=%s is not an executable file: build daprd first" % path, pytrace=False)
    return path


def plugin_dirs():
    return [d for d in os.environ.get("DAPR_TEST_PLUGINS_PATH", "").split(":") if d]


class DaprdExited(Exception):
    pass


class Daprd(Proc):
    def __init__(self, world, app_id, app_port, resources, args=(), env=None, name=None,
                 plugins=None):
        name = name or "daprd-" + app_id
        super().__init__(world.path(name), name)
        self.world = world
        self.app_id = app_id
        self.app_port = app_port
        self.resources = resources
        self.args = list(args)
        self.env_extra = dict(env or {})
        self.plugins = plugins if plugins is not None else plugin_dirs()
        self.port = None
        self.client = None

    def command(self, port):
        cmd = [_daprd_path(), "--app-id", self.app_id, "--dapr-http-port", str(port),
               "--dapr-internal-grpc-port", "0", "--dapr-listen-addresses", "127.0.0.1",
               "--log-level", "debug", "--dapr-graceful-shutdown-seconds", "2"]
        if self.resources is not None:
            cmd += ["--resources-path", self.resources]
        if self.app_port is not None:
            cmd += ["--app-port", str(self.app_port)]
        for d in self.plugins:
            cmd += ["--plugins-dir", d]
        return cmd + self.args

    def spawn(self, port):
        env = dict(os.environ)
        for k in ("DAPR_API_TOKEN", "APP_API_TOKEN", "NAMESPACE", "DAPR_PLUGINS_PATH"):
            env.pop(k, None)
        env["HOME"] = self.world.home
        env.update(self.env_extra)
        self.port = port
        self._popen(self.command(port), env)
        self.client = Client(port)

    def start(self, attempts=3):
        for attempt in range(attempts):
            self.spawn(free_port())
            try:
                self.wait_ready()
                return self
            except DaprdExited:
                log = self.log_text().lower()
                if "address already in use" in log and attempt + 1 < attempts:
                    continue
                raise
        return self

    def wait_ready(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                self._closed()
                raise DaprdExited("daprd (%s) exited with code %d before it was ready\n%s"
                                  % (self.name, rc, self.logs()))
            try:
                r = Client(self.port).get("/v1.0/healthz")
                if r.status == 204:
                    return
                last = r
            except (OSError, http.client.HTTPException) as e:
                last = e
            time.sleep(0.02)
        self.stop()
        pytest.fail("daprd (%s) not ready within %.0f s (last: %r)\n%s"
                    % (self.name, timeout, last, self.logs()), pytrace=False)

    def publish(self, topic, body=None, pubsub="pubsub", content_type=None, metadata=None,
                json_body=None, headers=None, method="POST"):
        path = "/v1.0/publish/%s/%s" % (pubsub, topic)
        if metadata:
            path += "?" + urllib.parse.urlencode({"metadata." + k: v for k, v in metadata.items()})
        hdrs = dict(headers or {})
        if content_type is not None:
            hdrs["Content-Type"] = content_type
        return self.client.request(method, path, body=body, headers=hdrs, json_body=json_body)

    def bulk_publish(self, topic, entries, pubsub="pubsub", metadata=None, version="v1.0-alpha1"):
        path = "/%s/publish/bulk/%s/%s" % (version, pubsub, topic)
        if metadata:
            path += "?" + urllib.parse.urlencode({"metadata." + k: v for k, v in metadata.items()})
        body = entries if isinstance(entries, (bytes, str)) else json.dumps(entries)
        return self.client.request("POST", path, body=body,
                                   headers={"Content-Type": "application/json"})

    def metadata(self):
        r = self.client.get("/v1.0/metadata")
        assert r.status == 200, r
        return r.json()

    def wait_log(self, text, timeout=10.0):
        return wait_for(lambda: text in self.log_text(), timeout,
                        "daprd %s never logged %r" % (self.name, text))


class World:
    """The processes of one test; stop_all() stops them."""

    def __init__(self, tmpdir):
        self.tmpdir = str(tmpdir)
        self.home = self.path("home")
        os.makedirs(self.home, exist_ok=True)
        self.procs = []
        self.n_resources = 0

    def path(self, *parts):
        return os.path.join(self.tmpdir, *parts)

    def resources(self, *docs):
        """A new resources folder holding the given manifests (one file
        each, in order)."""
        self.n_resources += 1
        d = self.path("resources-%d" % self.n_resources)
        os.makedirs(d, exist_ok=True)
        for i, doc in enumerate(docs):
            with open(os.path.join(d, "%02d.yaml" % i), "w", encoding="utf-8") as f:
                f.write(doc)
        return d

    def app(self, name="app", subscribe=None):
        a = App(self.path("app-" + name), name)
        self.procs.append(a)
        a.start()
        if subscribe is not None:
            a.subscribe_answer(subscribe)
        return a

    def daprd(self, app_id="app1", app=None, resources=None, docs=None, start=True, **kw):
        if resources is None:
            resources = self.resources(*(docs if docs is not None else [memory_pubsub()]))
        port = app.port if isinstance(app, App) else app
        d = Daprd(self, app_id, port, resources, **kw)
        self.procs.append(d)
        if start:
            d.start()
        d.app = app if isinstance(app, App) else None
        return d

    def pair(self, app_id="app1", subscribe=None, **kw):
        """A subscriber app and its sidecar; returns the sidecar (.app)."""
        a = self.app(app_id, subscribe=subscribe)
        return self.daprd(app_id, a, **kw)

    def stop_all(self):
        for p in reversed(self.procs):
            p.stop()


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.stop_all()
    # Under --enable-sanitizers a report in a daprd's log fails the test,
    # even when what the test saw was right (leaks show only at exit).
    for p in w.procs:
        if isinstance(p, Daprd):
            text = _tail(p.stderr_path, 10 ** 6)
            if any(m in text for m in SANITIZER_MARKS):
                pytest.fail("sanitizer report from %s:\n%s" % (p.name, _tail(p.stderr_path)), pytrace=False)


# ---- assertions -------------------------------------------------------------------

def assert_error(r, status, code, message_part=None):
    assert r.status == status, "expected %d %s, got %r" % (status, code, r)
    assert r.content_type == "application/json", r.headers.get("Content-Type")
    body = r.json()
    assert body.get("errorCode") == code, body
    assert isinstance(body.get("message"), str), body
    if message_part is not None:
        assert message_part in body["message"], body
    return body


def sub(topic, route=None, pubsub="pubsub", **extra):
    """One programmatic /dapr/subscribe element (v1 route)."""
    e = {"pubsubname": pubsub, "topic": topic}
    if route is not None:
        e["route"] = route
    e.update(extra)
    return e


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when in ("setup", "call"):
        for p in list(_running):
            report.sections.append(("process %s" % p.name, p.logs()))


def pytest_sessionfinish(session, exitstatus):
    for p in list(_running):
        p.stop()
