"""The HTTP service with the real app (TestClient), a real SQLite file and real FAISS indexes."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient

from embedsearch.config import Settings
from embedsearch.service.app import create_app
from embedsearch.service.requests import MAX_BODY_BYTES
from embedsearch.store import Store
from tests.conftest import topic_docs

KEY = "s3cret-key"


@pytest.fixture
def settings(data_dir, hashing) -> Settings:
    settings = Settings.from_env(data_dir)
    store = Store(settings)
    coll = store.create("news", hashing, "Flat")
    coll.add_documents(topic_docs(80), hashing)
    store.create("empty", hashing, "HNSW32")
    return settings


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings, api_key=KEY)) as c:
        yield c


def error_of(response) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "request_id"}, body
    assert body["error"]["request_id"] and response.headers["X-Request-ID"] == body["error"]["request_id"]
    assert "Traceback" not in response.text
    return response.status_code, body["error"]["code"]


def test_health_collections_and_describe(client):
    assert client.get("/health").json() == {"status": "ok", "version": client.app.version, "read_only": False, "auth": True,
                                            "preload": False, "models": []}  # fmt: skip
    names = {c["name"]: c for c in client.get("/collections").json()["collections"]}
    assert set(names) == {"news", "empty"} and names["news"]["doc_count"] == 80
    info = client.get("/collections/news").json()
    assert info["name"] == "news" and info["dim"] == 256
    assert "hashing" in client.get("/models").json()["in_use"]


def test_text_search_with_filter(client):
    r = client.post("/collections/news/search", json={"query": "interest rates bank", "k": 5, "where": {"source": "lee"}})
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert len(hits) == 5
    assert all(h["metadata"]["source"] == "lee" for h in hits)
    assert all("interest rates bank" in h["text"] for h in hits)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


def test_vector_search_and_batch(client, hashing):
    vec = hashing.embed(["cricket test wickets batsman"])[0]
    r = client.post("/collections/news/search", json={"vector": (vec * 3).tolist(), "k": 3})
    assert r.status_code == 200, r.text
    assert all("cricket" in h["text"] for h in r.json()["hits"])
    r = client.post("/collections/news/search/batch", json={"queries": ["bushfire smoke", "election votes"], "k": 2})
    results = r.json()["results"]
    assert [len(x["hits"]) for x in results] == [2, 2]
    assert "bushfire" in results[0]["hits"][0]["text"] and "election" in results[1]["hits"][0]["text"]


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/collections/nope/search", {"query": "x"}, 404, "collection_not_found"),
        ("/collections/..%2Fetc/search", {"query": "x"}, 404, "not_found"),  # never reaches the data directory
        ("/collections/bad name/search", {"query": "x"}, 400, "invalid_name"),
        ("/collections/news/search", {"vector": [0.1, 0.2, 0.3]}, 422, "dimension_mismatch"),
        ("/collections/news/search", {"query": "x", "where": {"year": {"$regex": "x"}}}, 422, "invalid_filter"),
        ("/collections/news/search", {"query": "x", "where": {"$or": "notalist"}}, 422, "invalid_filter"),
        ("/collections/news/search", {"query": "x", "k": 0}, 422, "invalid_request"),
        ("/collections/news/search", {"query": "x", "k": 1001}, 422, "invalid_request"),
        ("/collections/news/search", {"query": ""}, 422, "invalid_request"),
        ("/collections/news/search", {}, 422, "invalid_argument"),
        ("/collections/news/search", {"query": "x", "vector": [1.0]}, 422, "invalid_argument"),
        ("/collections/news/search/batch", {"queries": []}, 422, "invalid_request"),
    ],
)
def test_bad_search_requests(client, path, body, status, code):
    r = client.post(path, json=body)
    assert error_of(r) == (status, code), r.text


def test_malformed_json_and_oversized_body(client):
    r = client.post("/collections/news/search", content=b"{not json", headers={"content-type": "application/json"})
    assert error_of(r) == (422, "invalid_request")
    big = b'{"query": "' + b"a" * (MAX_BODY_BYTES + 10) + b'"}'
    r = client.post("/collections/news/search", content=big, headers={"content-type": "application/json"})
    assert error_of(r) == (413, "body_too_large")

    def chunks():  # no Content-Length: the server counts what arrives
        yield b'{"query": "'
        for _ in range(9):
            yield b"a" * 2**20
        yield b'"}'

    r = client.post("/collections/news/search", content=chunks(), headers={"content-type": "application/json"})
    assert error_of(r) == (413, "body_too_large")
    small = iter([b'{"query": "cricket", ', b'"k": 2}'])
    r = client.post("/collections/news/search", content=small, headers={"content-type": "application/json"})
    assert r.status_code == 200 and len(r.json()["hits"]) == 2


def test_writes_need_the_api_key(client):
    doc = {"documents": [{"id": "new-1", "text": "volcano eruption lava ash", "metadata": {"source": "web"}}]}
    assert error_of(client.post("/collections/news/documents", json=doc)) == (401, "missing_api_key")
    assert error_of(client.post("/collections/news/documents", json=doc, headers={"X-API-Key": "wrong"})) == (
        403,
        "wrong_api_key",
    )
    assert error_of(client.delete("/collections/news/documents/doc-1")) == (401, "missing_api_key")
    r = client.post("/collections/news/documents", json=doc, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200 and r.json()["added"] == 1
    hits = client.post("/collections/news/search", json={"query": "volcano eruption", "k": 1}).json()["hits"]
    assert hits[0]["id"] == "new-1" and hits[0]["metadata"] == {"source": "web"}
    r = client.delete("/collections/news/documents/new-1", headers={"X-API-Key": KEY})
    assert r.status_code == 200 and r.json()["deleted"] == 1
    assert error_of(client.delete("/collections/news/documents/new-1", headers={"X-API-Key": KEY})) == (404, "document_not_found")
    assert client.get("/collections/news").json()["doc_count"] == 80


def test_bad_documents_are_rejected_whole(client):
    bad = {"documents": [{"id": "ok", "text": "fine"}, {"id": "", "text": "no id"}]}
    assert error_of(client.post("/collections/news/documents", json=bad, headers={"X-API-Key": KEY}))[0] == 422
    assert client.get("/collections/news").json()["doc_count"] == 80


def test_read_only_mode(settings):
    with TestClient(create_app(settings, read_only=True)) as c:
        doc = {"documents": [{"id": "x", "text": "y"}]}
        assert error_of(c.post("/collections/news/documents", json=doc)) == (403, "read_only")
        assert c.post("/collections/news/search", json={"query": "cricket", "k": 1}).status_code == 200


def test_without_a_key_writes_are_open(settings):
    with TestClient(create_app(settings)) as c:
        r = c.post("/collections/news/documents", json={"documents": [{"id": "x", "text": "lava"}]})
        assert r.status_code == 200


def test_concurrent_searches_and_a_writer(client):
    errors: list[str] = []

    def searcher():
        for _ in range(15):
            r = client.post("/collections/news/search", json={"query": "bushfire smoke", "k": 5})
            if r.status_code != 200 or len(r.json()["hits"]) != 5:
                errors.append(r.text)

    def writer():
        for i in range(5):
            docs = {"documents": [{"id": f"w{i}-{j}", "text": f"bushfire smoke extra {i} {j}"} for j in range(10)]}
            r = client.post("/collections/news/documents", json=docs, headers={"X-API-Key": KEY})
            if r.status_code != 200:
                errors.append(r.text)

    threads = [threading.Thread(target=searcher) for _ in range(4)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert client.get("/collections/news").json()["doc_count"] == 130


def scrape(client) -> dict[str, list]:
    """/metrics parsed by prometheus_client's own parser: metric family name -> samples."""
    from prometheus_client.parser import text_string_to_metric_families

    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=")
    return {f.name: f.samples for f in text_string_to_metric_families(r.text)}


