"""Observability: /metrics has the process (memory, CPU, open files, threads), each collection's
numbers (documents, vectors, segments, tombstones, bytes, generation) and the time of each stage
of a search; the library's search reports those stages to a caller that asks; every log line of
a request, the library's included, carries the request id. Real app, real collections (hashing
model), prometheus_client's own parser; one real `embedsearch serve` process for its log."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from embedsearch.config import Settings
from embedsearch.corpus import Document
from embedsearch.passages import Chunking
from embedsearch.search import STAGES, search
from embedsearch.service.app import create_app
from embedsearch.service.middleware import RequestIdFilter
from embedsearch.store import Store
from tests.conftest import free_port, topic_docs

REPO = Path(__file__).resolve().parent.parent
KEY = "obs-key"
GAUGES = ("documents", "vectors", "segments", "tombstones", "bytes", "generation")


@pytest.fixture
def settings(data_dir, hashing, monkeypatch) -> Settings:
    monkeypatch.setenv("EMBEDSEARCH_SEAL_AT", "64")  # several segments from a few hundred documents
    settings = Settings.from_env(data_dir)
    store = Store(settings)
    store.create("news", hashing, "Flat", lexical=True).add_documents(topic_docs(200), hashing)
    store.create("empty", hashing, "HNSW32")
    return settings


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings, api_key=KEY)) as c:
        yield c


def families(text: str) -> dict:
    """The Prometheus text parsed by prometheus_client's parser: family name -> samples."""
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def scrape(client) -> dict:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=")
    return families(r.text)


def value(metrics: dict, family: str, sample: str | None = None, **labels) -> float:
    name = sample or family
    found = [s.value for s in metrics[family] if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (family, labels, metrics.get(family))
    return found[0]


def gauges(metrics: dict, collection: str) -> dict[str, float]:
    return {g: value(metrics, f"embedsearch_collection_{g}", collection=collection) for g in GAUGES}


def stage_counts(metrics: dict) -> dict[str, float]:
    return {
        s: value(metrics, "embedsearch_search_stage_seconds", "embedsearch_search_stage_seconds_count", stage=s) for s in STAGES
    }


def file_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())


# --- the process --------------------------------------------------------------------------------


def test_process_memory_cpu_open_files_and_threads(client):
    m = scrape(client)
    assert value(m, "process_resident_memory_bytes") > 10 << 20  # a Python with numpy, FAISS and FastAPI
    assert value(m, "process_virtual_memory_bytes") >= value(m, "process_resident_memory_bytes")
    assert value(m, "process_cpu_seconds", "process_cpu_seconds_total") > 0
    assert 3 <= value(m, "process_open_fds") <= value(m, "process_max_fds")  # stdin, stdout, stderr at least
    assert value(m, "process_start_time_seconds") <= time.time()
    python_threads = value(m, "embedsearch_python_threads")
    assert python_threads == threading.active_count() or python_threads >= 1  # the test client runs its own
    assert value(m, "process_threads") >= python_threads  # FAISS, BLAS and SQLite threads are not Python's


# --- the collections ----------------------------------------------------------------------------


