"""daprd's logs as Dapr writes them (reference: Dapr's logging docs):
--log-as-json lines with Dapr's fields, one "HTTP API Called" line per
API call with --enable-api-logging or spec.logging.apiLogging (with
obfuscateURLs and omitHealthChecks), and the log level changed without a
restart through SIGUSR1 (next level) and SIGUSR2 (back to the start-up
level).  Each test runs a real daprd with the state.in-memory plugin."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

DAPRD = os.environ.get("DAPRD", "core/daprd")
PLUGINS = [d for d in os.environ.get("DAPR_TEST_PLUGINS_PATH", "").split(":") if d]
SECRET = "s3cr3t-Planted-Value-91"

STATE = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.in-memory
  version: v1
  metadata: []
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Daprd:
    def __init__(self, tmp_path, args=(), config=None):
        self.dir = tmp_path
        res = tmp_path / "resources"
        res.mkdir(exist_ok=True)
        (res / "state.yaml").write_text(STATE)
        self.port = free_port()
        cmd = [DAPRD, "--app-id", "logapp", "--dapr-http-port", str(self.port),
               "--resources-path", str(res)]
        for d in PLUGINS:
            cmd += ["--plugins-dir", d]
        if config is not None:
            (tmp_path / "config.yaml").write_text(config)
            cmd += ["--config", str(tmp_path / "config.yaml")]
        cmd += list(args)
        self.out_path = tmp_path / "daprd.out"
        self.out = open(self.out_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.STDOUT, env=dict(os.environ, HOME=str(tmp_path)))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if self.request("GET", "/v1.0/healthz")[0] == 204:
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        pytest.fail("daprd did not start:\n" + self.output(), pytrace=False)

    def request(self, method, path, body=None, headers=None):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path), data=body, method=method,
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def output(self):
        if not self.out.closed:
            self.out.flush()
        return self.out_path.read_text(errors="replace")

    def lines(self):
        return [l for l in self.output().splitlines() if l.strip()]

    def wait_for(self, pred, what, timeout=5):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(self.output()):
                return
            time.sleep(0.02)
        pytest.fail("%s; daprd output:\n%s" % (what, self.output()[-4000:]), pytrace=False)

    def stop(self):
        if self.out.closed:
            return self.proc.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()
        return self.proc.returncode


@pytest.fixture
def daprd(tmp_path):
    started = []

    def make(*args, config=None):
        d = Daprd(tmp_path, args, config)
        started.append(d)
        return d
    yield make
    for d in started:
        d.stop()


def api_lines(d):
    return [l for l in d.lines() if "HTTP API Called" in l]


def traffic(d):
    assert d.request("POST", "/v1.0/state/statestore", json.dumps([{"key": "order 1", "value": 7}]).encode(),
                     {"Content-Type": "application/json", "User-Agent": "logtest/1.0"})[0] == 204
    assert d.request("GET", "/v1.0/state/statestore/order%201?metadata.token=" + SECRET)[0] == 200
    assert d.request("GET", "/v1.0/healthz")[0] == 204
    assert d.request("GET", "/v1.0/state/nostore/k")[0] == 400


def test_json_lines_carry_daprs_fields(daprd):
    d = daprd("--log-as-json", "--enable-api-logging")
    traffic(d)
    d.wait_for(lambda o: o.count("HTTP API Called") >= 4, "four API log lines")
    assert d.stop() == 0
    lines = d.lines()
    assert lines, "no output"
    for l in lines:
        o = json.loads(l)    # every line is one JSON object
        for f in ("time", "level", "type", "msg", "scope", "instance", "app_id", "ver"):
            assert f in o, (f, l)
        assert o["app_id"] == "logapp" and o["type"] == "log"
        assert o["level"] in ("debug", "info", "warning", "error", "fatal")
    api = [json.loads(l) for l in lines if "HTTP API Called" in l]
    save = [o for o in api if o["method"] == "POST /v1.0/state/statestore"]
    assert len(save) == 1
    s = save[0]
    assert s["scope"] == "dapr.runtime.http-info" and s["level"] == "info"
    assert s["useragent"] == "logtest/1.0" and s["code"] == "204"
    assert int(s["duration"]) >= 0
    methods = [o["method"] for o in api]
    assert "GET /v1.0/state/statestore/order 1" in methods
    assert "GET /v1.0/state/nostore/k" in methods
    assert [o["code"] for o in api if o["method"] == "GET /v1.0/state/nostore/k"] == ["400"]
    # The query (metadata.* may carry credentials) is never logged.
    assert SECRET not in d.output()


def test_text_lines_sort_fields_as_logrus(daprd):
    d = daprd("--enable-api-logging")
    traffic(d)
    d.wait_for(lambda o: o.count("HTTP API Called") >= 4, "four API log lines")
    line = [l for l in api_lines(d) if "POST /v1.0/state/statestore" in l][0]
    assert line.startswith('time="') and ' level=info msg="HTTP API Called" ' in line
    keys = [kv.split("=")[0] for kv in line.split('msg="HTTP API Called" ')[1].replace('"GET ', "").split(" ")
            if "=" in kv]
    assert keys == sorted(keys), line
    assert 'method="POST /v1.0/state/statestore"' in line and "scope=dapr.runtime.http-info" in line


def test_api_logging_off_by_default(daprd):
    d = daprd()
    traffic(d)
    time.sleep(0.2)
    assert api_lines(d) == []


def test_configuration_enables_and_obfuscates(daprd):
    d = daprd(config="""apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: logs
