"""A writer killed anywhere leaves the last committed state (real subprocesses): random kills
during a long add, a kill at every named point of append, seal, merge, retrain and migration,
and kills injected by strace at every fsync, rename, unlink and ftruncate of a commit."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from embedsearch.config import Settings
from embedsearch.search import search
from embedsearch.store import Store
from embedsearch.store.metadata import dispose_engines

COMMIT = 200
FIXTURE = Path(__file__).parent / "data" / "legacy-v1"


pytestmark = pytest.mark.slow  # kills real subprocesses at every crash point


def _cli(data_dir, *args, env=None, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "embedsearch", "--data-dir", str(data_dir), *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


def _run(data_dir, *args, env=None) -> int:
    proc = _cli(data_dir, *args, env=env)
    out, err = proc.communicate(timeout=300)
    return proc.returncode


def _corpus(path, n, start=0):
    with open(path, "w") as f:
        for i in range(start, n):
            f.write(json.dumps({"id": f"d{i}", "text": f"document {i} about topic {i % 13} and {i % 7}", "n": i}) + "\n")


def _state(data_dir, name="crash"):
    with sqlite3.connect(data_dir / "embedsearch.db", timeout=30) as conn:
        row = conn.execute("select generation, doc_count from collections where name=?", (name,)).fetchone()
    return row or (0, 0)


def _consistent(data_dir, name="crash"):
    """The collection opens, verifies, and searches; returns its document count."""
    coll = Store(Settings.from_env(data_dir)).open(name)
    report = coll.verify(check_model=False)
    assert report.ok, report.problems
    assert coll.count() == coll.row["doc_count"] == coll.view().live()
    if coll.count():
        assert search(coll, ["document 5 about topic 5"], 3)[0]
    return coll.count()


def test_kill_9_during_add_keeps_every_committed_batch(tmp_path):
    data_dir = tmp_path / "data"
    corpus = tmp_path / "big.jsonl"
    _corpus(corpus, 60_000)
    env = {"EMBEDSEARCH_SEAL_AT": "1000"}  # seals and merges happen during the add too
    assert _cli(data_dir, "index", "create", "crash", "--model", "hashing", "--index", "HNSW32").wait(60) == 0
    proc = _cli(data_dir, "index", "add", "crash", str(corpus), "--commit-every", str(COMMIT), "--batch-size", "100", env=env)
    deadline = time.time() + 120
    while _state(data_dir)[1] < 4000 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the add finished before it could be killed; make the corpus larger"
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL

    count = _consistent(data_dir)
    assert count > 0 and count % COMMIT == 0 and count < 60_000
    coll = Store(Settings.from_env(data_dir)).open("crash")
    assert len([s for s in coll.info()["segments"] if s["state"] == "sealed"]) >= 1
    gen = coll.generation

    # the next add resumes: committed documents are unchanged, the rest are added
    done = _cli(data_dir, "index", "add", "crash", str(corpus), "--json", env=env)
    out, err = done.communicate(timeout=300)
    assert done.returncode == 0, err.decode()
    result = json.loads(out)
    assert result["unchanged"] == count and result["added"] == 60_000 - count
    coll.refresh()
    assert coll.verify(check_model=False).ok and coll.generation > gen
    assert not coll.verify(check_model=False).leftovers


# (crash point, what the crashed command does, whether its change must be visible afterwards)
POINTS = [
    ("append", "add", False),
    ("before-commit", "add", False),
    ("after-commit", "add", True),
    # a seal runs after the batch's own commit: the batch is there whether or not the seal is
    ("seal-file", "seal", True),
    ("seal-before-commit", "seal", True),
    ("seal-after-commit", "seal", True),
    ("merge-file", "optimize", None),
    ("merge-before-commit", "optimize", None),
    ("merge-after-commit", "optimize", None),
]


@pytest.mark.parametrize("spec", ["Flat", "IVF4,Flat"])
@pytest.mark.parametrize("point, action, visible", POINTS, ids=[p[0] for p in POINTS])
def test_a_kill_at_each_crash_point_leaves_the_last_commit(tmp_path, point, action, visible, spec):
    data_dir = tmp_path / "data"
    corpus = tmp_path / "c.jsonl"
    env = {"EMBEDSEARCH_SEAL_AT": "40"}
    assert _run(data_dir, "index", "create", "crash", "--model", "hashing", "--index", spec) == 0
    for stop in (200, 230):  # 200 documents: five sealed segments (trained for IVF) + growing ones
        _corpus(corpus, stop)
        assert _run(data_dir, "index", "add", "crash", str(corpus), "--commit-every", "40", env=env) == 0
    _run(data_dir, "index", "delete", "crash", "--id", "d3", "--id", "d7", env=env)
    before = _state(data_dir)
    if action == "add":
        _corpus(corpus, 235)
        args = ("index", "add", "crash", str(corpus))
        after_count = 235  # d3 and d7 come back too
    elif action == "seal":
        _corpus(corpus, 250)  # 30 in the growing segment + 20 more reach the seal size of 40
        args = ("index", "add", "crash", str(corpus))
        after_count = 250
    else:
        args = ("index", "optimize", "crash")
        after_count = before[1]
    assert _run(data_dir, *args, env={**env, "EMBEDSEARCH_TEST_CRASH_AT": point}) == 17
    count = _consistent(data_dir)
    if visible is None:
        assert count == before[1]  # a merge changes no document
    else:
        assert count == (after_count if visible else before[1])
    # the next write cleans up and goes on; nothing is left over
    _corpus(corpus, 260)
    assert _run(data_dir, "index", "add", "crash", str(corpus), env=env) == 0
    assert _run(data_dir, "index", "optimize", "crash", env=env) == 0
    assert _consistent(data_dir) == 260  # d3 and d7 come back with the full corpus
    coll = Store(Settings.from_env(data_dir)).open("crash")
    assert not coll.verify(check_model=False).leftovers
    assert not list(coll.dir.glob(".*tmp*"))


def test_a_kill_while_migrating_an_old_collection_leaves_it_readable(tmp_path):
    data_dir = tmp_path / "data"
    shutil.copytree(FIXTURE, data_dir)
    corpus = tmp_path / "c.jsonl"
    _corpus(corpus, 3)
    assert _run(data_dir, "index", "add", "old_ivf", str(corpus), env={"EMBEDSEARCH_TEST_CRASH_AT": "migrate-files"}) == 17
    assert _consistent(data_dir, "old_ivf") == 290
    assert Store(Settings.from_env(data_dir)).open("old_ivf").info()["format"].startswith("single file")
    assert _run(data_dir, "index", "add", "old_ivf", str(corpus)) == 0
    assert _consistent(data_dir, "old_ivf") == 293


STRACE = shutil.which("strace")


@pytest.mark.skipif(STRACE is None, reason="needs strace (apt-get install strace; .ci/run installs it)")
@pytest.mark.parametrize("command", ["add", "optimize"])
@pytest.mark.parametrize("syscall", ["fsync", "fdatasync", "rename", "unlink", "ftruncate"])
def test_kills_injected_at_every_syscall_of_a_commit(tmp_path, syscall, command):
    """strace kills the writer at the N-th call of ``syscall`` for every N that an add (append,
    seal) or an optimize (seal, merges, tombstone purge) makes, SQLite's own syncs (fdatasync)
    included: every time, the collection holds the old or the new state and verifies."""
    data_dir = tmp_path / "data"
    corpus = tmp_path / "c.jsonl"
    env = {"EMBEDSEARCH_SEAL_AT": "40"}
    assert _run(data_dir, "index", "create", "crash", "--model", "hashing", "--index", "IVF4,Flat") == 0
    _corpus(corpus, 190)
    assert _run(data_dir, "index", "add", "crash", str(corpus), "--commit-every", "40", "--batch-size", "40", env=env) == 0
    assert _run(data_dir, "index", "delete", "crash", "--id", "d1", "--id", "d2", "--id", "d50", env=env) == 0
    base = tmp_path / "base"
    shutil.copytree(data_dir, base)
    if command == "add":
        _corpus(corpus, 240)  # 50 more: 30 + 20 fill the growing segment to its seal size
        args = ("index", "add", "crash", str(corpus), "--commit-every", "100")
        counts = (187, 240)
    else:
        args = ("index", "optimize", "crash")
        counts = (187,)

    def traced(extra: list[str]) -> int:
        cmd = [STRACE, "-f", "-qq", *extra, sys.executable, "-m", "embedsearch", "--data-dir", str(data_dir), *args]
        return subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, timeout=300).returncode

    log = tmp_path / "trace.txt"
    assert traced(["-e", f"trace={syscall}", "-o", str(log)]) == 0
    calls = sum(1 for line in log.read_text().splitlines() if f"{syscall}(" in line and "resumed" not in line)
    if syscall in ("fsync", "rename", "fdatasync"):
        assert calls >= 2, f"{command} made {calls} {syscall} calls"
    for n in range(1, calls + 1):
        dispose_engines()  # pooled connections would still read the database file replaced below
        shutil.rmtree(data_dir)
        shutil.copytree(base, data_dir)
        code = traced(["-e", f"trace={syscall}", "-e", f"inject={syscall}:signal=KILL:when={n}", "-o", "/dev/null"])
        assert code != 0, f"{syscall} #{n} was not reached"
        count = _consistent(data_dir)
        assert count in counts, f"kill at {syscall} #{n}: {count} documents"
        assert _run(data_dir, *args, env=env) == 0
        assert _consistent(data_dir) == counts[-1]
        coll = Store(Settings.from_env(data_dir)).open("crash")
        assert not coll.verify(check_model=False).leftovers