def test_metrics_in_the_prometheus_text_format(client):
    client.get("/health")
    client.get("/health")
    client.post("/collections/nope/search", json={"query": "x"})
    client.post("/collections/news/search", json={"query": "cricket", "k": 2})
    client.get("/no/such/path/1")
    client.get("/no/such/path/2")
    m = scrape(client)
    counts = {(s.labels["method"], s.labels["route"], s.labels["status"]): s.value
              for s in m["embedsearch_http_requests"] if s.name.endswith("_total")}  # fmt: skip
    assert counts[("GET", "/health", "200")] == 2
    assert counts[("POST", "/collections/{name}/search", "404")] == 1
    assert counts[("POST", "/collections/{name}/search", "200")] == 1
    assert counts[("GET", "other", "404")] == 2  # unmatched paths share one series
    assert all(route != "/no/such/path/1" for _, route, _ in counts)
    hist = m["embedsearch_http_request_duration_seconds"]
    by_route = {}
    for s in hist:
        if s.name.endswith("_count"):
            by_route[(s.labels["method"], s.labels["route"])] = s.value
    assert by_route[("GET", "/health")] == 2 and by_route[("POST", "/collections/{name}/search")] == 2
    assert sum(by_route.values()) == sum(counts.values())
    search_buckets = [s for s in hist if s.name.endswith("_bucket") and s.labels["route"] == "/collections/{name}/search"]
    assert [s.labels["le"] for s in search_buckets][-1] == "+Inf" and search_buckets[-1].value == 2
    values = [s.value for s in search_buckets]
    assert values == sorted(values)  # cumulative
    (enabled,) = m["embedsearch_query_batching_enabled"]
    assert enabled.value == 1
    calls = {s.name: s.value for s in m["embedsearch_query_batching_model_calls"]}
    assert calls["embedsearch_query_batching_model_calls_total"] >= 1
    # the scrape itself is counted by the next one
    again = scrape(client)
    metrics_hits = [s.value for s in again["embedsearch_http_requests"]
                    if s.name.endswith("_total") and s.labels["route"] == "/metrics"]  # fmt: skip
    assert metrics_hits == [1.0]


