"""Safe service defaults (issue 13, finding 4): the Host header is checked on loopback (DNS
rebinding), writes need a key beyond loopback unless the user says otherwise, symlinks under
--models-dir cannot lead out of it, and idle connections are closed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import numpy as np
from fastapi.testclient import TestClient

from embedsearch.cli.serve import is_loopback
from embedsearch.config import Settings
from embedsearch.service.app import create_app
from embedsearch.store import Store

DOC = {"documents": [{"id": "a", "text": "lava flows"}]}


def test_loopback_service_refuses_foreign_host_headers(data_dir, hashing):
    Store(Settings.from_env(data_dir)).create("news", hashing, "Flat")
    app = create_app(Settings.from_env(data_dir), allowed_hosts=["127.0.0.1", "localhost", "::1"])
    with TestClient(app, base_url="http://127.0.0.1:8765") as client:
        assert client.get("/collections").status_code == 200
        r = client.get("/collections", headers={"Host": "evil.example:8765"})  # a rebound name
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_host"
        r = client.post("/collections/news/documents", json=DOC, headers={"Host": "evil.example"})
        assert r.status_code == 400
        assert client.get("/collections", headers={"Host": "localhost:8765"}).status_code == 200
        assert client.get("/collections", headers={"Host": "[::1]:8765"}).status_code == 200


def test_beyond_loopback_writes_need_a_key_unless_opened(data_dir, hashing):
    Store(Settings.from_env(data_dir)).create("news", hashing, "Flat")
    with TestClient(create_app(Settings.from_env(data_dir), open_writes=False)) as client:
        r = client.post("/collections/news/documents", json=DOC)
        assert r.status_code == 403 and r.json()["error"]["code"] == "writes_need_key"
        assert client.post("/collections/news/search", json={"query": "lava"}).status_code == 200  # reads still work
    with TestClient(create_app(Settings.from_env(data_dir), open_writes=False, api_key="k")) as client:
        assert client.post("/collections/news/documents", json=DOC, headers={"X-API-Key": "k"}).status_code == 200
    with TestClient(create_app(Settings.from_env(data_dir), open_writes=True)) as client:
        assert client.post("/collections/news/documents", json=DOC).status_code == 200
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")


def test_model_symlinks_cannot_lead_out_of_the_models_dir(tmp_path, data_dir, cli):
    words = ["king", "queen", "man", "woman"]
    rng = np.random.default_rng(0)
    (tmp_path / "v.txt").write_text("".join(f"{w} " + " ".join(f"{x:.3f}" for x in rng.standard_normal(4)) + "\n" for w in words))
    outside = tmp_path / "outside"
    assert cli("models", "import", str(tmp_path / "v.txt"), "--format", "glove", "-o", str(outside)).exit_code == 0
    models = tmp_path / "models"
    models.mkdir()
    assert cli("models", "import", str(tmp_path / "v.txt"), "--format", "glove", "-o", str(models / "inside")).exit_code == 0
    os.symlink(outside, models / "escape")
    with TestClient(create_app(Settings.from_env(data_dir), models_dir=models)) as client:
        assert client.get("/models/inside").status_code == 200
        r = client.get("/models/escape")
        assert r.status_code == 404 and "outside the models directory" in r.json()["error"]["message"]
        r = client.post("/similar", json={"model": "escape", "word": "king", "k": 2})
        assert r.status_code == 404


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_idle_connections_are_closed(data_dir, hashing):
    Store(Settings.from_env(data_dir)).create("news", hashing, "Flat")
    port = _free_port()
    serve = ["serve", "--port", str(port), "--keep-alive", "2", "--no-preload"]  # ready at once: the first /health is a 200
    proc = subprocess.Popen(
        [sys.executable, "-m", "embedsearch", "--data-dir", str(data_dir), *serve],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise AssertionError("the service did not start")
        with sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n")
            sock.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:  # the whole response: headers, then Content-Length bytes
                data += sock.recv(4096)
            head, body = data.split(b"\r\n\r\n", 1)
            assert b" 200 " in head.split(b"\r\n")[0]
            length = int(next(h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")))
            while len(body) < length:
                body += sock.recv(4096)
            started = time.time()
            closed = sock.recv(4096) == b""  # blocks until the server closes the idle connection
            assert closed and time.time() - started < 8
    finally:
        proc.terminate()
        proc.wait(30)
