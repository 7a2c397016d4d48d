"""The document and collection routes of the HTTP service (real app, real SQLite file): get by id,
list by cursor, count, create and drop collections, with their errors."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from embedsearch.service.app import create_app
from tests.conftest import topic_docs
from tests.test_service import KEY, client, error_of, settings  # noqa: F401  (fixtures)

AUTH = {"X-API-Key": KEY}


def test_get_a_document(client):  # noqa: F811
    r = client.get("/collections/news/documents/doc-3")
    assert r.status_code == 200
    d = topic_docs(4)[3]
    assert r.json() == {"id": "doc-3", "text": d.text, "metadata": d.metadata}
    assert error_of(client.get("/collections/news/documents/ghost")) == (404, "document_not_found")
    assert error_of(client.get("/collections/nope/documents/doc-3")) == (404, "collection_not_found")
    r = client.post("/collections/news/documents/get", json={"ids": ["doc-2", "ghost", "doc-1"]})
    assert [d["id"] for d in r.json()["documents"]] == ["doc-2", "doc-1"] and r.json()["not_found"] == ["ghost"]


def test_ids_with_slashes_and_unicode(client):  # noqa: F811
    doc = {"documents": [{"id": "docs/a b/é.txt", "text": "lava flows", "metadata": {"k": "v"}}]}
    assert client.post("/collections/news/documents", json=doc, headers=AUTH).status_code == 200
    r = client.get("/collections/news/documents/docs/a%20b/%C3%A9.txt")
    assert r.status_code == 200 and r.json()["id"] == "docs/a b/é.txt"
    assert client.delete("/collections/news/documents/docs/a%20b/%C3%A9.txt", headers=AUTH).json()["deleted"] == 1


def test_list_pages_and_count(client):  # noqa: F811
    seen, cursor = [], None
    while True:
        r = client.post("/collections/news/documents/list", json={"where": {"source": "lee"}, "limit": 7, "cursor": cursor})
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"collection", "documents", "next_cursor"}
        seen += [d["id"] for d in body["documents"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
        if len(seen) == 7:  # a write between pages: the new document is listed once, nothing is skipped
            new = {"documents": [{"id": "late", "text": "late news", "metadata": {"source": "lee"}}]}
            assert client.post("/collections/news/documents", json=new, headers=AUTH).status_code == 200
    assert seen == [f"doc-{i}" for i in range(1, 80, 2)] + ["late"]
    everything = client.post("/collections/news/documents/list", json={"limit": 1000}).json()
    assert len(everything["documents"]) == 81 and everything["next_cursor"] is None
    assert client.post("/collections/news/count", json={}).json() == {"collection": "news", "count": 81}
    r = client.post("/collections/news/count", json={"where": {"year": {"$gte": 2001}, "source": "bbc"}})
    expected = sum(1 for d in topic_docs(80) if d.metadata["year"] >= 2001 and d.metadata["source"] == "bbc")
    assert r.json()["count"] == expected
    assert client.post("/collections/empty/count", json={"where": None}).json()["count"] == 0


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/collections/news/documents/list", {"cursor": "garbage"}, 422, "invalid_cursor"),
        ("/collections/news/documents/list", {"where": {"a": {"$regex": "x"}}}, 422, "invalid_filter"),
        ("/collections/news/documents/list", {"where": {"$or": "x"}}, 422, "invalid_filter"),
        ("/collections/news/documents/list", {"limit": 0}, 422, "invalid_request"),
        ("/collections/news/documents/list", {"limit": 1001}, 422, "invalid_request"),
        ("/collections/news/documents/list", {"where": "text"}, 422, "invalid_request"),
        ("/collections/nope/documents/list", {}, 404, "collection_not_found"),
        ("/collections/news/count", {"where": {"year": {"$near": 1}}}, 422, "invalid_filter"),
        ("/collections/nope/count", {}, 404, "collection_not_found"),
        ("/collections/news/documents/get", {"ids": []}, 422, "invalid_request"),
    ],
)
def test_bad_document_requests(client, path, body, status, code):  # noqa: F811
    assert error_of(client.post(path, json=body)) == (status, code)


def test_a_cursor_only_goes_with_its_filter_and_collection(client):  # noqa: F811
    cursor = client.post("/collections/news/documents/list", json={"limit": 2}).json()["next_cursor"]
    r = client.post("/collections/news/documents/list", json={"limit": 2, "cursor": cursor, "where": {"source": "lee"}})
    assert error_of(r) == (422, "invalid_cursor") and "another filter" in r.json()["error"]["message"]
    r = client.post("/collections/empty/documents/list", json={"limit": 2, "cursor": cursor})
    assert error_of(r) == (422, "invalid_cursor") and "another collection" in r.json()["error"]["message"]


def test_create_and_drop_collections(client):  # noqa: F811
    body = {"model": "hashing", "index": "HNSW32"}
    assert error_of(client.put("/collections/fresh", json=body)) == (401, "missing_api_key")
    assert error_of(client.put("/collections/fresh", json=body, headers={"X-API-Key": "wrong"})) == (403, "wrong_api_key")
    r = client.put("/collections/fresh", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    info = r.json()
    assert (info["name"], info["model"], info["index_spec"], info["doc_count"]) == ("fresh", "hashing", "HNSW32", 0)
    assert error_of(client.put("/collections/fresh", json=body, headers=AUTH)) == (409, "collection_exists")
    docs = {"documents": [{"id": "x1", "text": "volcano lava"}]}
    assert client.post("/collections/fresh/documents", json=docs, headers=AUTH).json()["added"] == 1
    assert client.post("/collections/fresh/search", json={"query": "lava", "k": 1}).json()["hits"][0]["id"] == "x1"
    assert error_of(client.delete("/collections/fresh")) == (401, "missing_api_key")
    r = client.delete("/collections/fresh", headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200 and r.json() == {"dropped": "fresh", "documents": 1}
    assert error_of(client.get("/collections/fresh")) == (404, "collection_not_found")
    assert error_of(client.delete("/collections/fresh", headers=AUTH)) == (404, "collection_not_found")
    assert "fresh" not in {c["name"] for c in client.get("/collections").json()["collections"]}
    # created again after the drop: a new, empty collection
    assert client.put("/collections/fresh", json=body, headers=AUTH).status_code == 201
    assert client.post("/collections/fresh/count", json={}).json()["count"] == 0


def test_create_a_collection_with_payload_indexes(client):  # noqa: F811
    body = {"model": "hashing", "index_fields": ["year", "who.name"]}
    r = client.put("/collections/indexed", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    assert r.json()["index_fields"] == {"who.name": 0, "year": 0}
    docs = {"documents": [{"id": f"x{y}", "text": "lava", "metadata": {"year": y}} for y in (2001, 1999)]}
    assert client.post("/collections/indexed/documents", json=docs, headers=AUTH).json()["added"] == 2
    r = client.post("/collections/indexed/search", json={"query": "lava", "k": 5, "where": {"year": {"$gte": 2000}}})
    assert [h["id"] for h in r.json()["hits"]] == ["x2001"]
    r = client.put("/collections/bad", json={"model": "hashing", "index_fields": ["a.0"]}, headers=AUTH)
    assert r.status_code == 422 and "numeric segments" in r.text


@pytest.mark.parametrize(
    ("name", "body", "status", "code"),
    [
        ("bad name", {"model": "hashing"}, 400, "invalid_name"),
        ("x", {"model": "no-such-model"}, 422, "unknown_model"),
        ("x", {"model": "../../etc"}, 422, "unknown_model"),  # never a path outside --models-dir
        ("x", {"model": "/tmp"}, 422, "unknown_model"),
        ("x", {"model": "hashing", "index": "IVF,Foo"}, 422, "invalid_index_spec"),
        ("x", {"model": "hashing", "metric": "l2"}, 422, "invalid_request"),
        ("x", {"model": "hashing", "pooling": "sif"}, 422, "unknown_model"),
        ("news", {"model": "hashing"}, 409, "collection_exists"),
    ],
)
def test_bad_creates(client, name, body, status, code):  # noqa: F811
    assert error_of(client.put(f"/collections/{name}", json=body, headers=AUTH)) == (status, code)
    assert "x" not in {c["name"] for c in client.get("/collections").json()["collections"]}


def test_read_only_refuses_create_and_drop(settings):  # noqa: F811
    with TestClient(create_app(settings, read_only=True)) as c:
        assert error_of(c.put("/collections/fresh", json={"model": "hashing"})) == (403, "read_only")
        assert error_of(c.delete("/collections/news")) == (403, "read_only")
        assert c.post("/collections/news/count", json={}).json()["count"] == 80
        assert c.post("/collections/news/documents/list", json={"limit": 1}).status_code == 200


def test_a_model_from_the_models_dir(settings, tmp_path):  # noqa: F811
    from embedsearch.models import import_vectors

    src = tmp_path / "v.txt"
    src.write_text("lava 1 0 0\nvolcano 0.9 0.1 0\ncricket 0 0 1\n", encoding="utf-8")
    import_vectors(src, "glove", tmp_path / "models" / "tiny")
    with TestClient(create_app(settings, api_key=KEY, models_dir=tmp_path / "models")) as c:
        r = c.put("/collections/words", json={"model": "tiny", "pooling": "mean"}, headers=AUTH)
        assert r.status_code == 201, r.text
        assert r.json()["dim"] == 3 and r.json()["model"] == str(tmp_path / "models" / "tiny")
