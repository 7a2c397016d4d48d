"""A model-based concurrency test: random interleavings of every write path and searches, from
several threads and a second process, against an oracle of committed documents.

Each round, worker threads run random operations at once for a moment (upsert, add, delete by
id, delete by filter, seal, merge, optimize, repair, drop and create of a second collection,
search) while another process upserts its own documents and searches. Every search, while it
runs, must return ``min(k, matching)`` distinct documents whose text is one a commit wrote for
them. Then the threads stop at a barrier, and the collection must verify, hold no row id twice,
and hold exactly the oracle's documents with the oracle's texts.

Bounded for the suite (a few seconds of work per round); ``EMBEDSEARCH_SOAK_ROUNDS`` runs more
(a soak). Seeded: ``EMBEDSEARCH_MODEL_SEED`` replays a run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from embedsearch.config import Settings
from embedsearch.corpus import Document
from embedsearch.errors import CollectionExists, CollectionNotFound
from embedsearch.store import Store
from tests.conftest import pg_url

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(not pg_url(), reason="no EMBEDSEARCH_TEST_PG_URL"))]

STABLE = 24  # documents that always exist (upserted, never deleted): every search can fill k <= STABLE
ROUNDS = int(os.environ.get("EMBEDSEARCH_SOAK_ROUNDS") or 6)
ROUND_SECONDS = 0.8
SEED = int(os.environ.get("EMBEDSEARCH_MODEL_SEED") or 20261203)

OTHER = r"""
import json, sys, time
import numpy as np
from embedsearch.config import Settings
from embedsearch.corpus import Document
from embedsearch.store import Store
coll = Store(Settings.from_env(sys.argv[1], sys.argv[3] or None)).open(sys.argv[2])
rng = np.random.default_rng(7)
end = time.time() + float(sys.argv[4])
last, v, short, searches = {}, 0, 0, 0
while time.time() < end:
    v += 1
    ids = [f"p{i}" for i in rng.choice(8, size=3, replace=False)]
    x = rng.standard_normal((3, coll.dim)).astype(np.float32)
    coll.add_vectors([Document(i, f"{i} v{v}", {"stable": True}) for i in ids], x / np.linalg.norm(x, axis=1, keepdims=True))
    last.update({i: f"{i} v{v}" for i in ids})
    q = rng.standard_normal((1, coll.dim)).astype(np.float32)
    hits = coll.search_vectors(q, k=10, nprobe=4)[0]
    searches += 1
    short += len(hits) != 10 or len({h.id for h in hits}) != len(hits)
print(json.dumps({"last": last, "short": short, "searches": searches}))
"""


def _unit(rng, n, dim):
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class Oracle:
    """What was committed: each document's texts over time (a search may see any of them while
    writes run) and its text now (the state the collection must hold at a barrier)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now: dict[str, str] = {}
        self.ever: dict[str, set[str]] = {}
        self.pending: dict[str, str] = {}

    def before(self, docs: dict[str, str | None]) -> None:
        """Texts a write is about to commit (None: a delete): searches may see them already."""
        with self.lock:
            for i, t in docs.items():
                if t is not None:
                    self.ever.setdefault(i, set()).add(t)

    def after(self, docs: dict[str, str | None]) -> None:
        with self.lock:
            for i, t in docs.items():
                if t is None:
                    self.now.pop(i, None)
                else:
                    self.now[i] = t


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_random_interleavings_keep_every_invariant(backend, hashing, data_dir):
    import uuid

    url = pg_url() if backend == "postgresql" else None
    store = Store(Settings.from_env(data_dir, url))
    name, name2 = f"m{uuid.uuid4().hex[:8]}", f"m2{uuid.uuid4().hex[:8]}"
    try:
        _run(store, name, name2, url, hashing, data_dir)
    finally:
        for n in (name, name2):
            try:
                store.drop(n)
            except CollectionNotFound:
                pass


