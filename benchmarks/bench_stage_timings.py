"""What the per-stage timings of a search cost: ``search(..., timings={})`` against ``timings=None``.

In one process, on a small hashing collection (2,000 topic documents, a lexical index, Flat), for
each mode: rounds of ``--queries`` single-query searches, ABBA-ordered (off, on, on, off, ...), so
drift in the machine's speed hits both alike; the ratio on/off is taken within each round and
the median and range of the per-round ratios are printed, with the microseconds per search.

    nice -n 10 python benchmarks/bench_stage_timings.py [--rounds 8] [--queries 300]

``--off-only`` prints the microseconds of the searches without timings only: run it with
PYTHONPATH pointing at a checkout without the instrumentation, then at one with it, in
alternation, to compare the code when nobody asks against the code before it (the package is
imported from PYTHONPATH, or the installed one).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

TOPICS = ["bushfire smoke firefighters", "interest rates bank", "cricket test wickets", "election votes parliament"]


def build(data_dir: Path):
    from embedsearch.config import Settings
    from embedsearch.corpus import Document
    from embedsearch.embedders import load_embedder
    from embedsearch.store import Store

    hashing = load_embedder("hashing")
    coll = Store(Settings.from_env(data_dir)).create("bench", hashing, "Flat", lexical=True)
    docs = [Document(f"d{i}", f"{TOPICS[i % 4]} story {i} words {i % 7} {i % 13}", {"n": i}) for i in range(2000)]
    coll.add_documents(docs, hashing)
    return coll, hashing


def run(coll, hashing, mode: str, queries: list[str], timed: bool) -> float:
    """Seconds per search."""
    from embedsearch.search import search

    started = time.perf_counter()
    if timed:
        for q in queries:
            search(coll, [q], 10, mode=mode, embedder=hashing, timings={})
    else:  # the call as it was before the argument existed
        for q in queries:
            search(coll, [q], 10, mode=mode, embedder=hashing)
    return (time.perf_counter() - started) / len(queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--off-only", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        coll, hashing = build(Path(tmp) / "data")
        queries = [f"{TOPICS[i % 4].split()[i % 3]} story {i}" for i in range(args.queries)]
        for mode in ("dense", "lexical", "hybrid"):
            run(coll, hashing, mode, queries[:50], False)  # warm up
            if args.off_only:
                per = [run(coll, hashing, mode, queries, False) for _ in range(args.rounds)]
                print(f"{mode:8s} off {statistics.median(per) * 1e6:8.1f} us/search (min {min(per) * 1e6:.1f})")
                continue
            ratios, offs, ons = [], [], []
            for r in range(args.rounds):
                order = (False, True) if r % 2 == 0 else (True, False)
                got = {flag: run(coll, hashing, mode, queries, flag) for flag in order}
                ratios.append(got[True] / got[False])
                offs.append(got[False])
                ons.append(got[True])
            print(
                f"{mode:8s} off {statistics.median(offs) * 1e6:8.1f} us  on {statistics.median(ons) * 1e6:8.1f} us  "
                f"on/off median {statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f})"
            )


if __name__ == "__main__":
    main()
