"""Fixtures running the real scripts/chdb_server.py process on a free port and temp dir."""

import http.client
import json
import selectors
import signal
import subprocess
import sys
import urllib.parse
import uuid
from pathlib import Path

import pytest

SERVER_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "chdb_server.py"
START_TIMEOUT = 60


class Response:
    def __init__(self, status, headers, body, complete=True):
        self.status = status
        self.headers = headers
        self.body = body
        self.complete = complete  # False: broken off (no final chunk), as after a late error

    @property
    def text(self):
        return self.body.decode()

    def header(self, name):
        return self.headers.get(name)


class ChdbServer:
    """One server process: `--port 0`, the port is taken from its `ready on` line."""

    def __init__(self, path, users_file=None):
        self.path = Path(path)
        self.users_file = users_file
        self.log_file = self.path.parent / f"{self.path.name}-{uuid.uuid4().hex[:6]}.log"
        self.process = None
        self.port = None

    def start(self):
        command = [sys.executable, str(SERVER_SCRIPT), "--host", "127.0.0.1", "--port", "0",
                   "--path", str(self.path), "--log-file", str(self.log_file)]
        if self.users_file:
            command += ["--users-file", str(self.users_file)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        line = self._read_ready_line()
        assert line.startswith("ready on http://127.0.0.1:"), line
        self.port = int(line.rsplit(":", 1)[1])
        return self

    def _read_ready_line(self):
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(START_TIMEOUT):
                self.process.kill()
                raise AssertionError(f"server did not start; log: {self.log()}")
        line = self.process.stdout.readline().strip()
        if not line:
            raise AssertionError(f"server exited with {self.process.wait()}; log: {self.log()}")
        return line

    def stop(self, signum=signal.SIGTERM, timeout=30):
        """Signals the server and returns its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        finally:
            self.process.stdout.close()

    def log(self):
        return self.log_file.read_text() if self.log_file.exists() else ""

    def connection(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def request(self, query=None, body=None, params=None, headers=None, method=None,
                conn=None):
        """One HTTP request; `params` become URL parameters, `body` is bytes/str or an
        iterable of bytes (sent chunked)."""
        url_params = dict(params or {})
        if query is not None:
            url_params["query"] = query
        path = "/?" + urllib.parse.urlencode(url_params) if url_params else "/"
        return send(conn or self.connection(), method or ("POST" if body is not None else "GET"),
                    path, body, headers)

    def sql(self, sql, **params):
        """Runs a query (SQL in the body) and returns the decoded body; asserts 200."""
        response = self.request(body=sql.encode(), params=params)
        assert response.status == 200, response.text
        return response.text


def send(conn, method, path, body=None, headers=None):
    chunked = body is not None and not isinstance(body, (bytes, str))
    conn.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
    response = conn.getresponse()
    try:
        return Response(response.status, response.headers, response.read())
    except http.client.IncompleteRead as broken:
        return Response(response.status, response.headers, broken.partial, complete=False)


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """A server shared by the tests that do not restart or reconfigure it."""
    instance = ChdbServer(tmp_path_factory.mktemp("shared") / "data").start()
    yield instance
    assert instance.stop() == 0, instance.log()


@pytest.fixture
def fresh_server(tmp_path):
    """Factory for servers a test starts and stops itself (on one data directory)."""
    started = []

    def start(users=None):
        users_file = None
        if users is not None:
            users_file = tmp_path / "users.json"
            users_file.write_text(json.dumps({"users": users}))
        instance = ChdbServer(tmp_path / "data", users_file).start()
        started.append(instance)
        return instance

    yield start
    for instance in started:
        if instance.process.poll() is None:
            instance.stop(signal.SIGKILL)
