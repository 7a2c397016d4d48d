"""A writer killed mid-way leaves the collection openable and consistent (real subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

from embedsearch.config import Settings
from embedsearch.search import search
from embedsearch.store.collection import Store

COMMIT = 200


def _cli(data_dir, *args, env=None, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "embedsearch", "--data-dir", str(data_dir), *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


def _corpus(path, n):
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"d{i}", "text": f"document {i} about topic {i % 13} and {i % 7}", "n": i}) + "\n")


def _state(data_dir):
    with sqlite3.connect(data_dir / "embedsearch.db", timeout=30) as conn:
        row = conn.execute("select generation, doc_count from collections where name='crash'").fetchone()
    return row or (0, 0)


def test_kill_9_during_add_keeps_every_committed_batch(tmp_path):
    data_dir = tmp_path / "data"
    corpus = tmp_path / "big.jsonl"
    _corpus(corpus, 60_000)
    assert _cli(data_dir, "index", "create", "crash", "--model", "hashing", "--index", "HNSW32").wait(60) == 0
    proc = _cli(data_dir, "index", "add", "crash", str(corpus), "--commit-every", str(COMMIT), "--batch-size", "100")
    deadline = time.time() + 120
    while _state(data_dir)[0] < 4 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the add finished before it could be killed; make the corpus larger"
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL

    store = Store(Settings.from_env(data_dir))
    coll = store.open("crash")
    report = coll.verify(check_model=False)
    # a stray next-generation file may exist if the kill hit between write and commit; nothing else
    assert all("stray vector files" in p for p in report.problems), report.problems
    gen, count = coll.generation, coll.row["doc_count"]
    assert count > 0 and count % COMMIT == 0 and count < 60_000
    assert coll.count() == count == coll.vectors().ntotal
    hits = search(coll, ["document 5 about topic 5"], 5)[0]
    assert len(hits) == 5

    # the next add resumes: committed documents are unchanged, the rest are added
    done = _cli(data_dir, "index", "add", "crash", str(corpus), "--json")
    out, err = done.communicate(timeout=300)
    assert done.returncode == 0, err.decode()
    result = json.loads(out)
    assert result["unchanged"] == count and result["added"] == 60_000 - count
    assert coll.verify(check_model=False).ok and coll.generation > gen


def test_crash_between_file_write_and_commit_keeps_the_old_generation(tmp_path):
    data_dir = tmp_path / "data"
    corpus = tmp_path / "small.jsonl"
    _corpus(corpus, 50)
    assert _cli(data_dir, "index", "create", "crash", "--model", "hashing").wait(60) == 0
    assert _cli(data_dir, "index", "add", "crash", str(corpus)).wait(60) == 0
    before = _state(data_dir)
    _corpus(corpus, 80)
    proc = _cli(data_dir, "index", "add", "crash", str(corpus), env={"EMBEDSEARCH_TEST_CRASH_BEFORE_COMMIT": "1"})
    assert proc.wait(60) == 17
    assert _state(data_dir) == before
    files = sorted(p.name for p in (data_dir / "crash").glob("vectors-*.faiss"))
    assert files == [f"vectors-{before[0]:012d}.faiss", f"vectors-{before[0] + 1:012d}.faiss"]
    coll = Store(Settings.from_env(data_dir)).open("crash")
    assert coll.vectors().ntotal == 50  # the committed generation, not the stray one
    verify = _cli(data_dir, "index", "verify", "crash")
    out, _ = verify.communicate(timeout=60)
    assert verify.returncode == 1 and b"stray vector files" in out
    assert _cli(data_dir, "index", "add", "crash", str(corpus)).wait(60) == 0
    assert _state(data_dir) == (before[0] + 1, 80)
    assert len(list((data_dir / "crash").glob("vectors-*.faiss"))) == 1
