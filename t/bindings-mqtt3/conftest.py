"""Fixtures for the bindings.mqtt3 tests.

The daprd/world helpers are t/bindings/conftest.py's (loaded under another
module name; fixtures and hooks re-exported).  This file adds a real
mosquitto broker on 127.0.0.1 and a free port (no persistence, anonymous
clients allowed), started per test and stopped by its PID, the test app
(mqtt_app.py) and mosquitto_pub / mosquitto_sub as independent clients.
"""

import importlib.util
import os
import socket
import subprocess
import time

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("bindings_conftest",
                                               os.path.join(_HERE, "..", "bindings", "conftest.py"))
bc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bc)

world = bc.world
pytest_runtest_makereport = bc.pytest_runtest_makereport
pytest_sessionfinish = bc.pytest_sessionfinish


class Broker(bc.Proc):
    def __init__(self, workdir, tls=None):
        super().__init__(workdir, "mosquitto")
        self.port = bc.free_port()
        self.conf = os.path.join(self.workdir, "mosquitto.conf")
        with open(self.conf, "w") as f:
            f.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "log_type all\nmax_queued_messages 10000\n" % self.port)
            if os.getuid() == 0:
                # as root mosquitto would switch to user "mosquitto", who
                # cannot read the test's private folders
                f.write("user root\n")
            if tls:   # files of make_pki(); client certificates required
                f.write("cafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\n"
                        % (tls["ca.pem"], tls["server.pem"], tls["server.key"]))

    def start(self):
        self._popen(["mosquitto", "-c", self.conf])

        def up():
            s = socket.socket()
            try:
                s.settimeout(0.5)
                s.connect(("127.0.0.1", self.port))
                return True
            except OSError:
                return False
            finally:
                s.close()
        bc.wait_for(lambda: up() or not self.alive() and pytest.fail("mosquitto exited\n" + self.logs()), 10,
                    "mosquitto did not listen")
        return self

    def url(self):
        return "tcp://127.0.0.1:%d" % self.port

    def pub(self, topic, message, retain=False):
        cmd = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(self.port), "-q", "1", "-t", topic, "-m", message]
        if retain:
            cmd.append("-r")
        subprocess.run(cmd, check=True, timeout=10)

    def sub_one(self, topic, wait=3):
        """The first message on topic within wait seconds as (retained, payload), or None."""
        r = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.port), "-q", "1", "-t", topic,
                            "-C", "1", "-W", str(wait), "-F", "%r %p"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=wait + 10)
        out = r.stdout.decode().rstrip("\n")
        if r.returncode != 0 or not out:
            return None
        flag, _, payload = out.partition(" ")
        return flag == "1", payload


@pytest.fixture
def broker(world):
    b = Broker(world.path("broker"))
    world.procs.append(b)
    return b.start()


def make_pki(folder):
    """A CA, a server certificate for 127.0.0.1 and a client certificate,
    made with the openssl program.  Returns {file name: path}."""
    os.makedirs(folder, exist_ok=True)
    p = {n: os.path.join(folder, n) for n in ("ca.pem", "ca.key", "server.pem", "server.key", "client.pem",
                                               "client.key", "other-ca.pem", "other-ca.key")}

    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       timeout=60)
    for ca in ("ca", "other-ca"):
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test " + ca,
            "-keyout", p[ca + ".key"], "-out", p[ca + ".pem"])
    ext = os.path.join(folder, "san.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for who in ("server", "client"):
        csr = os.path.join(folder, who + ".csr")
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + who, "-keyout", p[who + ".key"],
            "-out", csr)
        run("x509", "-req", "-in", csr, "-CA", p["ca.pem"], "-CAkey", p["ca.key"], "-CAcreateserial",
            "-days", "2", "-extfile", ext, "-out", p[who + ".pem"])
    return p


def read(path):
    with open(path) as f:
        return f.read()


@pytest.fixture
def app(world):
    a = bc.Helper(world.path("app"), "app", os.path.join(_HERE, "mqtt_app.py"))
    world.procs.append(a)
    return a.start()


def events(app, route=None):
    r = app.client.get("/events")
    assert r.status == 200, r
    return [e for e in r.json()["events"] if route is None or e["route"] == route]
