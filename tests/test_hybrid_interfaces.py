"""Search modes, the lexical index and highlights through the CLI and the HTTP API, on SQLite and
PostgreSQL; the bad-input table from test_lexical.py goes through both interfaces."""

from __future__ import annotations

import json
import uuid

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from embedsearch.cli import main
from embedsearch.config import Settings
from embedsearch.service.app import create_app
from embedsearch.store import Store
from tests.conftest import pg_url, topic_docs
from tests.test_lexical import BAD_QUERIES, DBS

DOCS = [
    {"id": "e1", "text": "Error E1234 on startup: the pump controller resets.", "source": "manual"},
    {"id": "e2", "text": "The pump overheats when the filter is blocked.", "source": "manual"},
    {"id": "e3", "text": 'He said "AND" OR NOT; NEAR the (end) -- text:cricket', "source": "notes"},
    {"id": "e4", "text": "Cricket scores from the weekend.", "source": "notes"},
]


@pytest.fixture(params=DBS)
def env(request, tmp_path):
    """(run CLI, collection name, settings) with a collection made by the CLI on the database."""
    url = pg_url() if request.param == "postgresql" else None
    base = ["--data-dir", str(tmp_path / "data")] + (["--db", url] if url else [])
    runner = CliRunner()

    def run(*args, input=None):
        return runner.invoke(main, [*base, *args], input=input, catch_exceptions=False)

    name = f"hy-{uuid.uuid4().hex[:8]}"
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    r = run("index", "create", name, "--model", "hashing")
    assert r.exit_code == 0 and "lexical index" in r.output, r.output
    assert run("index", "add", name, str(src)).exit_code == 0
    settings = Settings.from_env(tmp_path / "data", url) if url else Settings.from_env(tmp_path / "data")
    yield run, name, settings
    run("index", "drop", name, "--yes")


def test_cli_modes_json_and_table_marks(env):
    run, name, _ = env
    r = run("search", name, "e1234 startup", "--mode", "lexical", "--json")
    assert r.exit_code == 0, r.output
    hits = json.loads(r.output)
    assert [h["id"] for h in hits] == ["e1"] and hits[0]["mode"] == "lexical"
    text = hits[0]["text"]
    assert [(x["term"], text[x["start"] : x["end"]]) for x in hits[0]["highlights"]] == [
        ("e1234", "E1234"),
        ("startup", "startup"),
    ]
    r = run("search", name, "pump", "-k", "4", "--json")  # hybrid by default
    hits = json.loads(r.output)
    assert len(hits) == 4 and {h["mode"] for h in hits} == {"hybrid"}
    assert {h["id"] for h in hits if h["ranks"]["lexical"]} == {"e1", "e2"}
    r = run("search", name, "pump", "--mode", "hybrid", "--fusion", "weighted", "--alpha", "0", "-k", "2", "--json")
    assert {h["id"] for h in json.loads(r.output)} == {"e1", "e2"}  # alpha 0: lexical alone decides
    r = run("search", name, "pump", "--mode", "dense", "--fields", "id,mode", "--jsonl")
    assert {json.loads(line)["mode"] for line in r.output.splitlines()} == {"dense"}
    r = run("search", name, "overheats", "--mode", "lexical")
    assert r.exit_code == 0 and "**overheats**" in r.output
    r = run("search", name, "cricket", "--mode", "lexical", "--where", '{"source": "manual"}')
    assert r.output.strip() == "no hits (no document matches the filter)" or r.output.strip().startswith("no hits")
    r = run("search", name, "pump", "--alpha", "0.3")
    assert r.exit_code == 2 and "--alpha applies to --fusion weighted only" in r.output


def test_cli_alter_repair_info_verify(env):
    run, name, _ = env
    info = json.loads(run("index", "info", name, "--json").output)
    assert info["lexical"]["documents"] == 4
    assert "lexical" in run("index", "info", name).output
    r = run("index", "alter", name, "--no-lexical")
    assert r.exit_code == 0 and "lexical index dropped" in r.output
    r = run("search", name, "pump", "--mode", "lexical")
    assert r.exit_code == 2 and f"index alter {name} --lexical" in r.output
    assert json.loads(run("search", name, "pump", "--json").output)[0]["mode"] == "dense"
    r = run("index", "alter", name, "--lexical")
    assert r.exit_code == 0 and "lexical index built (4 documents)" in r.output
    r = run("index", "repair", name, "--lexical", "--json")
    assert r.exit_code == 0 and json.loads(r.output)["documents_indexed"] == 4
    assert run("index", "verify", name, "--no-model-check").exit_code == 0
    r = run("index", "alter", name)
    assert r.exit_code == 2 and "--lexical" in r.output


