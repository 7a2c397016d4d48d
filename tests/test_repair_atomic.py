"""Repair is crash-atomic and fixes what verify reports, or says what it cannot (store-core
issue, findings 5 and 7), and --commit-every commits every N documents."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from embedsearch.config import Settings
from embedsearch.errors import DatabaseDamaged
from embedsearch.search import search
from embedsearch.store import Store
from embedsearch.store.metadata import dispose_engines
from tests.conftest import clustered, damage_sqlite_index_page, topic_docs


def _cli(data_dir, *args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "embedsearch", "--data-dir", str(data_dir), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _corpus(path, n):
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"d{i}", "text": f"document {i} about topic {i % 13} and {i % 7}", "n": i}) + "\n")


def _check(data_dir, n):
    dispose_engines()
    coll = Store(Settings.from_env(data_dir)).open("r")
    report = coll.verify(check_model=False)
    assert report.ok, report.problems
    assert coll.count() == n == coll.view().live()
    assert len(search(coll, ["document 5 about topic 5"], 10)[0]) == 10
    return coll


@pytest.mark.slow
@pytest.mark.parametrize("point", ["repair-files", "repair-before-commit", "repair-after-commit", "after-commit"])
def test_a_kill_during_repair_rebuild_leaves_a_collection_that_verifies(tmp_path, point):
    """Finding 5: repair --rebuild committed the dropped segments first and re-embedded in later
    commits; a kill in between left '... documents have no vector'. ('after-commit' is where the
    old code's first re-embedding commit ended.)"""
    data_dir = tmp_path / "data"
    _corpus(tmp_path / "c.jsonl", 2500)
    env = {"EMBEDSEARCH_SEAL_AT": "1000"}
    assert _cli(data_dir, "index", "create", "r", "--model", "hashing", "--index", "Flat").returncode == 0
    assert _cli(data_dir, "index", "add", "r", str(tmp_path / "c.jsonl"), env=env).returncode == 0
    before = _check(data_dir, 2500).generation
    r = _cli(data_dir, "index", "repair", "r", "--rebuild", env={**env, "EMBEDSEARCH_TEST_CRASH_AT": point})
    assert r.returncode in (0, 17), r.stderr
    coll = _check(data_dir, 2500)
    assert coll.generation in (before, before + 1)  # the state before, or the one repair commit
    r = _cli(data_dir, "index", "repair", "r", "--rebuild", env=env)  # and it still completes afterwards
    assert r.returncode == 0, r.stderr
    _check(data_dir, 2500)


def test_repair_rebuild_is_one_commit_and_keeps_filters_passages_of_every_document(store, hashing):
    coll = store.create("r", hashing, "Flat", index_fields=["topic"], lexical=True)
    coll.seal_at = 300
    coll.add_documents(topic_docs(1000), hashing, commit_every=250)
    coll.delete([f"doc-{i}" for i in range(0, 1000, 10)])
    gen = coll.generation
    out = coll.repair(hashing, rebuild=True)
    assert coll.generation == gen + 1 and out["generation"] == gen + 1
    assert coll.verify(check_model=False).ok
    assert coll.count() == 900
    hits = search(coll, ["cricket test wickets"], 5, where={"topic": 2}, embedder=hashing)[0]
    assert len(hits) == 5 and all(h.metadata["topic"] == 2 for h in hits)
    assert search(coll, ["cricket"], 5, mode="lexical")[0]


def test_repair_retrains_a_damaged_template_instead_of_failing_the_next_seal(store):
    """Finding 7: verify reported a damaged IVF template, repair left it, and the next seal
    failed with a traceback after its batch had committed."""
    from embedsearch.corpus import Document
    from embedsearch.embedders import load_embedder

    emb = load_embedder("hashing")
    coll = store.create("ivf", emb, "IVF16,Flat")
    coll.seal_at = 1000
    coll.auto_merge = False
    x = clustered(2500, emb.dim)
    coll.add_vectors([Document(f"v{i}", f"t{i}", {}) for i in range(2500)], x)
    view = coll.view()
    assert view.training is not None
    path = coll.dir / view.training.file
    raw = bytearray(path.read_bytes())
    raw[-64:] = bytes(64)
    path.write_bytes(bytes(raw))
    assert any("trained index" in p for p in coll.verify(check_model=False).problems)
    out = coll.repair(emb)
    assert any("retrained" in a for a in out["actions"]), out
    assert coll.verify(check_model=False).ok
    more = clustered(1200, emb.dim, seed=1)
    coll.add_vectors([Document(f"w{i}", f"u{i}", {}) for i in range(1200)], more)  # seals with the new template
    assert coll.verify(check_model=False).ok and coll.count() == 3700


def test_repair_on_damaged_sqlite_pages_says_so_and_fails(tmp_path, hashing):
    """Finding 7: repair printed 'rewrote the segment list' and exited 0, fixing nothing."""
    data_dir = tmp_path / "data"
    coll = Store(Settings.from_env(data_dir)).create("r", hashing, "Flat")
    coll.add_documents(topic_docs(3000), hashing)
    dispose_engines()
    damage_sqlite_index_page(data_dir / "embedsearch.db")
    coll = Store(Settings.from_env(data_dir)).open("r")
    with pytest.raises(DatabaseDamaged, match="from a backup"):
        coll.repair(hashing)
    r = _cli(data_dir, "index", "repair", "r")
    assert r.returncode == 1 and "integrity check" in r.stderr and "Traceback" not in r.stderr


def test_commit_every_commits_every_n_documents_not_every_embedding_batch(store, hashing):
    """Finding 7: --commit-every 1000 committed at 1,024 and 2,048 (multiples of the batch)."""
    coll = store.create("r", hashing, "Flat")
    sizes = []
    coll.add_documents(topic_docs(2500), hashing, batch_size=1024, commit_every=1000, on_commit=lambda r: sizes.append(r.added))
    assert sizes == [1000, 2000, 2500]
    assert np.all(np.diff(sizes) <= 1000)
