"""Hardening findings on the store's side (issue 13: 1, 5, 6, 9), each with the test that
reproduced it: NaN in metadata, names with control characters, SQLite page corruption, and
verify/repair agreeing on a changed model."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from embedsearch.config import Settings, validate_collection_name
from embedsearch.corpus import Document, ReadOptions, iter_documents, resolve_sources, scan
from embedsearch.errors import CorpusError, InvalidArgument, InvalidName
from embedsearch.search import search
from embedsearch.store import Store
from tests.conftest import topic_docs


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_jsonl_with_nan_metadata_is_refused_naming_the_line(tmp_path, constant):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"id": "a", "text": "fine", "s": 1}\n' + f'{{"id": "b", "text": "bad", "s": {constant}}}\n')
    opts = ReadOptions()
    with pytest.raises(CorpusError, match=rf"docs.jsonl:2: {constant} is not valid JSON"):
        scan(resolve_sources([str(path)], opts), opts)
    skipped = []
    opts = ReadOptions(skip_bad=True)
    docs = list(iter_documents(resolve_sources([str(path)], opts), opts, on_skip=skipped.append))
    assert [d.id for d in docs] == ["a"] and len(skipped) == 1


def test_cli_add_refuses_nan_and_writes_nothing(cli, tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"id": "a", "text": "fine"}\n{"id": "b", "text": "bad", "s": NaN}\n')
    assert cli("index", "create", "c", "--model", "hashing").exit_code == 0
    r = cli("index", "add", "c", str(path))
    assert r.exit_code != 0 and "docs.jsonl:2" in r.output and "NaN" in r.output and "Traceback" not in r.output
    assert json.loads(cli("index", "info", "c", "--json").output)["doc_count"] == 0


@pytest.mark.parametrize(
    "meta",
    [{"s": float("nan")}, {"deep": [1, {"x": float("inf")}]}, {"k\ud800": 1}, {"s": "lone \udc00 surrogate"}],
)
def test_the_library_refuses_metadata_that_is_not_strict_json(store, hashing, meta):
    coll = store.create("strict", hashing, "Flat")
    with pytest.raises(InvalidArgument, match="strict JSON"):
        coll.add_documents([Document("ok", "fine", {}), Document("bad", "text", meta)], hashing)
    with pytest.raises(InvalidArgument, match="strict JSON"):
        coll.add_vectors([Document("bad", "text", meta)], hashing.embed(["text"]))
    assert coll.count() == 0 and coll.verify(check_model=False).ok


def test_http_documents_with_nan_get_422(data_dir, hashing):
    from fastapi.testclient import TestClient

    from embedsearch.service.app import create_app

    Store(Settings.from_env(data_dir)).create("news", hashing, "Flat")
    with TestClient(create_app(Settings.from_env(data_dir))) as client:
        body = '{"documents": [{"id": "x", "text": "t", "metadata": {"s": NaN}}]}'
        r = client.post("/collections/news/documents", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and "strict JSON" in r.json()["error"]["message"]
        r = client.post("/collections/news/search", json={"query": "t", "k": 3, "where": {"s": {"$ne": 1}}})
        assert r.status_code == 200


def test_verify_finds_nan_written_by_an_earlier_version_and_repair_fixes_it(store, hashing, data_dir):
    coll = store.create("poisoned", hashing, "Flat")
    coll.add_documents(topic_docs(20), hashing)
    with sqlite3.connect(data_dir / "embedsearch.db") as conn:  # what the old code let through
        conn.execute("UPDATE documents SET meta = '{\"source\": \"lee\", \"s\": NaN}' WHERE external_id = 'doc-3'")
    coll.refresh()
    with pytest.raises(Exception):  # noqa: B017 - what users hit: every filtered search failed
        coll.matching_ids({"source": "lee"})
    report = coll.verify(check_model=False)
    assert not report.ok and any("not strict JSON" in p and "index repair poisoned" in p for p in report.problems)
    result = coll.repair(hashing)
    assert any("replaced NaN/Infinity with null in the metadata of 1 documents" in a for a in result["actions"])
    assert coll.verify(check_model=False).ok
    assert coll.get("doc-3").metadata == {"source": "lee", "s": None}
    hits = search(coll, ["bushfire"], 20, embedder=hashing, where={"source": "lee"})[0]
    assert len(hits) == 10 and "doc-3" in {h.id for h in hits}  # the 10 odd documents, doc-3 among them


@pytest.mark.parametrize("name", ["news\n", "news\r", "ne\tws", "news\x00", "\nnews"])
def test_names_with_control_characters_are_refused(store, hashing, name):
    with pytest.raises(InvalidName):
        validate_collection_name(name)
    with pytest.raises(InvalidName):
        store.create(name, hashing)
    assert not any("\n" in p.name for p in store.settings.data_dir.iterdir()) if store.settings.data_dir.exists() else True


def test_verify_runs_sqlites_integrity_check(tmp_path, hashing):
    data_dir = tmp_path / "data"
    store = Store(Settings.from_env(data_dir))
    coll = store.create("pages", hashing, "Flat")
    coll.add_documents(topic_docs(3000), hashing)
    # corrupt one page of the external-id index in a subprocess-free way: scribble over a
    # b-tree page that is neither the schema nor a table root, then ask SQLite itself
    from embedsearch.store.metadata import dispose_engines
    from tests.conftest import damage_sqlite_index_page

    dispose_engines()
    db = data_dir / "embedsearch.db"
    damage_sqlite_index_page(db)
    code = f"import sqlite3; print(sqlite3.connect('{db}').execute('PRAGMA quick_check').fetchall())"
    check = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "ok" not in check.stdout.split("'")[1:2], check.stdout  # really corrupted
    coll = Store(Settings.from_env(data_dir)).open("pages")
    report = coll.verify(check_model=False)
    assert not report.ok and any("integrity check" in p and "from a backup" in p for p in report.problems), report.problems


def test_a_changed_model_is_fixed_by_the_command_verify_names(tmp_path, cli, data_dir):
    vectors = tmp_path / "v.txt"
    words = ["bushfire", "smoke", "rates", "bank", "cricket", "wickets", "election", "votes"]
    rng = np.random.default_rng(0)
    vectors.write_text("".join(f"{w} " + " ".join(f"{x:.4f}" for x in rng.standard_normal(8)) + "\n" for w in words))
    model = tmp_path / "model"
    assert cli("models", "import", str(vectors), "--format", "glove", "-o", str(model)).exit_code == 0
    docs = tmp_path / "d.jsonl"
    docs.write_text("".join(json.dumps({"id": f"d{i}", "text": f"{words[i]} {words[i + 1]}"}) + "\n" for i in range(6)))
    assert cli("index", "create", "w", "--model", str(model)).exit_code == 0
    assert cli("index", "add", "w", str(docs)).exit_code == 0
    arr = np.load(model / "vectors.npy")
    np.save(model / "vectors.npy", arr * 2 + 1)  # the model changes on disk
    r = cli("index", "verify", "w")
    assert r.exit_code == 1 and "changed on disk" in r.output and "index repair w --rebuild" in r.output
    r = cli("index", "repair", "w")  # without --rebuild: it says what does fix it, and fails
    assert r.exit_code != 0 and "--rebuild" in r.output and "Traceback" not in r.output
    r = cli("index", "repair", "w", "--rebuild")
    assert r.exit_code == 0, r.output
    assert cli("index", "verify", "w").exit_code == 0


def test_a_filter_with_too_many_conditions_is_refused_before_sql(store, hashing, cli):
    from embedsearch.errors import InvalidFilter

    coll = store.create("limits", hashing, "Flat")
    coll.add_documents(topic_docs(50), hashing)
    wide = {"$or": [{"year": i} for i in range(1001)]}  # SQLite refused this with a 500 before
    with pytest.raises(InvalidFilter, match="more than 256 conditions.*\\$in"):
        coll.matching_ids(wide)
    # the same 1,001 values as one $in are fine
    assert len(coll.matching_ids({"year": {"$in": list(range(1001)) + [1995]}})) == 5
    # 40 lists of 10,000 values: no "too many SQL variables"
    assert len(coll.matching_ids({"$and": [{"year": {"$in": list(range(1990, 11990))}} for _ in range(40)]})) == 50
    r = cli("search", "limits", "rates", "--where", json.dumps(wide))
    assert r.exit_code == 2 and "256 conditions" in r.output and "Traceback" not in r.output


def test_the_service_bounds_hits_and_response_size(data_dir, hashing, monkeypatch):
    from fastapi.testclient import TestClient

    from embedsearch.service import middleware as app_module  # the response-size check
    from embedsearch.service.app import create_app

    coll = Store(Settings.from_env(data_dir)).create("big", hashing, "Flat")
    coll.add_documents([Document(f"d{i}", "long story " * 20_000 + str(i), {}) for i in range(20)], hashing)  # ~220 KB each
    with TestClient(create_app(Settings.from_env(data_dir))) as client:
        r = client.post("/collections/big/search/batch", json={"queries": ["story"] * 256, "k": 1000})
        assert r.status_code == 422 and "20000" in r.json()["error"]["message"]
        r = client.post("/collections/big/search/batch", json={"queries": ["story"] * 10, "k": 20})
        assert r.status_code == 413 and "MiB" in r.json()["error"]["message"]  # 200 hits of 220 KB: 44 MB
        r = client.post("/collections/big/search/batch", json={"queries": ["story"] * 5, "k": 20})
        assert r.status_code == 200  # 22 MB: under the 32 MiB limit
        monkeypatch.setattr(app_module, "MAX_RESPONSE_TEXT", 4 << 20)
        r = client.post("/collections/big/search/batch", json={"queries": ["story"] * 10, "k": 20})
        assert r.status_code == 413 and r.json()["error"]["code"] == "response_too_large"
        r = client.post("/collections/big/search", json={"query": "story", "k": 20})
        assert r.status_code == 413
        r = client.post("/collections/big/search", json={"query": "story", "k": 5})
        assert r.status_code == 200 and len(r.json()["hits"]) == 5


def test_read_only_commands_leave_no_database_behind(tmp_path):
    from click.testing import CliRunner

    from embedsearch.cli import main

    missing = tmp_path / "mistyped"
    run = CliRunner().invoke
    r = run(main, ["--data-dir", str(missing), "index", "list"])
    assert r.exit_code == 0 and "no collections" in r.output
    for args in (["index", "info", "x"], ["index", "verify", "x"], ["search", "x", "rates"], ["index", "count", "x"]):
        r = run(main, ["--data-dir", str(missing), *args])
        assert r.exit_code == 1 and "no embedsearch data in" in r.output and "Traceback" not in r.output, args
    assert not missing.exists()  # nothing was created
    r = run(main, ["--data-dir", str(missing), "search", "x", "  "])
    assert r.exit_code == 2 and "the query is empty" in r.output  # checked before anything loads
    assert run(main, ["--data-dir", str(missing), "index", "create", "x", "--model", "hashing"]).exit_code == 0
    assert (missing / "embedsearch.db").exists()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_overwrite_swaps_models_atomically_and_a_half_done_one_is_recovered(tmp_path):
    from embedsearch.models import publish_dir, sweep_leftovers

    out = tmp_path / "models" / "m"
    out.mkdir(parents=True)
    (out / "which").write_text("old")
    new = tmp_path / "models" / ".m.new"
    new.mkdir()
    (new / "which").write_text("new")
    publish_dir(new, out, overwrite=True)
    assert (out / "which").read_text() == "new" and not new.exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["m"]  # no .old-PID left behind
    # a run killed between the two renames of the fallback path: the old model sits aside
    pid = _dead_pid()
    out.rename(out.parent / f".m.old-{pid}")
    assert not out.exists()
    assert sweep_leftovers(out) == [f"restored {out} from .m.old-{pid}"]
    assert (out / "which").read_text() == "new"


def test_work_directories_of_killed_runs_are_swept(tmp_path, cli):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(f"the quick brown fox {i} jumps over the lazy dog {i % 7}" for i in range(300)))
    out = tmp_path / "models" / "g"
    out.parent.mkdir()
    dead = out.parent / f".g.{_dead_pid()}.abc123.tmp"  # what a killed run leaves: its tokenised corpus
    (dead / "work").mkdir(parents=True)
    (dead / "work" / "corpus.txt").write_text("x" * 1000)
    alive = out.parent / f".g.{os.getpid()}.def456.tmp"  # a run still going (this process) is left alone
    alive.mkdir()
    r = cli("train", "glove", str(corpus), "-o", str(out), "--dim", "8", "--epochs", "2", "--min-count", "1")
    assert r.exit_code == 0, r.output
    assert not dead.exists() and alive.exists() and (out / "manifest.json").exists()
