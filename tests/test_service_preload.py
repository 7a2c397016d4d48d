"""Models loaded at start-up (issue 28, item 2): the first query of a collection used to wait for
its model's load (152 s on a loaded machine) while /health said 200 from the start.

With the preload the service loads every collection's model in the background, logs each load
with its time, answers /health with 503 "loading" (and Retry-After) until every load has ended,
and /health/live with 200 throughout. The model is a real MiniLM (a copy of the bundled one's
directory, so no other test in the process has it cached already and its load is real), and a
broken model is a real word-vector model directory that went missing.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from embedsearch.config import Settings
from embedsearch.embedders import load_counts, load_embedder
from embedsearch.models import import_vectors
from embedsearch.service.app import create_app
from embedsearch.store import Store
from tests.conftest import free_port, topic_docs
from tests.test_broken_models import minilm_copy
from tests.test_service import scrape

REPO = Path(__file__).resolve().parent.parent


def wait_ready(client: TestClient, timeout: float = 300) -> tuple[list[int], object]:
    """Poll /health until it is not 503; the status codes seen and the last response."""
    codes = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get("/health")
        codes.append(r.status_code)
        if r.status_code != 503:
            return codes, r
        assert r.json()["status"] == "loading" and r.headers["Retry-After"] == "5"
        time.sleep(0.05)
    raise AssertionError(f"not ready after {timeout} s: {codes[-5:]}")


@pytest.fixture
def minilm_news(tmp_path, data_dir) -> tuple[Settings, str]:
    """A collection on a MiniLM directory no embedder in this process has loaded yet."""
    path = minilm_copy(tmp_path / "minilm-copy")
    embedder = load_embedder(str(path), device="cpu", cache=False)  # not cached: the service's load is its first
    settings = Settings.from_env(data_dir)
    Store(settings).create("news", embedder, "Flat").add_documents(topic_docs(12), embedder)
    return settings, embedder.spec


def test_health_is_503_loading_until_the_model_is_loaded_and_the_first_search_does_not_load_it_again(minilm_news, caplog):
    settings, spec = minilm_news
    assert load_counts().get(spec, 0) == 0
    results: list[int] = []
    with caplog.at_level(logging.INFO, logger="embedsearch.service"):
        with TestClient(create_app(settings, device="cpu", preload=True)) as client:
            first = client.get("/health")
            assert first.status_code == 503, first.text
            body = first.json()
            assert body["status"] == "loading" and body["preload"] is True and first.headers["Retry-After"] == "5"
            assert {m["state"] for m in body["models"]} <= {"pending", "loading"}
            live = client.get("/health/live")
            assert live.status_code == 200 and live.json()["status"] == "ok"
            # searches that arrive during the load wait for that one load instead of loading again
            threads = [threading.Thread(target=lambda: results.append(
                client.post("/collections/news/search", json={"query": "cricket wickets", "k": 3}).status_code))
                for _ in range(4)]  # fmt: skip
            for t in threads:
                t.start()
            codes, ready = wait_ready(client)
            for t in threads:
                t.join()
            assert codes[0] == 503 and codes[-1] == 200
            body = ready.json()
            assert body["status"] == "ok" and body["version"] == client.app.version
            (news,) = body["models"]
            assert news["collection"] == "news" and news["model"] == spec and news["state"] == "loaded"
            assert news["seconds"] > 0 and news["error"] is None
            r = client.post("/collections/news/search", json={"query": "bushfire smoke", "k": 2})
            assert r.status_code == 200 and "bushfire" in r.json()["hits"][0]["text"]
            m = scrape(client)
            assert m["embedsearch_ready"][0].value == 1
            (seconds,) = m["embedsearch_model_load_seconds"]
            assert seconds.labels == {"collection": "news", "model": spec, "state": "loaded"} and seconds.value > 0
    assert results == [200] * 4
    assert load_counts()[spec] == 1  # the preload's load, used by every search
    lines = [r.getMessage() for r in caplog.records if r.name == "embedsearch.service" and "loaded model" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith(f"loaded model {spec} for collection news in ") and lines[0].endswith(" s")


def test_health_answers_on_the_event_loop(settings_hashing):
    """Queries that wait for a model's load hold the thread pool's threads; the health routes
    must not need one (a sync endpoint, or a sync dependency, runs in that pool)."""
    import inspect

    app = create_app(settings_hashing)
    routes = {r.path: r for r in app.routes if getattr(r, "path", None) in ("/health", "/health/live")}
    assert set(routes) == {"/health", "/health/live"}
    for route in routes.values():
        assert inspect.iscoroutinefunction(route.endpoint), route.path
        assert not route.dependant.dependencies, route.path


def test_concurrent_first_loads_of_a_model_load_it_once(tmp_path):
    spec = str(minilm_copy(tmp_path / "minilm-threads"))
    barrier = threading.Barrier(4)
    got = []

    def ask() -> None:
        barrier.wait()
        got.append(load_embedder(spec, device="cpu"))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 4 and all(e is got[0] for e in got)
    assert load_counts()[spec] == 1


@pytest.mark.parametrize("damage", ["missing", "garbage manifest"])
def test_a_model_that_fails_to_load_is_reported_and_the_rest_serve(tmp_path, data_dir, hashing, caplog, damage):
    src = tmp_path / "v.txt"
    src.write_text("king 0.1 0.2 0.3\nqueen 0.1 0.25 0.3\nman 0.3 0.1 0.1\n", encoding="utf-8")
    model = tmp_path / "models" / "wm"
    import_vectors(src, "glove", model)
    words = load_embedder(str(model), cache=False)
    settings = Settings.from_env(data_dir)
    store = Store(settings)
    store.create("news", hashing, "Flat").add_documents(topic_docs(8), hashing)
    store.create("words", words, "Flat")
    if damage == "missing":
        shutil.rmtree(model)
    else:
        (model / "manifest.json").write_text("{not json")
    with caplog.at_level(logging.INFO, logger="embedsearch.service"):
        with TestClient(create_app(settings, preload=True)) as client:
            codes, ready = wait_ready(client, timeout=60)
            assert ready.status_code == 200, ready.text
            body = ready.json()
            assert body["status"] == "degraded"
            by_name = {m["collection"]: m for m in body["models"]}
            assert by_name["news"]["state"] == "loaded" and by_name["news"]["error"] is None
            assert by_name["words"]["state"] == "failed" and by_name["words"]["model"] == words.spec
            assert str(model) in by_name["words"]["error"]
            assert client.post("/collections/news/search", json={"query": "cricket", "k": 2}).status_code == 200
            r = client.post("/collections/words/search", json={"query": "king", "k": 1})
            assert r.status_code in (404, 422) and str(model) in r.json()["error"]["message"]  # the model's error, as before
            assert client.get("/health/live").status_code == 200
    (failed,) = [r for r in caplog.records if r.levelno == logging.ERROR and "failed to load model" in r.getMessage()]
    assert "for collection words after " in failed.getMessage() and str(model) in failed.getMessage()
    assert [r for r in caplog.records if r.getMessage().startswith("loaded model hashing for collection news in ")]


def test_without_preload_the_service_is_ready_at_once(settings_hashing):
    with TestClient(create_app(settings_hashing)) as client:
        r = client.get("/health")
        assert r.status_code == 200 and r.json()["status"] == "ok"
        assert r.json()["preload"] is False and r.json()["models"] == []


@pytest.fixture
def settings_hashing(data_dir, hashing) -> Settings:
    settings = Settings.from_env(data_dir)
    Store(settings).create("news", hashing, "Flat").add_documents(topic_docs(8), hashing)
    return settings


def test_serve_help_lists_the_preload(cli):
    r = cli("serve", "--help")
    assert "--preload / --no-preload" in r.output and "[default: preload]" in r.output


def test_serve_logs_each_load_on_stderr(settings_hashing, data_dir):
    """`embedsearch serve` as a process: its log has the load line with the time; /health ends at 200."""
    import urllib.error
    import urllib.request

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "embedsearch", "--data-dir", str(data_dir), "serve", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        status = None
        while time.monotonic() < deadline and status != 200:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    status = r.status
            except urllib.error.HTTPError as e:
                status = e.code
                assert status == 503 and e.headers["Retry-After"] == "5"
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
        assert status == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "INFO embedsearch.service: preloading the models of 1 collection(s): news (hashing)" in err
    assert "INFO embedsearch.service: loaded model hashing for collection news in " in err
    assert "INFO embedsearch.service: ready in " in err
