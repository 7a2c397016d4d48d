"""Collections on a real PostgreSQL server (started by .ci/run; skipped when none is configured)."""

from __future__ import annotations

import uuid

import pytest

from embedsearch.config import Settings
from embedsearch.search import search
from embedsearch.store import Store
from tests.conftest import pg_url, topic_docs

pytestmark = pytest.mark.skipif(not pg_url(), reason="set EMBEDSEARCH_TEST_PG_URL to a PostgreSQL database")


def test_collection_lifecycle_on_postgres(tmp_path, hashing):
    store = Store(Settings.from_env(tmp_path, pg_url()))
    assert store.dialect == "postgresql"
    name = f"pg-{uuid.uuid4().hex[:8]}"
    coll = store.create(name, hashing, "HNSW32")
    try:
        coll.add_documents(topic_docs(1000, rare_every=50), hashing, commit_every=300)
        assert coll.count() == 1000 and coll.verify(check_model=False).ok
        hits = search(coll, ["cricket test"], 10, where={"rare": True, "year": {"$gte": 1995}}, embedder=hashing)[0]
        assert len(hits) == 10 and all(h.metadata["rare"] for h in hits)
        assert coll.delete(["doc-0", "doc-50"]) == (2, [])
        r = coll.add_documents(topic_docs(1000, rare_every=50), hashing)
        assert (r.added, r.unchanged) == (2, 998)
        assert coll.verify(check_model=False).ok
    finally:
        store.drop(name)


def test_cli_with_a_postgres_url(cli, tmp_path):
    from click.testing import CliRunner

    from embedsearch.cli import main

    name = f"pgcli-{uuid.uuid4().hex[:8]}"
    src = tmp_path / "d.jsonl"
    src.write_text(
        '{"id": "1", "text": "bushfire near town", "source": "lee"}\n{"id": "2", "text": "rates rise", "source": "x"}\n'
    )
    run = CliRunner().invoke
    base = ["--data-dir", str(tmp_path), "--db", pg_url()]
    assert run(main, [*base, "index", "create", name, "--model", "hashing"]).exit_code == 0
    try:
        assert run(main, [*base, "index", "add", name, str(src)]).exit_code == 0
        r = run(main, [*base, "search", name, "bushfire", "--where", '{"source": "lee"}', "--fields", "id", "--jsonl"])
        assert r.output.strip() == '{"id": "1"}'
    finally:
        run(main, [*base, "index", "drop", name, "--yes"])


def test_segments_seal_train_merge_and_purge_on_postgres(tmp_path, hashing):
    """The segment list, tombstones and training rows commit with the documents on PostgreSQL
    too, and a second process's view follows them."""
    store = Store(Settings.from_env(tmp_path, pg_url()))
    name = f"pgseg-{uuid.uuid4().hex[:8]}"
    coll = store.create(name, hashing, "IVF4,Flat")
    coll.seal_at = 100
    try:
        coll.add_documents(topic_docs(900), hashing, batch_size=100, commit_every=100)
        info = coll.info()
        assert info["training"]["spec"] == "IVF4,Flat" and info["segments"][0]["spec"] == "IVF4,Flat"
        coll.delete([f"doc-{i}" for i in range(0, 300, 2)])
        other = Store(Settings.from_env(tmp_path, pg_url())).open(name)  # another process's view
        assert other.view().live() == 750
        coll.optimize()
        info = coll.info()
        assert info["tombstones"] == 0 and len([s for s in info["segments"] if s["state"] == "sealed"]) == 1
        assert other.view().live() == 750 and coll.verify(check_model=False).ok
        hits = search(other, ["cricket test wickets"], 10, where={"topic": 2}, embedder=hashing)[0]
        assert len(hits) == 10 and all(h.metadata["topic"] == 2 for h in hits)
    finally:
        store.drop(name)
