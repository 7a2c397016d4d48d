"""Collections written before segments (tests/data/legacy-v1, made by that version's code) are
read as they are and migrated to segments by their first write, nothing re-embedded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from embedsearch.config import Settings
from embedsearch.corpus import Document
from embedsearch.search import search
from embedsearch.store import Store

FIXTURE = Path(__file__).parent / "data" / "legacy-v1"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())
QUERY = "cricket test wickets batsman story 7"


def top5(coll, hashing) -> set[str]:
    """The top 5 as a set: equal scores may come back in either order (no tie at rank 5 here)."""
    hits = search(coll, [QUERY], 6, embedder=hashing)[0]
    assert hits[4].score > hits[5].score + 1e-6
    return {h.id for h in hits[:5]}


@pytest.fixture
def legacy_store(tmp_path) -> Store:
    target = tmp_path / "data"
    shutil.copytree(FIXTURE, target)
    return Store(Settings.from_env(target))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_old_collections_are_read_as_they_are(legacy_store, hashing, name):
    coll = legacy_store.open(name)
    want = EXPECTED[name]
    info = coll.info()
    assert info["format"].startswith("single file") and info["faiss_count"] == want["count"]
    assert info["tombstones"] == want["tombstones"]
    assert top5(coll, hashing) == set(want["top5"])
    assert coll.verify(check_model=False).ok
    assert list(coll.dir.glob("vectors-*.faiss"))  # reading changed nothing on disk


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_first_write_migrates_to_segments(legacy_store, hashing, name):
    coll = legacy_store.open(name)
    want = EXPECTED[name]
    coll.add_documents([Document("new-1", "a brand new story about volcanoes", {"source": "new"})], hashing)
    info = coll.info()
    assert info["format"] == "segments" and info["faiss_count"] == want["count"] + 1
    assert not list(coll.dir.glob("vectors-*.faiss"))  # the old file went after the commit
    assert top5(coll, hashing) == set(want["top5"])
    hits = search(coll, [QUERY], 400, embedder=hashing)[0]
    ids = {h.id for h in hits}
    assert len(hits) == want["count"] + 1
    assert not ids & {f"doc-{i}" for i in range(0, 30, 3)}  # deleted before migration: still deleted
    assert coll.verify(check_model=False).ok
    if name == "old_ivf":  # the old IVF index became the trained template: no retraining
        assert coll.view().training is not None and info["training"]["spec"] == "IVF4,Flat"
    coll.optimize()
    assert top5(coll, hashing) == set(want["top5"])
    assert coll.verify(check_model=False).ok and coll.info()["tombstones"] == 0


def test_a_damaged_old_file_is_rebuilt_by_repair(legacy_store, hashing):
    coll = legacy_store.open("old_flat")
    path = next(coll.dir.glob("vectors-*.faiss"))
    path.write_bytes(path.read_bytes()[:500])
    report = coll.verify(check_model=False)
    assert not report.ok and report.needs_rebuild
    result = coll.repair(hashing)
    assert any("re-embedded 290 documents" in a for a in result["actions"]), result
    assert coll.verify(check_model=False).ok and coll.info()["format"] == "segments"
    assert top5(coll, hashing) == set(EXPECTED["old_flat"]["top5"])
