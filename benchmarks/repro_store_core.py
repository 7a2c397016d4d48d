"""The store-core issue's two counted reproductions, run against any revision of embedsearch.

    python benchmarks/repro_store_core.py                       # the code this file sits in
    PYTHONPATH=/path/to/old/checkout python benchmarks/repro_store_core.py --seconds 20

1. **Duplicate rows in the growing log**: one process, one collection; a thread adds 3
   documents at a time while three threads search (k=1000) for ``--seconds``. Prints the row ids
   stored more than once (what ``index verify`` calls "row ids are stored twice") and the
   searches that returned a document twice.
2. **Short searches beside another process's commits**: another process re-upserts the same 50
   documents in a loop; this one searches k=10 ``--searches`` times. Prints how many returned
   fewer than 10 hits (50 documents exist throughout) and how many returned none.

Both use 256-d random vectors through ``add_vectors`` (no model), SQLite, a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

UPSERTER = r"""
import sys, time
import numpy as np
from embedsearch.config import Settings
from embedsearch.corpus import Document
try:
    from embedsearch.store import Store
except ImportError:
    from embedsearch.store.collection import Store
coll = Store(Settings.from_env(sys.argv[1])).open("r")
rng = np.random.default_rng(5)
end = time.time() + float(sys.argv[2])
v = 0
while time.time() < end:
    v += 1
    x = rng.standard_normal((50, coll.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    coll.add_vectors([Document(f"d{i}", f"d{i} v{v}", {}) for i in range(50)], x)
print(v)
"""


def _store(path: Path):
    from embedsearch.config import Settings

    try:
        from embedsearch.store import Store
    except ImportError:  # before the store declared its public surface
        from embedsearch.store.collection import Store
    return Store(Settings.from_env(path))


def _unit(rng, n, dim):
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def duplicates(seconds: float) -> dict:
    from embedsearch.corpus import Document
    from embedsearch.embedders import load_embedder

    coll = _store(Path(tempfile.mkdtemp(prefix="repro1-"))).create("r", load_embedder("hashing"), "Flat")
    rng = np.random.default_rng(0)
    coll.add_vectors([Document(f"s{i}", "seed", {}) for i in range(20)], _unit(rng, 20, coll.dim))
    stop = threading.Event()
    state = {"added": 0, "searches": 0, "dup_searches": 0, "errors": []}

    def writer():
        r = np.random.default_rng(1)
        while not stop.is_set():
            n = state["added"]
            coll.add_vectors([Document(f"d{n + j}", "x", {}) for j in range(3)], _unit(r, 3, coll.dim))
            state["added"] += 3

    def searcher(seed):
        r = np.random.default_rng(seed)
        while not stop.is_set():
            try:
                hits = coll.search_vectors(_unit(r, 1, coll.dim), k=1000, columns=())[0]
            except Exception as exc:  # noqa: BLE001 - counted
                state["errors"].append(repr(exc)[:200])
                continue
            state["searches"] += 1
            ids = [h.id for h in hits]
            state["dup_searches"] += len(ids) != len(set(ids))

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=searcher, args=(s,)) for s in (2, 3, 4)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    report = coll.verify(check_model=False)
    view = coll.view()
    stored = np.sort(np.concatenate([s.ids() for s in view.segments()]))
    twice = int((stored[1:] == stored[:-1]).sum())
    return {
        "seconds": seconds,
        "documents_added": state["added"],
        "searches": state["searches"],
        "searches_with_a_document_twice": state["dup_searches"],
        "row_ids_stored_twice": twice,
        "verify_ok": report.ok,
        "verify_problems": report.problems[:3],
        "search_errors": len(state["errors"]),
    }


def short_searches(searches: int) -> dict:
    from embedsearch.corpus import Document
    from embedsearch.embedders import load_embedder

    path = Path(tempfile.mkdtemp(prefix="repro2-"))
    coll = _store(path).create("r", load_embedder("hashing"), "Flat")
    rng = np.random.default_rng(0)
    coll.add_vectors([Document(f"d{i}", f"d{i} v0", {}) for i in range(50)], _unit(rng, 50, coll.dim))
    proc = subprocess.Popen([sys.executable, "-c", UPSERTER, str(path), "600"], stdout=subprocess.PIPE, text=True)
    time.sleep(2)
    short = empty = 0
    try:
        for _ in range(searches):
            n = len(coll.search_vectors(_unit(rng, 1, coll.dim), k=10)[0])
            short += n != 10
            empty += n == 0
    finally:
        proc.kill()
        proc.wait()
    return {"searches": searches, "short": short, "empty": empty, "verify_ok": coll.verify(check_model=False).ok}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--searches", type=int, default=2000)
    args = ap.parse_args()
    import embedsearch

    out = {
        "code": str(Path(embedsearch.__file__).parent),
        "duplicates": duplicates(args.seconds),
        "short_searches": short_searches(args.searches),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