def test_metrics_of_two_apps_are_apart(settings):
    with TestClient(create_app(settings)) as a, TestClient(create_app(settings, batch_queries=False)) as b:
        a.get("/health")
        m = scrape(b)
        assert not [s for s in m["embedsearch_http_requests"] if s.labels.get("route") == "/health"]
        assert m["embedsearch_query_batching_enabled"][0].value == 0


def test_page_and_openapi(client):
    r = client.get("/")
    assert r.status_code == 200 and "<form" in r.text and "/static/app.js" in r.text
    assert "fetch(" in client.get("/static/app.js").text
    schema = client.get("/openapi.json").json()
    assert "/collections/{name}/search" in schema["paths"]
    assert schema["components"]["schemas"]["SearchRequest"]["properties"]["k"]["maximum"] == 1000


def test_word_models_similar_and_describe(settings, tmp_path):
    from embedsearch.models import import_vectors

    words = ["alpha", "beta", "gamma"]
    vectors = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 0, 1]], dtype=np.float32)
    src = tmp_path / "v.txt"
    src.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in zip(words, vectors, strict=True)))
    import_vectors(src, "glove", tmp_path / "models" / "wm")
    with TestClient(create_app(settings, models_dir=tmp_path / "models")) as client:
        r = client.post("/similar", json={"model": "wm", "word": "Alpha", "k": 2})
        assert r.status_code == 200, r.text
        assert [x["word"] for x in r.json()["results"]] == ["beta", "gamma"]
        assert error_of(client.post("/similar", json={"model": "wm", "word": "delta"})) == (404, "out_of_vocabulary")
        assert error_of(client.post("/similar", json={"model": "none", "word": "x"})) == (404, "unknown_model")
        # a model name cannot reach outside the models directory
        assert error_of(client.post("/similar", json={"model": "../models/wm", "word": "x"})) == (400, "invalid_name")
        assert error_of(client.post("/similar", json={"model": str(tmp_path / "models" / "wm"), "word": "x"}))[0] == 400
        assert client.get("/models/wm").json()["vocab_size"] == 3
        assert [m["name"] for m in client.get("/models").json()["available"]] == ["wm"]
        assert error_of(client.get("/models/nope")) == (404, "unknown_model")


def test_serve_binds_loopback_by_default(cli):
    r = cli("serve", "--help")
    assert "[default: 127.0.0.1]" in r.output


