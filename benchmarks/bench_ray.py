"""Ray scale-out on this machine (issue 16): ingest through a Ray actor pool against a local
`index add`, and the fan-out cost of a sharded search against the unsharded collection.

    python benchmarks/bench_ray.py ingest [--docs 20000] [--minilm-docs 800] [--rounds 2] [--workers 2]
    python benchmarks/bench_ray.py search [--n 1000000] [--dim 256] [--spec IVF1024,Flat] [--shards 4]

ingest: the same paragraphs (Debian's dict-gcide / dict-foldoc, see dictd_corpus.py) added to a
fresh collection by ``Collection.add_documents`` (local) and by ``add_documents_on_ray`` (Ray
Data, ``--workers`` embedding actors), ABBA-ordered over ``--rounds``, for the hashing model and
MiniLM (no passages on either side). The Ray cluster is started once, before the timings
(its start-up is reported apart). Wall time includes the commit.

search: ``--n`` seeded clustered vectors (bench_scale.py's generator) in a collection of
``--spec`` written in commits of 100k, so it holds n/100k sealed segments; the same collection
searched unsharded (this process, FAISS on 2 OpenMP threads) and through ``--shards`` Ray actors
(one thread each), ABBA-ordered: one query per call (p50 over ``--queries``), and batches of 100.
The results are checked equal before anything is timed. Each shard's resident memory is read
from the actors.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"


def _machine() -> dict:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def _start_ray():
    import ray

    t = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, configure_logging=False,
             _node_ip_address="127.0.0.1")  # fmt: skip
    return time.perf_counter() - t


def cmd_ingest(args) -> dict:
    sys.path.insert(0, str(HERE))
    from bench_scale import _paragraphs

    from embedsearch.cluster.ingest import add_documents_on_ray
    from embedsearch.config import Settings
    from embedsearch.corpus import Document
    from embedsearch.embedders import load_embedder
    from embedsearch.store import Store

    started = _start_ray()
    out = {"benchmark": "bench_ray ingest", "machine": _machine(), "ray_start_s": round(started, 2), "workers": args.workers,
           "models": {}}  # fmt: skip
    for model, n in (("hashing", args.docs), ("minilm", args.minilm_docs)):
        texts = _paragraphs(n)
        docs = [Document(f"p{i}", t, {}) for i, t in enumerate(texts)]
        embedder = load_embedder(model, device="cpu")
        times: dict[str, list[float]] = {"local": [], "ray": []}
        order = []
        for _ in range(args.rounds):
            order += ["local", "ray", "ray", "local"]
        for i, how in enumerate(order):
            store = Store(Settings.from_env(Path(tempfile.mkdtemp(prefix="bench-ray-"))))
            coll = store.create(f"c{i}", embedder, "Flat")
            coll.auto_merge = False
            t = time.perf_counter()
            if how == "local":
                r = coll.add_documents(docs, embedder)
            else:
                r = add_documents_on_ray(coll, docs, workers=args.workers, batch_size=args.batch_size)
            times[how].append(time.perf_counter() - t)
            assert r.added == len(docs)
            print(f"{model} {how}: {times[how][-1]:.2f} s", file=sys.stderr)
        local, remote = statistics.median(times["local"]), statistics.median(times["ray"])
        out["models"][model] = {
            "documents": n,
            "local_s": [round(x, 3) for x in times["local"]],
            "ray_s": [round(x, 3) for x in times["ray"]],
            "local_docs_per_s": round(n / local, 1),
            "ray_docs_per_s": round(n / remote, 1),
            "ray_over_local_time": round(remote / local, 3),
        }
    return out


def cmd_search(args) -> dict:
    sys.path.insert(0, str(HERE))
    import faiss
    from bench_scale import Fixed, chunks, clustered

    from embedsearch.config import Settings
    from embedsearch.store import Store

    faiss.omp_set_num_threads(os.cpu_count())
    data = Path(tempfile.mkdtemp(prefix="bench-ray-search-", dir=args.tmp))
    settings = Settings.from_env(data)
    store = Store(settings)
    emb = Fixed(args.dim, "synthetic")
    coll = store.create("big", emb, args.spec)
    coll.auto_merge = False
    t = time.perf_counter()
    for start, x in chunks(args.n, args.dim, size=100_000):
        from embedsearch.corpus import Document

        coll.add_vectors([Document(f"v{start + i}", "", {}) for i in range(len(x))], x, commit_every=100_000)
        print(f"added {start + len(x)}", file=sys.stderr)
    build_s = time.perf_counter() - t
    segments = len([s for s in coll.info()["segments"] if s["state"] == "sealed"])
    started = _start_ray()
    # the same collection, searched through shards: a second handle whose row says so
    from embedsearch.cluster.shards import ShardSearchers

    sharded_store = Store(settings, searchers=ShardSearchers())
    sharded = sharded_store.open("big")
    sharded.row = {**sharded.row, "embedder_config": {**(sharded.row["embedder_config"] or {}), "shards": args.shards}}
    queries = clustered(args.queries, args.dim, seed=7)
    a = coll.search_vectors(queries[:20], 10, columns=())
    b = sharded.search_vectors(queries[:20], 10, columns=())
    assert [[(h.row_id, round(h.score, 5)) for h in x] for x in a] == [[(h.row_id, round(h.score, 5)) for h in x] for x in b]
    rss = [d.get("rss_mb") for d in sharded_store.searcher_for(sharded).describe()]
    single: dict[str, list[float]] = {"unsharded": [], "sharded": []}
    batch: dict[str, list[float]] = {"unsharded": [], "sharded": []}
    order = []
    for _ in range(args.rounds):
        order += ["unsharded", "sharded", "sharded", "unsharded"]
    for how in order:
        target = coll if how == "unsharded" else sharded
        lat = []
        for q in queries:
            t = time.perf_counter()
            target.search_vectors(q[None, :], 10, columns=())
            lat.append(time.perf_counter() - t)
        single[how].append(statistics.median(lat) * 1000)
        t = time.perf_counter()
        for s in range(0, len(queries), 100):
            target.search_vectors(queries[s : s + 100], 10, columns=())
        batch[how].append(len(queries) / (time.perf_counter() - t))
        print(f"{how}: p50 {single[how][-1]:.2f} ms, batch {batch[how][-1]:.0f} q/s", file=sys.stderr)
    p50 = {k: statistics.median(v) for k, v in single.items()}
    qps = {k: statistics.median(v) for k, v in batch.items()}
    return {
        "benchmark": "bench_ray search",
        "machine": _machine(),
        "n": args.n,
        "dim": args.dim,
        "spec": args.spec,
        "sealed_segments": segments,
        "shards": args.shards,
        "build_s": round(build_s, 1),
        "ray_start_s": round(started, 2),
        "single_p50_ms": {k: [round(x, 3) for x in v] for k, v in single.items()},
        "batch_qps": {k: [round(x, 1) for x in v] for k, v in batch.items()},
        "sharded_over_unsharded_p50": round(p50["sharded"] / p50["unsharded"], 3),
        "sharded_over_unsharded_batch_time": round(qps["unsharded"] / qps["sharded"], 3),
        "shard_rss_mb": rss,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ingest")
    p.add_argument("--docs", type=int, default=20_000)
    p.add_argument("--minilm-docs", type=int, default=800)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=256)
    p = sub.add_parser("search")
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--spec", default="IVF1024,Flat")
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--tmp", default=None)
    ap.add_argument("--out", default=None, help="write the JSON here (default: benchmarks/results/ray-CMD-2cpu-DATE.json)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = cmd_ingest(args) if args.cmd == "ingest" else cmd_search(args)
    text = json.dumps(out, indent=2)
    print(text)
    path = Path(args.out) if args.out else RESULTS / f"ray-{args.cmd}-{os.cpu_count()}cpu-{time.strftime('%Y-%m-%d')}.json"
    path.write_text(text + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
