"""Collections through the library: upsert, delete, filtered search, verify and repair."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import delete, update

from embedsearch.config import Settings
from embedsearch.corpus import Document
from embedsearch.embedders.hashing import HashingEmbedder
from embedsearch.errors import (
    CollectionExists,
    CollectionNotFound,
    DimensionMismatch,
    FingerprintMismatch,
    IndexCorrupted,
    InvalidName,
)
from embedsearch.search import search
from embedsearch.store import Store
from embedsearch.store.metadata import collections, documents
from tests.conftest import topic_docs


@pytest.fixture
def coll(store, hashing):
    c = store.create("news", hashing, "HNSW32")
    c.add_documents(topic_docs(400), hashing, commit_every=100)
    return c


def test_add_is_an_upsert_keyed_by_id_and_content(coll, hashing):
    assert coll.row["doc_count"] == 400 and coll.count() == 400
    docs = topic_docs(400)
    docs[3] = Document("doc-3", "completely new text about floods", {"source": "lee"})
    r = coll.add_documents(docs[:10] + [Document("new-1", "brand new", {})], hashing)
    assert (r.added, r.updated, r.unchanged) == (1, 1, 9)
    assert coll.get("doc-3").text == "completely new text about floods"
    hits = search(coll, ["completely new text about floods"], 1, embedder=hashing)[0]
    assert hits[0].id == "doc-3"
    assert coll.verify(check_model=False).ok


def test_duplicate_ids_in_one_input_keep_the_last(store, hashing):
    c = store.create("dups", hashing, "Flat")
    r = c.add_documents([Document("x", "first", {}), Document("x", "second", {})], hashing)
    assert r.added == 1 and c.get("x").text == "second"


def test_delete_by_id(coll, hashing):
    deleted, missing = coll.delete(["doc-1", "doc-2", "nope"])
    assert (deleted, missing) == (2, ["nope"])
    assert coll.row["doc_count"] == 398
    hits = search(coll, ["interest rates bank inflation story 1"], 400, embedder=hashing)[0]
    assert {"doc-1", "doc-2"}.isdisjoint(h.id for h in hits)
    assert len(hits) == 398
    assert coll.verify(check_model=False).ok


def test_filtered_search_returns_k_when_the_filter_keeps_under_5_percent(store, hashing):
    c = store.create("big", hashing, "HNSW32")
    c.add_documents(topic_docs(2000, rare_every=50), hashing)  # 40 rare documents: 2%
    query = ["bushfire smoke firefighters"]
    hits = search(c, query, 10, where={"rare": True}, embedder=hashing)[0]
    assert len(hits) == 10 and all(h.metadata["rare"] is True for h in hits)
    # a post-filter over the unfiltered top 10 would have found almost none of them
    unfiltered = search(c, query, 10, embedder=hashing)[0]
    assert sum(h.metadata["rare"] for h in unfiltered) < 10
    hits = search(c, query, 100, where={"rare": True}, embedder=hashing)[0]
    assert len(hits) == 40  # fewer match than k: all of them
    assert search(c, query, 5, where={"source": "nowhere"}, embedder=hashing)[0] == []


def test_filtered_hits_are_the_best_matching_documents(store, hashing):
    c = store.create("exact", hashing, "IVF4,Flat")
    c.seal_at = 200
    docs = topic_docs(600)
    c.add_documents(docs, hashing)
    assert c.row["active_spec"] == "IVF4,Flat"
    q = hashing.embed(["cricket test wickets batsman"])
    hits = c.search_vectors(q, 5, where={"year": {"$gte": 2003}, "source": "lee"})[0]
    allowed = [d for d in docs if d.metadata["year"] >= 2003 and d.metadata["source"] == "lee"]
    scores = hashing.embed([d.text for d in allowed]) @ q[0]
    # many documents tie, so compare the scores of the top 5 rather than tie-broken ids
    np.testing.assert_allclose([h.score for h in hits], np.sort(scores)[::-1][:5], rtol=1e-5)
    assert all(h.metadata["year"] >= 2003 and h.metadata["source"] == "lee" for h in hits)


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", ".hidden", "", "x" * 65, "a\\b", "nul\x00", "/abs", "~user"])
def test_collection_names_cannot_escape_the_data_dir(store, hashing, name):
    with pytest.raises(InvalidName):
        store.create(name, hashing)
    assert not any(p.is_dir() for p in store.settings.data_dir.parent.iterdir() if p.name != "data")


def test_create_twice_and_open_missing(store, hashing):
    store.create("one", hashing)
    with pytest.raises(CollectionExists):
        store.create("one", hashing)
    with pytest.raises(CollectionNotFound):
        store.open("two")


def test_a_model_with_another_dimension_or_fingerprint_is_refused(coll):
    with pytest.raises(DimensionMismatch, match="128-d .* 256-d"):
        coll.add_documents([Document("z", "z", {})], HashingEmbedder(128))
    other = HashingEmbedder(256)
    other.fingerprint = "0" * 64
    with pytest.raises(FingerprintMismatch):
        coll.add_documents([Document("z", "z", {})], other)
    with pytest.raises(DimensionMismatch):
        coll.search_vectors(np.zeros((1, 100), dtype=np.float32), 3)
    assert coll.row["doc_count"] == 400


def test_verify_finds_rows_without_vectors_and_repair_fixes_them(coll, store, hashing):
    with store.engine.begin() as conn:  # simulate drift: a document row deleted behind our back
        conn.execute(delete(documents).where(documents.c.external_id == "doc-5"))
        conn.execute(update(collections).values(doc_count=399))
    coll.refresh()
    report = coll.verify(check_model=False)
    assert not report.ok and any("vectors have no document" in p for p in report.problems)
    result = coll.repair(hashing)
    assert result["repaired"] and any("marked 1 vectors without documents as deleted" in a for a in result["actions"]), result
    assert coll.verify(check_model=False).ok


def test_damaged_segment_is_reported_and_rebuilt_from_text(coll, store, hashing):
    coll.optimize()  # seal the 400 documents into one segment file
    (seg,) = [s for s in coll.info()["segments"] if s["state"] == "sealed"]
    path = next(coll.dir.glob("seg-*.faiss"))
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # a flipped bit: opening stays cheap, verify's checksum finds it
    path.write_bytes(bytes(raw))
    fresh = Store(Settings(store.settings.data_dir, store.settings.db_url)).open("news")  # a new process's view
    report = fresh.verify(check_model=False)
    assert not report.ok and any("checksum mismatch" in p for p in report.problems)
    path.write_bytes(bytes(raw[:1000]))  # truncated: found when the segment is opened
    fresh = Store(Settings(store.settings.data_dir, store.settings.db_url)).open("news")
    with pytest.raises(IndexCorrupted, match="bytes on disk.*index repair news"):
        search(fresh, ["rates"], 3, embedder=hashing)
    result = fresh.repair(hashing)
    assert any("re-embedded 400 documents" in a for a in result["actions"]), result
    assert fresh.verify(check_model=False).ok
    assert len(search(fresh, ["interest rates"], 3, embedder=hashing)[0]) == 3


def test_failed_commit_leaves_the_previous_generation(coll, hashing, monkeypatch):
    gen, count = coll.generation, coll.row["doc_count"]
    from embedsearch.store import sealing as cmod

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cmod, "append_records", boom)
    with pytest.raises(OSError):
        coll.add_documents([Document("n1", "new doc", {})], hashing)
    monkeypatch.undo()
    coll.refresh()
    assert (coll.generation, coll.row["doc_count"]) == (gen, count)
    assert coll.get("n1") is None
    assert coll.verify(check_model=False).ok
    coll.add_documents([Document("n1", "new doc", {})], hashing)  # the next write goes through
    assert coll.verify(check_model=False).ok and coll.count() == count + 1


def test_drop_removes_rows_and_files(coll, store):
    directory = coll.dir
    store.drop("news")
    assert not directory.exists()
    assert store.list() == []


def test_a_reader_follows_a_commit_made_by_another_process(coll, store, hashing):
    # a second Store stands in for another process; the first still holds its view
    other = Store(Settings(store.settings.data_dir, store.settings.db_url)).open("news")
    assert coll.view().live() == 400
    other.add_documents([Document("late", "a late arrival about volcanoes", {})], hashing)
    assert coll.view().live() == 401  # read only the new log record
    hits = search(coll, ["a late arrival about volcanoes"], 1, embedder=hashing)[0]
    assert hits[0].id == "late"
    sealed_before = dict(coll.view().sealed)
    other.optimize()  # a seal and a merge in the other process: new files, old ones removed
    other.delete(["doc-1"])
    view = coll.view()
    assert view.live() == 400 and not set(sealed_before) & set(view.sealed)
    hits = search(coll, ["interest rates bank inflation story 1"], 400, embedder=hashing)[0]
    assert "doc-1" not in {h.id for h in hits} and len(hits) == 400


def test_concurrent_creates_of_one_name_leave_one_working_collection(data_dir, hashing):
    """Two processes race to create the same collection: one wins, the other gets a clear error,
    and the winner has every file it needs."""
    import subprocess
    import sys

    code = (
        "import sys; from embedsearch.config import Settings; from embedsearch.store import Store;"
        "from embedsearch.embedders import load_embedder; from embedsearch.errors import CollectionExists\n"
        "try:\n    Store(Settings.from_env(sys.argv[1])).create('race', load_embedder('hashing')); print('created')\n"
        "except CollectionExists: print('exists')\n"
    )
    for _ in range(4):
        procs = [subprocess.Popen([sys.executable, "-c", code, str(data_dir)], stdout=subprocess.PIPE) for _ in range(2)]
        outs = sorted(p.communicate(timeout=120)[0].decode().strip() for p in procs)
        assert outs == ["created", "exists"], outs
        coll = Store(Settings.from_env(data_dir)).open("race")
        assert coll.verify(check_model=False).ok
        coll.add_documents([Document("a", "alpha", {})], hashing)
        assert search(coll, ["alpha"], 1, embedder=hashing)[0][0].id == "a"
        Store(Settings.from_env(data_dir)).drop("race")


def test_k_out_of_range_is_a_domain_error(coll, hashing):
    from embedsearch.errors import InvalidArgument

    with pytest.raises(InvalidArgument):
        search(coll, ["x"], 0, embedder=hashing)
    with pytest.raises(InvalidArgument):
        coll.search_vectors(hashing.embed(["x"]), 0)
