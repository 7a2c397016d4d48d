"""`embedsearch serve` against silent, slow and too many clients (service/server.py): a real server
process, real sockets. Silent connections and slow headers or bodies get 408 and are closed within
the timeouts; past the connection cap the oldest idle connection makes room, so searches keep
working; when every connection is being served, a newcomer gets 503 at once; with 128 open files,
150 idle sockets do not stop the service."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from embedsearch.config import Settings
from embedsearch.store import Store
from tests.conftest import free_port, topic_docs

pytestmark = pytest.mark.slow  # server processes and timeouts

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def news(data_dir, hashing) -> Path:
    coll = Store(Settings.from_env(data_dir)).create("news", hashing)
    coll.add_documents(topic_docs(50), hashing)
    return data_dir


class Server:
    def __init__(self, data_dir: Path, *args: str, nofile: int | None = None) -> None:
        self.port = free_port()

        def limit() -> None:
            if nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        env = {**os.environ, "PYTHONPATH": str(REPO)}
        cmd = [sys.executable, "-m", "embedsearch", "--data-dir", str(data_dir), "serve", "--port", str(self.port),
               "--no-preload", *args]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True,
                                     preexec_fn=limit)  # fmt: skip  # noqa: PLW1509
        deadline = time.monotonic() + 60
        while True:
            try:
                self.get("/health/live")
                return
            except OSError:
                assert self.proc.poll() is None, self.proc.stderr.read()
                assert time.monotonic() < deadline, "the service did not start"
                time.sleep(0.1)

    def get(self, path: str, timeout: float = 10) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as r:
            return r.read()

    def search(self) -> list:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/collections/news/search", method="POST",
                                     data=json.dumps({"query": "topic words", "k": 3}).encode(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())["hits"]

    def connect(self, payload: bytes = b"") -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        if payload:
            s.sendall(payload)
        return s

    def stop(self) -> str:
        self.proc.terminate()
        return self.proc.communicate(timeout=30)[1]


def _closed_within(sockets: list[socket.socket], seconds: float) -> list[bytes]:
    """What each socket received until the server closed it; fails if one stays open past ``seconds``."""
    deadline = time.monotonic() + seconds
    got = []
    for s in sockets:
        data = b""
        while True:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recv(4096)
            except TimeoutError:
                pytest.fail(f"a connection was still open {seconds} s on")
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
        s.close()
        got.append(data)
    return got


def test_silent_and_slow_clients_get_408_within_the_timeouts(news):
    server = Server(news, "--header-timeout", "1", "--body-timeout", "1.5")
    try:
        started = time.monotonic()
        silent = [server.connect() for _ in range(20)]
        slow_headers = [server.connect(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n") for _ in range(5)]
        slow_body = [server.connect(b"POST /collections/news/search HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                    b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"query\"")
                     for _ in range(5)]  # fmt: skip
        assert len(server.search()) == 3  # served meanwhile
        replies = _closed_within(silent + slow_headers, 1 + 1.5)
        assert all(r.startswith(b"HTTP/1.1 408 ") and b"headers did not arrive within 1 s" in r for r in replies), replies[:2]
        replies = _closed_within(slow_body, 1.5 + 1.5)
        assert all(r.startswith(b"HTTP/1.1 408 ") and b"body did not arrive within 1.5 s" in r for r in replies), replies[:2]
        assert time.monotonic() - started < 8
        # a kept-alive connection that starts a second request and stalls is closed the same way
        s = server.connect(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        time.sleep(0.3)
        s.sendall(b"GET /health/live HTTP/1.1\r\n")
        (reply,) = _closed_within([s], 1 + 1.5)
        assert reply.startswith(b"HTTP/1.1 200 ") and b"HTTP/1.1 408 " in reply
        metrics = server.get("/metrics").decode()
        assert 'embedsearch_http_connections_closed_total{reason="header_timeout"} 26.0' in metrics
        assert 'embedsearch_http_connections_closed_total{reason="body_timeout"} 5.0' in metrics
    finally:
        server.stop()


def test_past_the_cap_idle_connections_make_room_and_busy_ones_refuse_at_once(news):
    server = Server(news, "--max-connections", "10", "--header-timeout", "30", "--body-timeout", "30")
    try:
        idle = [server.connect() for _ in range(40)]
        for _ in range(20):  # each a new connection: the oldest idle one is closed for it
            assert len(server.search()) == 3
        assert sum(1 for r in _closed_within(idle[:30], 5) if r == b"") == 30  # evicted: closed without a word
        busy = [server.connect(b"POST /collections/news/search HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{")
                for _ in range(10)]  # fmt: skip
        time.sleep(0.3)
        started = time.monotonic()
        (reply,) = _closed_within([server.connect()], 2)
        assert reply.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in reply.lower()
        assert time.monotonic() - started < 1
        for s in busy + idle[30:]:
            s.close()
        time.sleep(0.3)
        assert len(server.search()) == 3
        metrics = server.get("/metrics").decode()
        assert 'reason="evicted"' in metrics and 'embedsearch_http_connections_closed_total{reason="refused"} 1.0' in metrics
    finally:
        server.stop()


def test_with_128_open_files_150_idle_sockets_do_not_stop_the_service(news):
    server = Server(news, "--header-timeout", "30", nofile=128)
    try:
        idle = [server.connect() for _ in range(150)]
        for _ in range(10):
            assert len(server.search()) == 3
        for s in idle:
            s.close()
        err = server.stop()
        assert "Too many open files" not in err, err[-2000:]
    finally:
        if server.proc.poll() is None:
            server.stop()
