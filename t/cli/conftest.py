"""Fixtures for the dapr CLI tests.

Paths come from the environment (t/cli/run.sh sets them for make check):

  DAPR                     the dapr binary under test (required)
  DAPRD                    the daprd binary it should start
  DAPR_TEST_PLUGINS_PATH   colon-separated plugin folders

Every test runs the CLI with HOME set to its own temporary folder, so the
machine's ~/.dapr is never touched.  Readiness is decided by polling
(`dapr list -o json`, the app's HTTP port), never by sleeping a guessed
time.  Every `dapr run` started here is stopped by PID at teardown.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
APP = os.path.join(HERE, "app.py")
TIMEOUT = 30.0

_running = []


def _binary(var):
    path = os.environ.get(var)
    if not path:
        pytest.fail("%s is not set (t/cli/run.sh sets it for make check)" % var, pytrace=False)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail("%s=%s is not an executable file: build it first (make)" % (var, path), pytrace=False)
    return path


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def request(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def pid_alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


def wait_for(pred, timeout=TIMEOUT, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s" % what)


class Cli:
    """Runs the dapr binary with HOME=<tmp>."""

    def __init__(self, tmp_path, plugins_env=True, daprd_env=True):
        self.dapr = _binary("DAPR")
        self.home = str(tmp_path / "home")
        os.makedirs(self.home, exist_ok=True)
        self.tmp = tmp_path
        self.env = dict(os.environ)
        self.env["HOME"] = self.home
        self.env.pop("DAPR_API_TOKEN", None)
        self.env.pop("DAPR_PLUGINS_PATH", None)
        self.env.pop("DAPR_DAPRD", None)
        if daprd_env:
            self.env["DAPR_DAPRD"] = _binary("DAPRD")
        if plugins_env and os.environ.get("DAPR_TEST_PLUGINS_PATH"):
            self.env["DAPR_PLUGINS_PATH"] = os.environ["DAPR_TEST_PLUGINS_PATH"]
        self.runs = []

    def __call__(self, *args, timeout=TIMEOUT, cwd=None):
        return subprocess.run([self.dapr] + list(args), env=self.env, cwd=cwd or str(self.tmp),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                              universal_newlines=True)

    def list(self):
        r = self("list", "-o", "json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def entry(self, app_id):
        for e in self.list():
            if e["appId"] == app_id:
                return e
        return None

    def run(self, *args, cwd=None):
        run = DaprRun(self, list(args), cwd)
        self.runs.append(run)
        _running.append(run)
        return run

    def wait_listed(self, app_id, with_app=True):
        def ready():
            e = self.entry(app_id)
            return e if e and (e["appPid"] > 0 or not with_app) else None
        return wait_for(ready, what="%s in dapr list" % app_id)

    def stop_all(self):
        for r in self.runs:
            r.stop()


class DaprRun:
    """One `dapr run` process; output goes to a file."""

    def __init__(self, cli, args, cwd):
        self.cli = cli
        self.log_path = str(cli.tmp / ("dapr-run-%d.log" % len(cli.runs)))
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([cli.dapr, "run"] + args, env=cli.env, cwd=cwd or str(cli.tmp),
                                     stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait(self, timeout=TIMEOUT):
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("dapr run did not exit within %.0f s\n%s" % (timeout, self.output()))
        self._closed()
        return rc

    def signal(self, sig):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def _closed(self):
        if not self._log.closed:
            self._log.close()
        if self in _running:
            _running.remove(self)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._closed()


@pytest.fixture
def cli(tmp_path):
    c = Cli(tmp_path)
    yield c
    c.stop_all()


@pytest.fixture
def app_cmd():
    return [sys.executable, APP]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when in ("setup", "call"):
        for r in list(_running):
            report.sections.append(("dapr run %s" % r.log_path, r.output()[-6000:]))


def pytest_sessionfinish(session, exitstatus):
    for r in list(_running):
        r.stop()
