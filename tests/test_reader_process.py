"""A reader in another process sees each commit, reading only what changed: open sealed
segments stay open (same objects), the growing log is read from where it left off."""

from __future__ import annotations

import json
import subprocess
import sys

from embedsearch.corpus import Document
from tests.conftest import topic_docs

READER = r"""
import json, sys
from embedsearch.config import Settings
from embedsearch.embedders import load_embedder
from embedsearch.search import search
from embedsearch.store import Store
coll = Store(Settings.from_env(sys.argv[1])).open("news")
hashing = load_embedder("hashing")
for line in sys.stdin:
    hits = search(coll, [line.strip()], 3, embedder=hashing)[0]
    view = coll.view()
    print(json.dumps({
        "top": hits[0].id if hits else None,
        "live": view.live(),
        "sealed": {str(k): id(v) for k, v in view.sealed.items()},
        "growing_loaded": view.growing.meta.count,
    }), flush=True)
"""


def test_a_reader_process_follows_commits_without_reopening_sealed_segments(store, hashing, data_dir):
    coll = store.create("news", hashing, "Flat")
    coll.seal_at = 100
    coll.add_documents(topic_docs(450), hashing, batch_size=100, commit_every=100)  # four sealed segments + 50 growing
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(data_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )

    def ask(query: str) -> dict:
        reader.stdin.write(query + "\n")
        reader.stdin.flush()
        return json.loads(reader.stdout.readline())

    try:
        first = ask("cricket test wickets batsman")
        assert first["live"] == 450 and len(first["sealed"]) == 4 and first["growing_loaded"] == 50
        coll.add_documents([Document("late", "a late arrival about volcanoes and lava", {})], hashing)
        second = ask("a late arrival about volcanoes and lava")
        assert second["top"] == "late" and second["live"] == 451 and second["growing_loaded"] == 51
        assert second["sealed"] == first["sealed"]  # the same segment objects: nothing reopened
        coll.delete(["late"])
        third = ask("a late arrival about volcanoes and lava")
        assert third["top"] != "late" and third["live"] == 450 and third["sealed"] == first["sealed"]
    finally:
        reader.stdin.close()
        reader.wait(30)
