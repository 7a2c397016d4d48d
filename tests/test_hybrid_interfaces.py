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
    r = run("search", name, "pump", "--fusion", "rrf", "--alpha", "0.3")
    assert r.exit_code == 2 and "alpha applies to fusion relative and weighted only" in r.output
    r = run("search", name, "pump", "--alpha", "0.3", "--json")  # the default fusion (relative) takes alpha
    assert r.exit_code == 0 and json.loads(r.output)[0]["mode"] == "hybrid"


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
            ({"query": "x", "alpha": 0.5, "fusion": "rrf"}, None),
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


def test_stored_search_settings_reach_the_cli_the_library_and_http(env):
    """`index alter --default-mode/--fusion/--alpha` is how a collection is searched when a query
    does not say, through every interface; bad settings are refused and change nothing."""
    from embedsearch.search import plan, search

    run, name, settings = env
    r = run("index", "alter", name, "--default-mode", "lexical", "--json")
    unset = {"fusion": None, "alpha": None, "stop_words": None}
    assert r.exit_code == 0 and json.loads(r.output)["search"] == {"mode": "lexical", **unset}
    assert {h["mode"] for h in json.loads(run("search", name, "pump", "--json").output)} == {"lexical"}
    assert "lexical (stored by index alter (mode))" in run("index", "info", name).output
    with TestClient(create_app(settings)) as client:
        assert client.post(f"/collections/{name}/search", json={"query": "pump"}).json()["mode"] == "lexical"
        assert client.get(f"/collections/{name}").json()["search"]["mode"] == "lexical"
    coll = Store(settings).open(name)
    assert search(coll, ["pump"], 2)[0][0].extras["mode"] == "lexical"  # no model loaded: lexical
    assert search(coll, ["pump"], 2, mode="hybrid", embedder=coll.load_embedder())[0][0].extras["mode"] == "hybrid"

    r = run("index", "alter", name, "--default-mode", "hybrid", "--fusion", "rrf", "--json")
    assert json.loads(r.output)["search"] == {"mode": "hybrid", "fusion": "rrf", "alpha": None, "stop_words": None}
    hits = json.loads(run("search", name, "pump", "-k", "4", "--json").output)
    assert max(h["score"] for h in hits) <= 2 / 61 + 1e-5  # reciprocal rank fusion's scale (scores are rounded)
    for bad, message in [
        (("--alpha", "0.3"), "alpha applies to fusion relative and weighted only"),  # the stored fusion is rrf
        (("--fusion", "weighted", "--alpha", "3"), "3.0 is not in the range"),
    ]:
        r = run("index", "alter", name, *bad)
        assert r.exit_code == 2 and message in r.output, r.output
    assert plan(coll) == plan(coll, "hybrid", "rrf")  # unchanged by the refusals
    r = run("index", "alter", name, "--fusion", "weighted", "--alpha", "0", "--json")
    assert json.loads(r.output)["search"] == {"mode": "hybrid", "fusion": "weighted", "alpha": 0.0, "stop_words": None}
    hits = json.loads(run("search", name, "pump", "-k", "2", "--json").output)
    assert {h["id"] for h in hits} == {"e1", "e2"}  # alpha 0: the lexical side alone decides
    # a query's own settings win over the stored ones
    assert json.loads(run("search", name, "pump", "--mode", "dense", "--json").output)[0]["mode"] == "dense"

    # dropping the lexical index: a stored mode that needs it falls back to dense
    assert run("index", "alter", name, "--no-lexical").exit_code == 0
    assert plan(coll).mode == "dense"
    r = run("index", "alter", name, "--default-mode", "hybrid")
    assert r.exit_code == 2 and "needs a lexical index" in r.output
    r = run("index", "alter", name, "--lexical", "--default-mode", "hybrid", "--reset-search", "--json")
    assert r.exit_code == 0 and json.loads(r.output)["search"] == {"mode": "hybrid", **unset}
    assert plan(coll) == plan(coll, "hybrid", "relative", 0.85)
    assert run("index", "alter", name, "--reset-search").exit_code == 0
    assert "the library's default" in run("index", "info", name).output


def test_changing_search_settings_while_threads_search(env):
    """Readers that take the stored defaults while a writer keeps changing them: every search runs
    in one of the stored modes, whole (k hits, one mode), and nothing fails."""
    import threading

    from embedsearch.search import search, set_defaults

    _, name, settings = env
    store = Store(settings)
    coll = store.open(name)
    embedder = coll.load_embedder()
    errors, seen = [], set()
    stop = threading.Event()

    def reader():
        try:
            while not stop.is_set():
                hits = search(coll, ["pump"], 2, embedder=embedder)[0]
                modes = {h.extras["mode"] for h in hits}
                assert len(hits) == 2 and len(modes) == 1, hits
                seen.update(modes)
        except Exception as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    writer = Store(settings).open(name)  # another handle, as another request or process would hold
    for i in range(40):
        set_defaults(writer, mode=("lexical", "dense", "hybrid")[i % 3], fusion=("rrf", "relative")[i % 2])
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert seen <= {"lexical", "dense", "hybrid"} and len(seen) >= 2


def test_search_settings_edge_cases(env):
    """--alpha alone takes the default fusion; naming the stored fusion keeps its alpha; a stored
    stop-word list that is gone falls back to the default; bad settings are refused before the
    lexical index is built or dropped; two handles changing different settings both keep theirs."""
    import threading

    from sqlalchemy import update

    from embedsearch.search import plan, search, set_defaults
    from embedsearch.store.metadata import search_settings

    run, name, settings = env
    coll = Store(settings).open(name)
    r = run("index", "alter", name, "--alpha", "0.6", "--json")
    assert json.loads(r.output)["search"]["fusion"] == "relative" and plan(coll) == plan(coll, "hybrid", "relative", 0.6)
    set_defaults(coll, fusion="weighted", alpha=0.3)
    assert plan(coll, fusion="weighted").alpha == 0.3 and plan(coll, fusion="relative").alpha == 0.85
    with coll.store.engine.begin() as conn:  # a language whose list a later version no longer ships
        conn.execute(update(search_settings).where(search_settings.c.collection_id == coll.id).values(stop_words="klingon"))
    assert plan(coll).stop_words == "english" and search(coll, ["pump"], 1, mode="lexical")[0]

    r = run("index", "alter", name, "--no-lexical", "--default-mode", "hybrid")
    assert r.exit_code == 2 and "needs a lexical index" in r.output
    assert coll.has_lexical()  # refused before the index was dropped
    assert run("index", "alter", name, "--no-lexical").exit_code == 0
    r = run("index", "alter", name, "--lexical", "--fusion", "rrf", "--alpha", "0.3")
    assert r.exit_code == 2 and "alpha applies to fusion" in r.output
    assert not coll.has_lexical()  # refused before the index was built
    assert run("index", "alter", name, "--lexical", "--reset-search").exit_code == 0

    other = Store(settings).open(name)
    changes = [lambda i=i: set_defaults(coll if i % 2 else other, **({"stop_words": "german"} if i % 2 else {"fusion": "rrf"}))
               for i in range(2)]  # fmt: skip
    threads = [threading.Thread(target=f) for f in changes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = coll.search_settings()
    assert stored["stop_words"] == "german" and stored["fusion"] == "rrf"
