"""Fixtures for the bindings.postgresql tests.

The daprd/world helpers are t/bindings/conftest.py's (loaded here under
another module name, with its fixtures and hooks re-exported).  This file
adds a throwaway PostgreSQL cluster, started once per test session with
initdb/pg_ctl on 127.0.0.1 and a free port (as user "postgres" through
runuser when the tests run as root: the server refuses root), with a
password required over TCP, and stopped by pg_ctl at the end.

Environment (t/bindings-postgresql/run.sh sets it): PG_BINDIR, the folder
of initdb, pg_ctl and psql; DAPRD and DAPR_TEST_PLUGINS_PATH as for
t/bindings.
"""

import importlib.util
import os
import shutil
import subprocess
import tempfile

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("bindings_conftest",
                                               os.path.join(_HERE, "..", "bindings", "conftest.py"))
bc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bc)

# Re-exported so that pytest sees them in this folder.
world = bc.world
pytest_runtest_makereport = bc.pytest_runtest_makereport
pytest_sessionfinish = bc.pytest_sessionfinish

PASSWORD = "Pg-s3cret-7d2e91"


class Cluster:
    def __init__(self):
        self.bindir = os.environ.get("PG_BINDIR", "")
        self.tmp = tempfile.mkdtemp(prefix="bindings-pg.")
        os.chmod(self.tmp, 0o755)
        self.dir = os.path.join(self.tmp, "pg")
        os.mkdir(self.dir)
        self.root = os.getuid() == 0
        if self.root:
            shutil.chown(self.dir, "postgres")
        self.port = bc.free_port()
        self.up = False

    def _as_pg(self, args, **kw):
        if self.root:
            args = ["runuser", "-u", "postgres", "--"] + args
        return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60, **kw)

    def init(self):
        pwfile = os.path.join(self.dir, "pwfile")
        with open(pwfile, "w") as f:
            f.write(PASSWORD + "\n")
        if self.root:
            shutil.chown(pwfile, "postgres")
        r = self._as_pg([os.path.join(self.bindir, "initdb"), "-D", os.path.join(self.dir, "data"), "-U", "postgres",
                         "--auth-local=trust", "--auth-host=scram-sha-256", "--pwfile=" + pwfile, "--no-sync"])
        assert r.returncode == 0, r.stdout.decode(errors="replace")

    def start(self):
        r = self._as_pg([os.path.join(self.bindir, "pg_ctl"), "-D", os.path.join(self.dir, "data"),
                         "-l", os.path.join(self.dir, "log"), "-w", "-t", "30", "-o",
                         "-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off" % (self.port, self.dir), "start"])
        assert r.returncode == 0, r.stdout.decode(errors="replace") + self.log()
        self.up = True

    def stop(self, mode="fast"):
        r = self._as_pg([os.path.join(self.bindir, "pg_ctl"), "-D", os.path.join(self.dir, "data"),
                         "-m", mode, "-w", "stop"])
        self.up = False
        assert r.returncode == 0, r.stdout.decode(errors="replace")

    def log(self):
        try:
            with open(os.path.join(self.dir, "log"), errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def psql(self, sql):
        """Run sql over the socket folder (trust) and return the bare output."""
        r = subprocess.run([os.path.join(self.bindir, "psql"), "-X", "-q", "-At", "-h", self.dir, "-p",
                            str(self.port), "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        return r.stdout.decode().strip()

    def conn(self, password=PASSWORD):
        return "host=127.0.0.1 port=%d user=postgres password=%s dbname=postgres" % (self.port, password)

    def url(self, password=PASSWORD):
        return "postgres://postgres:%s@127.0.0.1:%d/postgres" % (password, self.port)

    def cleanup(self):
        if self.up:
            try:
                self.stop("immediate")
            except AssertionError:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def pg():
    c = Cluster()
    try:
        c.init()
        c.start()
        yield c
    finally:
        c.cleanup()