def test_collection_gauges_match_the_store_and_follow_writes(client, settings):
    store = Store(settings)
    news = store.open("news")
    m = scrape(client)
    g = gauges(m, "news")
    info = news.info()
    assert value(m, "embedsearch_collection_stats_ok") == 1
    assert g["documents"] == news.count() == 200
    assert g["vectors"] == info["faiss_count"] == 200
    assert g["segments"] == len(info["segments"]) >= 2  # sealed at 64 vectors, and the growing one
    assert g["tombstones"] == info["tombstones"] == 0
    assert g["generation"] == news.committed_generation()
    assert g["bytes"] == file_bytes(news.dir) >= info["index_bytes"] > 0
    assert gauges(m, "empty") == {"documents": 0, "vectors": 0, "segments": 1, "tombstones": 0, "bytes": 0,
                                  "generation": store.open("empty").committed_generation()}  # fmt: skip
    # one series per collection
    assert sorted(s.labels["collection"] for s in m["embedsearch_collection_documents"]) == ["empty", "news"]

    # a write: more documents, a later generation
    docs = [{"id": f"new-{i}", "text": f"fresh cricket story {i}", "metadata": {"n": i}} for i in range(5)]
    r = client.post("/collections/news/documents", json={"documents": docs}, headers={"X-API-Key": KEY})
    assert r.status_code == 200, r.text
    after = gauges(scrape(client), "news")
    assert after["documents"] == 205 and after["vectors"] == 205
    assert after["generation"] > g["generation"]
    # a delete: one document less, its vector a tombstone until a merge
    assert client.delete("/collections/news/documents/new-0", headers={"X-API-Key": KEY}).status_code == 200
    deleted = gauges(scrape(client), "news")
    info = news.info()
    assert deleted["documents"] == news.count() == 204
    assert deleted["tombstones"] == info["tombstones"] == 1 and deleted["vectors"] == info["faiss_count"] == 204
    assert deleted["generation"] == after["generation"] + 1
    # optimize purges the tombstone; a dropped collection's series go, a new one's come
    news.optimize()
    store.drop("empty")
    store.create("later", news.load_embedder(), "Flat")
    m = scrape(client)
    assert gauges(m, "news")["tombstones"] == 0 and gauges(m, "news")["vectors"] == 204
    assert gauges(m, "news")["bytes"] == file_bytes(news.dir)
    assert sorted(s.labels["collection"] for s in m["embedsearch_collection_segments"]) == ["later", "news"]


@pytest.mark.slow  # MiniLM: chunking needs a model with a tokenizer
def test_a_chunked_collection_counts_its_passages_and_times_them(data_dir, minilm):
    settings = Settings.from_env(data_dir)
    coll = Store(settings).create("long", minilm, "Flat", lexical=True, chunking=Chunking(tokens=16, overlap=0))
    text = "The bowler took three wickets before lunch. Rain stopped play in the afternoon. " * 4
    coll.add_documents([Document(str(i), f"Match {i}. {text}", {}) for i in range(6)], minilm)
    with TestClient(create_app(settings)) as client:
        g = gauges(scrape(client), "long")
    assert g["documents"] == 6 and g["vectors"] == coll.info()["passages"] > 6
    for mode in ("dense", "hybrid"):
        timings: dict[str, float] = {}
        hits = search(coll, ["rain stopped play"], 3, mode=mode, embedder=minilm, timings=timings)
        assert len(hits[0]) == 3 and all(h.extras["passage"] for h in hits[0])
        assert "passages" in timings and set(timings) <= set(STAGES)


def test_scrapes_while_a_writer_commits_never_fail_nor_stop_it(client, settings, hashing):
    """A writer thread adds and replaces documents (seals and merges follow) while scrapes run in a
    loop: every scrape answers, parses, and shows one moment of the collection (its vectors are
    its documents: adds and replacements only), never going back; the writer finishes."""
    coll = Store(settings).open("news")
    start = coll.committed_generation()
    done = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for b in range(30):
                new = [Document(f"w{b}-{i}", f"writer batch {b} item {i} cricket", {"b": b}) for i in range(10)]
                again = [Document(f"doc-{b * 5 + i}", f"replaced text {b} {i}", {"b": b}) for i in range(5)]  # tombstones
                coll.add_documents(new + again, hashing)
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    seen = []
    try:
        while not done.is_set() or not seen:
            g = gauges(scrape(client), "news")
            assert g["vectors"] == g["documents"], g  # one statement: one moment of the database
            seen.append(g)
    finally:
        writer.join(timeout=120)
    assert not writer.is_alive() and not errors, errors
    assert len(seen) >= 2
    for a, b in zip(seen, seen[1:], strict=False):
        assert b["generation"] >= a["generation"] and b["documents"] >= a["documents"]
    final = gauges(scrape(client), "news")
    assert final["documents"] == coll.count() == 200 + 30 * 10
    assert final["generation"] == coll.committed_generation() >= start + 30


# --- the stages of a search ---------------------------------------------------------------------


