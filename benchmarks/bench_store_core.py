"""Store-core before/after benchmark: two revisions of embedsearch side by side, ABBA order.

    python benchmarks/bench_store_core.py --old 58b69d4 --new HEAD [--rounds 3] [--n 100000] \
        [--save benchmarks/results/store-core-before-after-....json]

Each revision is checked out into its own detached git worktree (<--worktree-root>/bench-old
and bench-new; reused when they already exist at the requested commit, removed at the end
unless --keep-worktrees) and every measurement runs in a fresh subprocess with
PYTHONPATH=<worktree> and cwd=<worktree>, so each side imports its own ``embedsearch``
package (the child reports ``embedsearch.__file__``; the run stops if it is not the worktree's).
The child imports ``Store`` from ``embedsearch.store`` and falls back to
``embedsearch.store.collection`` (where it lived before the store layout split).

Set-up, outside any timing, once per side in its own data directory: a collection of --n
clustered 256-d vectors (seeded; the generator of bench_scale.py) added with one
``add_vectors`` call, spec IVF1024,Flat, the hashing model (256-d) as the collection's model,
metadata {"bucket": i % 100, "cat": i % 10}.

Measurements (each a fresh process against that side's already-built collection):

* open: time from ``Store(settings).open(name)`` to the first ``search_vectors`` result
  (--opens fresh processes per slot; the slot's value is their median). Import time apart.
* upsert: p50 of --upserts single-document ``add_documents([doc], hashing)`` calls, after one
  untimed warm-up search; ``coll.auto_merge = False`` so no merge is timed. Even calls
  replace an existing document (same bucket/cat), odd ones add a new one; each side gets the
  same sequence of documents, so both collections change the same way.
* search / filter30 / filter1: p50 of --queries ``search_vectors(q, k=10)`` calls, unfiltered,
  where={"bucket": {"$lt": 30}} (30% of documents) and where={"bucket": 0} (1%). One untimed
  warm-up query first (it computes the filter's selection in SQL; reported as first_ms).

Order: for each round, for each measurement, the slots run OLD, NEW, NEW, OLD. A round's
ratio is (NEW_a + NEW_b) / (OLD_a + OLD_b) of the slots' p50s; the headline OLD/NEW figures
are the medians of all slots' p50s. The JSON written to --save holds every raw latency.

This is a wall-clock benchmark: on a shared machine other work adds noise; the load averages
before and after the run are printed and saved.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

MEASUREMENTS = ["open", "upsert", "search", "filter30", "filter1"]
FILTERS = {"search": None, "filter30": {"bucket": {"$lt": 30}}, "filter1": {"bucket": 0}}
NAME = "bench_core"

CHILD = r"""
import json, os, statistics, sys, time
t0 = time.perf_counter()
import numpy as np
import embedsearch
from embedsearch.config import Settings
try:
    from embedsearch.store import Store
except ImportError:
    from embedsearch.store.collection import Store
from embedsearch.corpus import Document
from embedsearch.embedders import load_embedder
import_s = time.perf_counter() - t0

args = json.loads(sys.argv[1])
mode, data_dir, name = args["mode"], args["data_dir"], args["name"]
out = {"embedsearch_file": embedsearch.__file__, "store_module": Store.__module__, "import_s": import_s}