def test_batching_embedder_gathers_concurrent_queries(hashing):
    from embedsearch.embedders.base import Embedder
    from embedsearch.service.batching import BatchingEmbedder

    texts = [f"query number {i} about cricket" for i in range(24)]
    batcher = BatchingEmbedder(hashing, max_wait_ms=20)
    out: dict[int, np.ndarray] = {}
    barrier = threading.Barrier(len(texts))

    def ask(i: int) -> None:
        barrier.wait()
        out[i] = batcher.embed([texts[i]])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = hashing.embed(texts)
    for i in range(len(texts)):
        np.testing.assert_array_equal(out[i][0], expected[i])  # each request gets its own row
    assert batcher.texts == 24 and batcher.calls < 24

    class Broken(Embedder):
        name = spec = fingerprint = "broken"
        dim = 4

        def embed_batch(self, texts):
            raise RuntimeError("model failed")

    with pytest.raises(RuntimeError, match="model failed"):
        BatchingEmbedder(Broken()).embed(["x"])


def test_metrics_report_query_batching(client):
    for q in ("cricket", "bushfire"):
        client.post("/collections/news/search", json={"query": q, "k": 1})
    m = scrape(client)
    assert m["embedsearch_query_batching_enabled"][0].value == 1
    assert m["embedsearch_query_batching_queries"][0].value == 2
    assert 1 <= m["embedsearch_query_batching_model_calls"][0].value <= 2


def test_a_collection_recreated_behind_the_service_is_followed(client, settings, hashing):
    assert client.get("/collections/news").json()["doc_count"] == 80
    store = Store(settings)  # another process's view, like the CLI
    store.drop("news")
    assert error_of(client.post("/collections/news/search", json={"query": "x"})) == (404, "collection_not_found")
    store.create("news", hashing, "Flat").add_documents(topic_docs(4), hashing)
    hits = client.post("/collections/news/search", json={"query": "cricket", "k": 10}).json()["hits"]
    assert len(hits) == 4


def test_errors_carry_a_request_id_that_the_log_line_has_too(client, caplog):
    with caplog.at_level("WARNING", logger="embedsearch.service"):
        r = client.post("/collections/news/search", json={"query": "rates", "where": {"year": {"$bogus": 1}}})
    assert r.status_code == 422
    rid = r.json()["error"]["request_id"]
    assert rid and r.headers["X-Request-ID"] == rid
    assert [m for m in caplog.messages if f"request_id={rid}" in m and "-> 422" in m]
    # a client's own id is kept (when it is a short token), and successes carry it in the header
    r = client.get("/health", headers={"X-Request-ID": "trace-42"})
    assert r.status_code == 200 and r.headers["X-Request-ID"] == "trace-42"
    r = client.get("/collections/nope", headers={"X-Request-ID": "bad id with spaces"})
    assert r.status_code == 404 and r.json()["error"]["request_id"] not in ("", "bad id with spaces")


def test_an_internal_error_gives_its_request_id_and_logs_the_traceback(settings, caplog):
    class Broken:
        def list(self):
            raise RuntimeError("disk on fire")

    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        c.app.state.service._store = Broken()
        with caplog.at_level("ERROR", logger="embedsearch.service"):
            r = c.get("/collections")
    assert r.status_code == 500
    body = r.json()["error"]
    assert body["code"] == "internal_error" and "disk on fire" not in body["message"]
    rid = body["request_id"]
    assert rid in body["message"]
    (record,) = [rec for rec in caplog.records if f"request_id={rid}" in rec.getMessage()]
    assert record.exc_info and "disk on fire" in str(record.exc_info[1])


def test_api_docs_work_offline(client):
    """/docs used to load Swagger UI from a CDN: every script, style and icon now comes from us."""
    import re

    page = client.get("/docs")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text) + re.findall(r"url: ?['\"]([^'\"]+)['\"]", page.text)
    assert urls and not [u for u in urls if "//" in u], urls  # nothing off this server
    for u in urls:
        assert client.get(u).status_code == 200, u
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1")
    from swagger_ui_bundle import swagger_ui_path

    assert "swagger-ui-5." in str(swagger_ui_path)  # Swagger UI 4 cannot render OpenAPI 3.1