EXPECTED = {  # the stages each kind of request runs
    "dense": {"plan", "embed", "view", "filter", "dense", "rows", "annotate"},
    "lexical": {"plan", "filter", "lexical", "rows", "annotate"},
    "hybrid": {"plan", "embed", "view", "filter", "dense", "lexical", "fuse", "rows", "annotate"},
    "vector": {"view", "filter", "dense", "rows"},
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_each_search_observes_each_stage_it_runs_once(client, hashing, kind):
    before = stage_counts(scrape(client))
    n = 3
    for i in range(n):
        if kind == "vector":
            body = {"vector": hashing.embed([f"cricket {i}"])[0].tolist(), "k": 3}
        else:
            body = {"query": f"cricket wickets {i}", "k": 3, "mode": kind, "where": {"source": "lee"}}
        r = client.post("/collections/news/search", json=body)
        assert r.status_code == 200 and r.json()["hits"], r.text
    m = scrape(client)
    grown = {s: c - before[s] for s, c in stage_counts(m).items()}
    assert grown == {s: (n if s in EXPECTED[kind] else 0) for s in STAGES}
    for s in EXPECTED[kind]:
        assert value(m, "embedsearch_search_stage_seconds", "embedsearch_search_stage_seconds_sum", stage=s) > 0
    # a batch request is one observation per stage, whatever its number of queries
    r = client.post("/collections/news/search/batch", json={"queries": ["cricket", "bushfire", "votes"], "k": 2})
    assert r.status_code == 200
    batch = {s: c - stage_counts(m)[s] for s, c in stage_counts(scrape(client)).items()}
    assert batch == {s: (1 if s in EXPECTED["hybrid"] else 0) for s in STAGES}


def test_the_library_reports_the_stages_to_a_caller_that_asks(settings, hashing):
    news = Store(settings).open("news")
    for mode, stages in (("dense", EXPECTED["dense"]), ("lexical", EXPECTED["lexical"]), ("hybrid", EXPECTED["hybrid"])):
        timings: dict[str, float] = {}
        started = time.perf_counter()
        hits = search(news, ["cricket wickets", "bushfire smoke"], 5, mode=mode, embedder=hashing, timings=timings)
        wall = time.perf_counter() - started
        assert set(timings) == stages and all(t >= 0 for t in timings.values())
        assert sum(timings.values()) <= wall  # the stages do not overlap
        untimed = search(news, ["cricket wickets", "bushfire smoke"], 5, mode=mode, embedder=hashing)
        assert [[h.id for h in q] for q in hits] == [[h.id for h in q] for q in untimed]
    # search_vectors too, and the seconds add up over calls
    timings = {}
    vec = hashing.embed(["cricket"])
    news.search_vectors(vec, 3, timings=timings)
    first = dict(timings)
    news.search_vectors(vec, 3, timings=timings)
    assert set(timings) == {"view", "filter", "dense", "rows"} and all(timings[s] > first[s] for s in first)
    assert np.isfinite(list(timings.values())).all()


# --- request ids in the log ---------------------------------------------------------------------


def word_model(tmp_path: Path) -> Path:
    """A word-vector model directory of its own: the first search that needs it loads it (and the
    library logs the load), whatever other tests loaded before."""
    from embedsearch.models import import_vectors

    rng = np.random.default_rng(0)
    words = ["cricket", "wickets", "bushfire", "smoke", "votes", "bank"]
    src = tmp_path / "vectors.txt"
    src.write_text("".join(f"{w} {' '.join(f'{x:.4f}' for x in rng.standard_normal(8))}\n" for w in words))
    out = tmp_path / "models" / "wm"
    import_vectors(src, "glove", out)
    return out


@pytest.fixture
def words_collection(tmp_path, data_dir) -> Settings:
    from embedsearch.embedders import load_embedder

    model = load_embedder(str(word_model(tmp_path)), cache=False)  # not in the process's cache: the service loads it
    settings = Settings.from_env(data_dir)
    coll = Store(settings).create("words", model, "Flat")
    coll.add_documents([Document("a", "cricket wickets", {}), Document("b", "bushfire smoke", {})], model)
    return settings


def test_every_log_line_of_a_request_carries_its_id(words_collection, caplog):
    caplog.set_level(logging.INFO, logger="embedsearch")
    caplog.handler.addFilter(RequestIdFilter())  # as `serve` puts it on its handler
    with TestClient(create_app(words_collection)) as client:
        r = client.post("/collections/words/search", json={"query": "cricket", "k": 1}, headers={"X-Request-ID": "load-1"})
        assert r.status_code == 200 and r.headers["X-Request-ID"] == "load-1"
        r = client.post("/collections/nope/search", json={"query": "x"}, headers={"X-Request-ID": "miss-2"})
        body = r.json()
        assert r.status_code == 404 and body["error"]["request_id"] == "miss-2" == r.headers["X-Request-ID"]
        r = client.post("/collections/words/search", json={"k": 1})  # no id given: one is made, and logged
        made = r.json()["error"]["request_id"]
        assert r.status_code == 422 and made == r.headers["X-Request-ID"]
    logging.getLogger("embedsearch.store").info("outside any request")
    lines = {(rec.name, rec.getMessage(), rec.request_id) for rec in caplog.records}
    loads = [x for x in lines if x[0] == "embedsearch.embedders" and x[1].startswith("loaded model ")]
    assert len(loads) == 1 and loads[0][2] == "load-1" and loads[0][1].endswith(" request_id=load-1"), lines  # the library's line
    assert [x[1] for x in lines if x[2] == "miss-2"] == [x[1] for x in lines if "-> 404" in x[1]]
    assert any("-> 422 in " in x[1] and x[1].endswith(f" request_id={made}") and x[2] == made for x in lines)
    assert all(x[1].count("request_id=") == 1 for x in lines if x[2])  # the app's own lines name it once
    assert ("embedsearch.store", "outside any request", None) in lines


def test_serve_logs_the_request_id_and_serves_the_metrics(words_collection, data_dir):
    """`embedsearch serve` as a process: its stderr log has the library's line of a request with
    that request's id, and its /metrics has the process and the collections."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "embedsearch", "--data-dir", str(data_dir), "serve", "--port", str(port),
                             "--no-preload"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/health/live", timeout=5).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the service did not start"
                time.sleep(0.1)
        req = urllib.request.Request(f"{base}/collections/words/search", data=b'{"query": "smoke", "k": 1}', method="POST",
                                     headers={"Content-Type": "application/json", "X-Request-ID": "served-7"})  # fmt: skip
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.headers["X-Request-ID"] == "served-7"
        with urllib.request.urlopen(f"{base}/metrics", timeout=30) as r:
            m = families(r.read().decode())
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    load = [line for line in err.splitlines() if "INFO embedsearch.embedders: loaded model " in line]
    assert len(load) == 1 and load[0].endswith(" request_id=served-7"), err
    assert value(m, "process_resident_memory_bytes") > 0 and value(m, "process_open_fds") > 0
    assert value(m, "process_threads") >= 1
    assert gauges(m, "words") == {"documents": 2, "vectors": 2, "segments": 1, "tombstones": 0,
                                  "bytes": file_bytes(data_dir / "words"), "generation": 2}  # fmt: skip
    assert value(m, "embedsearch_search_stage_seconds", "embedsearch_search_stage_seconds_count", stage="embed") == 1


def test_cli_search_prints_the_stage_timings_on_stderr(cli, data_dir, hashing):
    import json
    import re

    Store(Settings.from_env(data_dir)).create("news", hashing, "Flat", lexical=True).add_documents(topic_docs(40), hashing)
    r = cli("search", "news", "cricket wickets", "-k", "3", "--json", "--timings")
    assert r.exit_code == 0 and len(json.loads(r.stdout)) == 3  # stdout holds the hits alone
    found = re.fullmatch(r"stage ms: (.*); total (\d+\.\d\d)\n", r.stderr)
    assert found, r.stderr
    stages = [part.split() for part in found.group(1).split(", ")]
    assert [s for s, _ in stages] == [s for s in STAGES if s in EXPECTED["hybrid"]]  # in the order they run
    assert all(float(ms) >= 0 for _, ms in stages)
    assert "stage ms" not in cli("search", "news", "cricket wickets", "--json").output  # only when asked
