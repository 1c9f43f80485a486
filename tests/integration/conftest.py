"""Fixtures for integration tests: start the real casevault binary on a free
loopback port with a temporary data dir and talk HTTP to it.

Environment (set by tests/integration/meson.build):
  CASEVAULT_BIN   path of the built binary
  CASEVAULT_SHARED  the ../shared folder (corpus, cases); tests that need it
                  skip with a visible reason when it is absent
"""
import json
import os
import signal
import subprocess
import threading
import time

import pytest
import requests

BIN = os.environ.get("CASEVAULT_BIN", os.path.join(os.path.dirname(__file__), "../../build/server/casevault"))
SHARED = os.environ.get("CASEVAULT_SHARED", os.path.join(os.path.dirname(__file__), "../../../shared"))


def run_cli(*args, input=None, check=False, timeout=120, env=None):
    """Run `casevault ARGS`; returns CompletedProcess (text)."""
    p = subprocess.run([BIN, *args], input=input, capture_output=True, text=True,
                       timeout=timeout, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"casevault {' '.join(args)} -> {p.returncode}: {p.stderr}")
    return p


class Server:
    """One `casevault serve` process. Logs (stderr JSON lines) are kept in .logs."""

    def __init__(self, data, args=(), env=None):
        self.data = str(data)
        self.args = list(args)
        self.env = env
        self.proc = None
        self.url = None
        self.logs = []
        self.raw_stderr = []
        self._reader = None

    def start(self, timeout=30):
        cmd = [BIN, "serve", "--data", self.data, "--listen", "127.0.0.1:0", *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=self.env)
        ready = threading.Event()

        def read():
            for line in self.proc.stderr:
                self.raw_stderr.append(line)
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                self.logs.append(obj)
                if obj.get("msg") == "listening":
                    self.url = obj["url"]
                    ready.set()
            ready.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not ready.wait(timeout) or self.url is None:
            self.proc.kill()
            raise AssertionError("server did not start: " + "".join(self.raw_stderr[-20:]))
        return self

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Stop and return the exit status; sanitizer reports make it non-zero."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._reader.join(5)
        self.proc = None
        return rc

    def get(self, path, token=None, **kw):
        return requests.request("GET", self.url + path, headers=_auth(token, kw), timeout=30, **kw)

    def request(self, method, path, token=None, **kw):
        kw.setdefault("timeout", 60)
        return requests.request(method, self.url + path, headers=_auth(token, kw), **kw)

    def token(self, role, name=None):
        p = run_cli("token", "create", "--data", self.data, "--role", role,
                    "--name", name or f"{role}-{time.monotonic_ns()}", check=True)
        return p.stdout.strip()

    @property
    def hostport(self):
        return self.url.split("://", 1)[1]


def _auth(token, kw):
    headers = dict(kw.pop("headers", None) or {})
    if token:
        headers["Authorization"] = "Bearer " + token
    return headers


@pytest.fixture
def server_factory(tmp_path):
    """Start servers on demand: server_factory(args=[...], data=...)."""
    started = []

    def make(args=(), data=None, env=None):
        s = Server(data or (tmp_path / f"data{len(started)}"), args, env).start()
        started.append(s)
        return s

    yield make
    for s in started:
        rc = s.stop()
        assert rc == 0, "server exited %s:\n%s" % (rc, "".join(s.raw_stderr[-40:]))


@pytest.fixture
def server(server_factory):
    return server_factory()


@pytest.fixture
def shared():
    if not os.path.isdir(SHARED):
        pytest.skip(f"../shared is absent ({SHARED}): corpus and cases tests skipped")
    return SHARED


def assert_problem(resp, status, code):
    """An RFC 9457 problem+json answer with this status and stable code."""
    assert resp.status_code == status, (resp.status_code, resp.text[:500])
    assert resp.headers["Content-Type"].startswith("application/problem+json"), resp.headers
    body = resp.json()
    assert body["status"] == status
    assert body["code"] == code, body
    assert body["type"].endswith("/" + code)
    assert body["title"] and body["detail"]
    assert body["request_id"] == resp.headers["X-Request-Id"]
    return body