def _run(store, name, name2, url, hashing, data_dir):
    # IVF4 is trained once 156 vectors exist, so seals, merges and retrains rebuild IVF segments;
    # searches probe all 4 lists (exact), so k hits are owed whenever k documents match
    coll = store.create(name, hashing, "IVF4,Flat", index_fields=["batch"])
    coll.seal_at = 30  # seals and merges happen all the time
    dim = coll.dim
    rng0 = np.random.default_rng(SEED)
    oracle = Oracle()
    first = {f"s{i}": f"s{i} v0" for i in range(STABLE)}
    first.update({f"b{i}": f"b{i} v0" for i in range(200)})  # never changed: enough vectors to train IVF4
    oracle.before(first)
    coll.add_vectors([Document(i, t, {"stable": True}) for i, t in first.items()], _unit(rng0, len(first), dim))
    oracle.after(first)
    other = subprocess.Popen(
        [sys.executable, "-c", OTHER, str(data_dir), name, url or "", str(ROUNDS * (ROUND_SECONDS + 1.5) + 3)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    failures: list[str] = []
    counter = [0]
    version_lock = threading.Lock()
    # the oracle learns a write's outcome after it commits; writes whose order decides the
    # outcome (upserts of one id, adds and deletes by filter of one batch) are ordered here
    stable_lock = threading.Lock()
    churn_lock = threading.Lock()

    def next_version() -> int:
        with version_lock:
            counter[0] += 1
            return counter[0]

    def check_hits(hits, k, where) -> None:
        ids = [h.id for h in hits]
        if len(ids) != len(set(ids)):
            failures.append(f"duplicate documents in a search: {ids}")
        if len(hits) != k:  # STABLE documents always exist and match both filters used
            failures.append(f"search k={k} where={where} returned {len(hits)} hits")
        for h in hits:
            if h.id.startswith("p"):
                if not h.text.startswith(h.id + " v"):
                    failures.append(f"{h.id}: text {h.text!r} from no commit")
                continue
            with oracle.lock:
                seen = h.text in oracle.ever.get(h.id, ())
            if not seen:
                failures.append(f"{h.id}: text {h.text!r} was never committed")

    def worker(seed: int, stop: threading.Event) -> None:
        rng = np.random.default_rng(seed)
        ops = ["upsert", "add", "delete", "delete_where", "search", "search", "search"]
        ops += ["merge", "optimize", "retrain", "repair", "drop2"]
        while not stop.is_set():
            op = ops[rng.integers(len(ops))]
            try:
                if op == "upsert":
                    ids = [f"s{i}" for i in rng.choice(STABLE, size=4, replace=False)]
                    with stable_lock:
                        v = next_version()
                        docs = {i: f"{i} v{v}" for i in ids}
                        oracle.before(docs)
                        coll.add_vectors([Document(i, t, {"stable": True}) for i, t in docs.items()], _unit(rng, len(ids), dim))
                        oracle.after(docs)
                elif op == "add":
                    with churn_lock:
                        v = next_version()
                        docs = {f"c{v}-{j}": f"c{v}-{j} v{v}" for j in range(int(rng.integers(1, 6)))}
                        oracle.before(docs)
                        meta = {"stable": False, "batch": v % 5}
                        coll.add_vectors([Document(i, t, meta) for i, t in docs.items()], _unit(rng, len(docs), dim))
                        oracle.after(docs)
                elif op == "delete":
                    with oracle.lock:
                        churn = [i for i in oracle.now if i.startswith("c")]
                    if churn:
                        gone = [churn[j] for j in rng.choice(len(churn), size=min(3, len(churn)), replace=False)]
                        # another thread may delete the same ids first: the oracle drops them either way
                        coll.delete(gone)
                        oracle.after(dict.fromkeys(gone))
                elif op == "delete_where":
                    batch = int(rng.integers(5))
                    with churn_lock:
                        n = coll.delete_where({"stable": False, "batch": batch})
                        with oracle.lock:
                            gone = [i for i in oracle.now if i.startswith("c") and int(i[1:].split("-")[0]) % 5 == batch]
                        oracle.after(dict.fromkeys(gone))
                    assert n >= 0
                elif op == "search":
                    k = int(rng.integers(1, STABLE + 1))
                    where = [None, {"stable": True}][int(rng.integers(2))]
                    check_hits(coll.search_vectors(_unit(rng, 1, dim), k=k, where=where, nprobe=4)[0], k, where)
                elif op == "merge":
                    coll.merge(wait=False)
                elif op == "optimize":
                    coll.optimize()
                elif op == "retrain":
                    coll.merge(retrain=True)
                elif op == "repair":
                    out = coll.repair()
                    if out["actions"] != ["nothing to repair"]:
                        failures.append(f"repair found something to do on a healthy collection: {out}")
                elif op == "drop2":
                    try:
                        store.create(name2, hashing, "Flat").add_vectors([Document("a", "a", {})], _unit(rng, 1, dim))
                        store.drop(name2)
                    except (CollectionExists, CollectionNotFound):
                        pass
            except Exception as exc:  # noqa: BLE001 - every failure is reported with its operation
                failures.append(f"{op}: {type(exc).__name__}: {exc}")

    time.sleep(1.0)  # the other process starts writing
    for round_ in range(ROUNDS):
        stop = threading.Event()
        threads = [threading.Thread(target=worker, args=(SEED * 100 + round_ * 10 + t, stop), daemon=True) for t in range(3)]
        for t in threads:
            t.start()
        time.sleep(ROUND_SECONDS)
        stop.set()
        for t in threads:
            t.join(120)
            assert not t.is_alive(), f"round {round_}: a worker hung"
        assert not failures, f"round {round_}: {failures[:10]}"
        # the barrier: the collection holds exactly what the oracle says (the other process's
        # documents p0..p7 are checked by id and pattern: that process may commit meanwhile)
        report = coll.verify(check_model=False)  # of one generation, while the other process writes
        assert report.ok, (round_, report.problems)
        view = coll.view()
        stored = np.sort(np.concatenate([s.ids() for s in view.segments()]))
        assert len(stored) == len(np.unique(stored)), f"round {round_}: a row id is stored twice"
        with oracle.lock:
            expected = dict(oracle.now)
        got = {d["id"]: d["text"] for d in _all_documents(coll)}
        mine = {i: t for i, t in got.items() if not i.startswith("p")}
        assert mine == expected, (round_, set(mine) ^ set(expected))
    out, err = other.communicate(timeout=120)
    assert other.returncode == 0, err[-2000:]
    theirs = json.loads(out)
    assert theirs["short"] == 0 and theirs["searches"] > 10, theirs
    got = {d["id"]: d["text"] for d in _all_documents(coll)}
    assert {i: t for i, t in got.items() if i.startswith("p")} == theirs["last"]
    assert coll.verify(check_model=False).ok
    assert coll.info()["training"] is not None  # the IVF template was trained (and retrained) during the run


def _all_documents(coll) -> list[dict]:
    from embedsearch.store.documents_api import list_documents

    out, cursor = [], None
    while True:
        page = list_documents(coll, None, limit=1000, cursor=cursor)
        out += page.documents
        cursor = page.next_cursor
        if cursor is None:
            return out