spec:
  logging:
    apiLogging:
      enabled: true
      obfuscateURLs: true
      omitHealthChecks: true
""")
    traffic(d)
    d.wait_for(lambda o: o.count("HTTP API Called") >= 3, "three API log lines")
    time.sleep(0.2)
    text = "\n".join(api_lines(d))
    assert 'method="GET /v1.0/state/{storeName}/{key}"' in text
    assert 'method="POST /v1.0/state/{storeName}"' in text
    assert "order 1" not in text and "nostore" not in text
    assert "healthz" not in text     # omitHealthChecks
    assert len(api_lines(d)) == 3


def test_flag_false_wins_over_configuration(daprd):
    d = daprd("--enable-api-logging=false", config="""apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: logs
spec:
  logging:
    apiLogging:
      enabled: true
""")
    traffic(d)
    time.sleep(0.2)
    assert api_lines(d) == []


def test_bad_api_logging_value_is_a_clear_start_up_error(tmp_path):
    (tmp_path / "config.yaml").write_text("""apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: logs
spec:
  logging:
    apiLogging:
      enabled: sometimes
""")
    r = subprocess.run([DAPRD, "--app-id", "x", "--dapr-http-port", str(free_port()),
                        "--config", str(tmp_path / "config.yaml")], capture_output=True, timeout=20,
                       env=dict(os.environ, HOME=str(tmp_path)))
    out = (r.stdout + r.stderr).decode()
    assert r.returncode != 0
    assert "spec.logging.apiLogging.enabled" in out and "sometimes" in out, out


def test_log_level_changes_without_restart(daprd):
    d = daprd()
    debug_line = "/v1.0/state/nostore/k -> 400"
    assert d.request("GET", "/v1.0/state/nostore/k")[0] == 400
    time.sleep(0.1)
    assert debug_line not in d.output()          # info: no debug lines
    # SIGUSR1 steps info -> warning -> error -> debug.
    for want in ("from info to warning", "from warning to error", "from error to debug"):
        d.proc.send_signal(signal.SIGUSR1)
        d.wait_for(lambda o, w=want: w in o, "log level change logged: " + want)
    assert d.request("GET", "/v1.0/state/nostore/k")[0] == 400
    d.wait_for(lambda o: debug_line in o, "a debug line once at debug")
    # SIGUSR2 restores the start-up level.
    d.proc.send_signal(signal.SIGUSR2)
    d.wait_for(lambda o: "from debug to info (SIGUSR2)" in o, "level restored")
    n = d.output().count(debug_line)
    assert d.request("GET", "/v1.0/state/nostore/k")[0] == 400
    time.sleep(0.2)
    assert d.output().count(debug_line) == n
    assert d.stop() == 0


def test_log_level_signal_during_start_up_does_not_kill(tmp_path):
    """SIGUSR1's default action is to terminate: daprd holds it from its
    first instruction until the loop handles it."""
    port = free_port()
    res = tmp_path / "resources"
    res.mkdir()
    (res / "state.yaml").write_text(STATE)
    cmd = [DAPRD, "--app-id", "x", "--dapr-http-port", str(port), "--resources-path", str(res)]
    for p in PLUGINS:
        cmd += ["--plugins-dir", p]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=dict(os.environ, HOME=str(tmp_path)))
    try:
        # From its first log line (before that the process may not even
        # have reached main), through the rest of its start-up.
        first = proc.stdout.readline()
        assert b"starting Dapr Runtime" in first, first
        for _ in range(20):
            proc.send_signal(signal.SIGUSR1)
            time.sleep(0.005)
        time.sleep(0.3)
        assert proc.poll() is None, "daprd died of SIGUSR1 (exit %s)" % proc.returncode
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert proc.returncode == 0