def test_cli_no_lexical_at_create(tmp_path):
    runner = CliRunner()
    base = ["--data-dir", str(tmp_path)]
    assert runner.invoke(main, [*base, "index", "create", "v", "--model", "hashing", "--no-lexical"]).exit_code == 0
    assert json.loads(runner.invoke(main, [*base, "index", "info", "v", "--json"]).output)["lexical"] is None


@pytest.mark.parametrize("mode", ["lexical", "hybrid"])
def test_bad_queries_through_the_cli(env, mode):
    run, name, _ = env
    for q in BAD_QUERIES:
        if not q.strip() or "\x00" in q:
            continue  # the CLI refuses an empty query (usage error) and argv cannot hold NUL
        r = run("search", name, "--mode", mode, "--json", "--", q)  # "--": a query may start with "-"
        assert r.exit_code == 0, (q, r.output)
        assert isinstance(json.loads(r.output), list)
    r = run("search", name, "NEAR(", "--mode", "lexical", "--json")
    assert [h["id"] for h in json.loads(r.output)] == ["e3"]
    r = run("search", name, "*", "--mode", "lexical")
    assert r.exit_code == 0 and r.output.strip() == "no hits (the query has no words)"


@pytest.mark.parametrize("mode", ["lexical", "hybrid"])
def test_bad_queries_through_http(env, mode):
    _, name, settings = env
    with TestClient(create_app(settings)) as client:
        for q in BAD_QUERIES:
            r = client.post(f"/collections/{name}/search", json={"query": q, "k": 3, "mode": mode})
            assert r.status_code == 200, (q, r.text)
            assert r.json()["mode"] == mode
        r = client.post(f"/collections/{name}/search/batch", json={"queries": BAD_QUERIES, "k": 2, "mode": mode})
        assert r.status_code == 200, r.text
        assert len(r.json()["results"]) == len(BAD_QUERIES)


def test_http_modes_fusion_and_errors(env):
    _, name, settings = env
    with TestClient(create_app(settings)) as client:
        url = f"/collections/{name}/search"
        body = client.post(url, json={"query": "E1234", "k": 2}).json()
        assert body["mode"] == "hybrid" and body["hits"][0]["id"] == "e1"
        assert body["hits"][0]["ranks"] == {"dense": body["hits"][0]["ranks"]["dense"], "lexical": 1}
        hit = client.post(url, json={"query": "e1234", "mode": "lexical"}).json()["hits"][0]
        assert hit["highlights"] == [{"term": "e1234", "start": 6, "end": 11}]
        r = client.post(url, json={"query": "pump", "mode": "hybrid", "fusion": "weighted", "alpha": 1, "k": 4})
        assert r.status_code == 200 and len(r.json()["hits"]) == 4
        r = client.post(url, json={"query": "pump", "where": {"source": "notes"}, "mode": "lexical"})
        assert r.json()["hits"] == []
        for bad, code in [
            ({"query": "x", "mode": "fuzzy"}, "invalid_request"),
            ({"query": "x", "alpha": 2, "fusion": "weighted"}, "invalid_request"),
            ({"query": "x", "alpha": True, "fusion": "weighted"}, "invalid_request"),
            ({"query": "x", "alpha": 0.5}, None),
            ({"vector": [0.0] * 256, "mode": "lexical"}, None),
        ]:
            r = client.post(url, json=bad)
            assert r.status_code == 422, (bad, r.text)
            if code:
                assert r.json()["error"]["code"] == code


def test_http_lexical_on_a_collection_without_one(tmp_path, hashing):
    settings = Settings.from_env(tmp_path)
    Store(settings).create("plain", hashing).add_documents(topic_docs(10), hashing)
    with TestClient(create_app(settings)) as client:
        r = client.post("/collections/plain/search", json={"query": "cricket", "mode": "lexical"})
        assert r.status_code == 422 and "index alter plain --lexical" in r.json()["error"]["message"]
        assert client.post("/collections/plain/search", json={"query": "cricket"}).json()["mode"] == "dense"
        r = client.put("/collections/withlex", json={"model": "hashing"})
        assert r.status_code in (200, 201), r.text
        r = client.put("/collections/nolex", json={"model": "hashing", "lexical": False})
        assert r.status_code in (200, 201), r.text
    store = Store(settings)
    assert store.open("withlex").has_lexical() and not store.open("nolex").has_lexical()