def clustered(n, dim, seed, clusters=1000):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(12345).standard_normal((clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def settings():
    return Settings.from_env(data_dir)


def segments_of(coll):
    view = coll.view()
    return [(s.meta.state, s.meta.spec, int(s.meta.count)) for s in view.segments()]


if mode == "build":
    n = args["n"]
    hashing = load_embedder("hashing")
    store = Store(settings())
    coll = store.create(name, hashing, "IVF1024,Flat")
    x = clustered(n, hashing.dim, seed=7)
    docs = [Document(f"d{i}", f"synthetic document {i}", {"bucket": i % 100, "cat": i % 10}) for i in range(n)]
    t = time.perf_counter()
    res = coll.add_vectors(docs, x)
    out["build_s"] = time.perf_counter() - t
    out["add_result"] = {k: v for k, v in vars(res).items() if isinstance(v, (int, float, str))}
    out["count"] = coll.count()
    out["segments"] = segments_of(coll)

elif mode == "open":
    q = clustered(1, 256, seed=99)
    t = time.perf_counter()
    coll = Store(settings()).open(name)
    hits = coll.search_vectors(q, k=10)
    out["open_search_s"] = time.perf_counter() - t
    out["hits"] = len(hits[0])
    out["segments"] = segments_of(coll)

elif mode == "upsert":
    hashing = load_embedder("hashing")
    coll = Store(settings()).open(name)
    coll.auto_merge = False
    coll.search_vectors(clustered(1, 256, seed=99), k=10)  # warm-up: view loaded, connection open
    r, j, count, n = args["round"], args["slot"], args["upserts"], args["n"]
    lat, kinds, results = [], [], []
    for i in range(count):
        if i % 2 == 0:  # replace an existing document, keeping its bucket and category
            idx = ((r * 2 + j) * 9973 + i * 131) % n
            doc = Document(f"d{idx}", f"updated text r{r} s{j} i{i} about rivers and rain",
                           {"bucket": idx % 100, "cat": idx % 10})
            kinds.append("update")
        else:
            idx = n + (r * 2 + j) * count + i
            doc = Document(f"new-r{r}-s{j}-{i}", f"a new document r{r} s{j} i{i} about mountains",
                           {"bucket": idx % 100, "cat": idx % 10})
            kinds.append("new")
        t = time.perf_counter()
        res = coll.add_documents([doc], hashing)
        lat.append(time.perf_counter() - t)
        results.append((res.added, res.updated, res.unchanged))
    out["lat_s"] = lat
    out["kinds"] = kinds
    out["results"] = results
    out["segments"] = segments_of(coll)

elif mode == "search":
    where = args["where"]
    qs = clustered(args["queries"], 256, seed=2024)
    coll = Store(settings()).open(name)
    t = time.perf_counter()
    first = coll.search_vectors(qs[:1], k=10, where=where)
    out["first_s"] = time.perf_counter() - t
    lat, nhits = [], 0
    for i in range(len(qs)):
        q = qs[i : i + 1]
        t = time.perf_counter()
        hits = coll.search_vectors(q, k=10, where=where)
        lat.append(time.perf_counter() - t)
        nhits += len(hits[0])
    out["lat_s"] = lat
    out["hits_total"] = nhits
    out["top_ids_q0"] = [h.id for h in first[0]]

print("RESULT " + json.dumps(out))
"""


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True).stdout.strip()


def worktree(path: Path, sha: str) -> bool:
    """Check ``sha`` out at ``path`` (detached); reuse an existing worktree at that commit.
    Returns whether this run created it."""
    if path.exists():
        head = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        if head != sha:
            raise SystemExit(f"{path} exists at {head or '?'}, not {sha}; remove it or pass --worktree-root")
        return False
    git("worktree", "add", "--detach", str(path), sha)
    return True


def child(tree: Path, payload: dict) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)
    for var in ("EMBEDSEARCH_DB", "EMBEDSEARCH_HOME", "EMBEDSEARCH_SEAL_AT"):
        env.pop(var, None)
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(payload)], cwd=tree, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"child {payload['mode']} in {tree} failed:\n{proc.stdout}\n{proc.stderr}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    out = json.loads(line[len("RESULT ") :])
    expected = str(tree / "embedsearch" / "__init__.py")
    if os.path.realpath(out["embedsearch_file"]) != os.path.realpath(expected):
        raise SystemExit(f"child imported {out['embedsearch_file']}, expected {expected}")
    return out


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def p50(xs: list[float]) -> float:
    return statistics.median(xs)


def run_slot(side: str, m: str, trees: dict, data: dict, args, rnd: int, slot: int) -> dict:
    base = {"data_dir": str(data[side]), "name": NAME}
    if m == "open":
        runs = [child(trees[side], {**base, "mode": "open"}) for _ in range(args.opens)]
        vals = [r["open_search_s"] * 1000 for r in runs]
        return {
            "value_ms": p50(vals),
            "raw_ms": vals,
            "import_ms": [r["import_s"] * 1000 for r in runs],
            "segments": runs[-1]["segments"],
        }
    if m == "upsert":
        r = child(trees[side], {**base, "mode": "upsert", "round": rnd, "slot": slot, "upserts": args.upserts, "n": args.n})
        lat = [x * 1000 for x in r["lat_s"]]
        upd = [x for x, k in zip(lat, r["kinds"], strict=True) if k == "update"]
        new = [x for x, k in zip(lat, r["kinds"], strict=True) if k == "new"]
        return {
            "value_ms": p50(lat),
            "raw_ms": lat,
            "update_p50_ms": p50(upd),
            "new_p50_ms": p50(new),
            "results": r["results"],
            "segments": r["segments"],
        }
    r = child(trees[side], {**base, "mode": "search", "where": FILTERS[m], "queries": args.queries})
    lat = [x * 1000 for x in r["lat_s"]]
    return {
        "value_ms": p50(lat),
        "raw_ms": lat,
        "first_ms": r["first_s"] * 1000,
        "hits_total": r["hits_total"],
        "top_ids_q0": r["top_ids_q0"],
    }


def summarise(slots: list[dict]) -> dict:
    """slots: dicts with side, round, value_ms. Headline medians and per-round ratios."""
    old = [s["value_ms"] for s in slots if s["side"] == "old"]
    new = [s["value_ms"] for s in slots if s["side"] == "new"]
    rounds = sorted({s["round"] for s in slots})
    per_round = []
    for r in rounds:
        o = sum(s["value_ms"] for s in slots if s["side"] == "old" and s["round"] == r)
        n = sum(s["value_ms"] for s in slots if s["side"] == "new" and s["round"] == r)
        per_round.append(n / o)
    return {
        "old_p50_ms": p50(old),
        "new_p50_ms": p50(new),
        "ratio": p50(new) / p50(old),
        "round_ratios": per_round,
        "min_ratio": min(per_round),
        "max_ratio": max(per_round),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", required=True, help="revision before the change")
    ap.add_argument("--new", default="HEAD", help="revision after the change")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--upserts", type=int, default=30)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--opens", type=int, default=3, help="fresh processes per open slot (median)")
    ap.add_argument("--save", type=Path)
    ap.add_argument("--worktree-root", type=Path, default=Path(tempfile.gettempdir()))
    ap.add_argument("--tmp", default=None, help="parent of the data directories")
    ap.add_argument("--keep-worktrees", action="store_true")
    args = ap.parse_args()

    shas = {"old": git("rev-parse", args.old + "^{commit}"), "new": git("rev-parse", args.new + "^{commit}")}
    trees = {side: args.worktree_root / f"bench-{side}" for side in shas}
    created = {side: worktree(trees[side], shas[side]) for side in shas}
    data = {side: Path(tempfile.mkdtemp(prefix=f"bench-core-{side}-", dir=args.tmp)) for side in shas}
    load_before = loadavg()
    started = time.time()
    print(f"OLD {args.old} = {shas['old']}  ({trees['old']})")
    print(f"NEW {args.new} = {shas['new']}  ({trees['new']})")
    print(f"load average before: {load_before}   cpus: {os.cpu_count()}", flush=True)
    record = {
        "old": args.old,
        "new": args.new,
        "shas": shas,
        "n": args.n,
        "rounds": args.rounds,
        "upserts": args.upserts,
        "queries": args.queries,
        "opens": args.opens,
        "python": sys.version,
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "build": {},
        "slots": [],
    }
    try:
        for side in ("old", "new"):
            b = child(trees[side], {"mode": "build", "data_dir": str(data[side]), "name": NAME, "n": args.n})
            record["build"][side] = b
            print(
                f"built {side}: {b['count']} documents in {b['build_s']:.1f}s, segments {b['segments']}, "
                f"Store from {b['store_module']} ({b['embedsearch_file']})",
                flush=True,
            )
        order = ["old", "new", "new", "old"]
        for rnd in range(args.rounds):
            for m in MEASUREMENTS:
                seen = {"old": 0, "new": 0}
                for side in order:
                    res = run_slot(side, m, trees, data, args, rnd, seen[side])
                    seen[side] += 1
                    res.update(side=side, round=rnd, measurement=m, load=loadavg())
                    record["slots"].append(res)
                    print(f"round {rnd} {m:8s} {side}: p50 {res['value_ms']:.3f} ms", flush=True)
        load_after = loadavg()
        record["load_after"] = load_after
        record["elapsed_s"] = time.time() - started
        record["summary"] = {m: summarise([s for s in record["slots"] if s["measurement"] == m]) for m in MEASUREMENTS}
        extra = {}
        for m in ("search", "filter30", "filter1"):
            extra[f"{m}_first"] = summarise([{**s, "value_ms": s["first_ms"]} for s in record["slots"] if s["measurement"] == m])
        for key in ("update_p50_ms", "new_p50_ms"):
            extra[f"upsert_{key[:-7]}"] = summarise(
                [{**s, "value_ms": s[key]} for s in record["slots"] if s["measurement"] == "upsert"]
            )
        extra["open_import"] = summarise(
            [{**s, "value_ms": p50(s["import_ms"])} for s in record["slots"] if s["measurement"] == "open"]
        )
        record["summary_secondary"] = extra

        def table(title: str, rows: dict) -> None:
            print(f"\n{title}")
            print(
                f"{'metric':16s} {'OLD p50 ms':>11s} {'NEW p50 ms':>11s} {'NEW/OLD':>8s}  "
                f"{'per-round ratios':26s} {'min':>6s} {'max':>6s}"
            )
            for m, s in rows.items():
                rr = " ".join(f"{x:.3f}" for x in s["round_ratios"])
                print(
                    f"{m:16s} {s['old_p50_ms']:11.3f} {s['new_p50_ms']:11.3f} {s['ratio']:8.3f}  {rr:26s} "
                    f"{s['min_ratio']:6.3f} {s['max_ratio']:6.3f}"
                )

        table(f"n={args.n}, rounds={args.rounds} (ABBA), OLD {shas['old'][:7]} vs NEW {shas['new'][:7]}", record["summary"])
        table("secondary: first (cold-selection) query, upsert kinds, import time", extra)
        print(f"\nload average before {load_before}, after {load_after}; elapsed {record['elapsed_s']:.0f}s")
        if args.save:
            args.save.parent.mkdir(parents=True, exist_ok=True)
            args.save.write_text(json.dumps(record, indent=1) + "\n")
            print(f"saved {args.save}")
    finally:
        for side in shas:
            shutil.rmtree(data[side], ignore_errors=True)
            if created[side] and not args.keep_worktrees:
                git("worktree", "remove", "--force", str(trees[side]))


if __name__ == "__main__":
    main()
