"""Collections written before the store-core refactor open, search and take writes unchanged:
the files and SQL tables are the same format (tests/data/segments-v2 was written by commit
58b69d4)."""

from __future__ import annotations

import shutil
from pathlib import Path

from embedsearch.config import Settings
from embedsearch.corpus import Document
from embedsearch.search import search
from embedsearch.store import Store

FIXTURE = Path(__file__).parent / "data" / "segments-v2"


def test_a_collection_written_by_the_previous_code_opens_searches_and_takes_writes(tmp_path, hashing):
    data = tmp_path / "data"
    shutil.copytree(FIXTURE, data, ignore=shutil.ignore_patterns("README.md"))
    coll = Store(Settings.from_env(data)).open("ivf")
    assert coll.generation == 10 and coll.count() == 1222
    assert coll.verify(check_model=False).ok
    info = coll.info()
    assert [s["spec"] for s in info["segments"]].count("IVF16,Flat") == 2 and info["training"]["spec"] == "IVF16,Flat"
    hits = search(coll, ["cricket test wickets"], 10, where={"topic": 2}, embedder=hashing, mode="dense")[0]
    assert len(hits) == 10 and all(h.metadata["topic"] == 2 for h in hits)
    assert search(coll, ["updated story five"], 1, embedder=hashing, mode="lexical")[0][0].id == "d5"
    coll.add_documents([Document(f"n{i}", f"new story {i} about volcanoes", {"topic": 5}) for i in range(300)], hashing)
    assert coll.delete_where({"topic": 0}) > 0
    coll.optimize()
    assert coll.verify(check_model=False).ok
    assert coll.count() == Store(Settings.from_env(data)).open("ivf").count()
    assert search(coll, ["volcanoes"], 5, where={"topic": 5}, embedder=hashing, mode="dense")[0][0].id.startswith("n")
