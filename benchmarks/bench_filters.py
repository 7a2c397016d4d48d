"""Filtered search against raw FAISS on the same vectors (issue: "a filtered search that costs
what FAISS costs").

    python benchmarks/bench_filters.py [--n 100000] [--spec auto] [--queries 200] [--rounds 4] [--index-field bucket]

N real paragraphs (dict-gcide + dict-foldoc; synthetic sentences without them) embedded once
with the hashing model (256-d; ``--model minilm``: MiniLM's 384-d, cached in the temp dir) go
into one collection through ``add_vectors`` (its own segments, merges and spec), each with
metadata ``{"bucket": 0..999, "source": ...}``. Filters ``{"bucket": {"$gte": a, "$lt": a + w}}``
select 0.1%, 1%, 10%, 30% and 90% of the documents.

For each selectivity, side by side in ABBA order (rounds of ours, raw, raw, ours):

* ours, cold: one query with a filter this process has not run at this generation (a new ``a``
  each time), so SQL evaluates the filter;
* ours, warm: the same filter again (the cached selection);
* raw: FAISS ``index.search`` with a precomputed ``IDSelectorBitmap`` on one index of the same
  spec over the same vectors, at the spec's default nprobe / efSearch;
* batch: ``--queries`` queries in one call, ours (warm) and raw;
* recall@10 of ours and of raw against exact filtered search (numpy over every vector), counting
  ties as found (the paragraphs hold duplicate texts: an id whose score equals the k-th best is
  as right as the one numpy happened to pick).

Unfiltered: our single query against raw FAISS plus the SQL fetch of the k hits' rows (what a
search must return), and batch against batch. Ratios are ours / raw; p50 over every sample.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SELECTIVITIES = [0.001, 0.01, 0.1, 0.3, 0.9]
K = 10


def p50_ms(samples: list[float]) -> float:
    return 1000 * statistics.median(samples)


def embed_cached(model: str, texts: list[str], tag: str) -> np.ndarray:
    """The texts' vectors, computed once per (model, texts) and kept in the temp dir (MiniLM takes
    minutes for 100k paragraphs on 2 cores)."""
    import hashlib

    from embedsearch.embedders import load_embedder

    key = hashlib.sha256(("\n".join(texts)).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"bench-filters-{model}-{tag}-{len(texts)}-{key}.npy"
    if path.exists():
        return np.load(path)
    x = load_embedder(model, device="cpu").embed(texts, progress=sys.stderr.isatty())
    np.save(path, x)
    return x


def build(n: int, spec: str, tmp: str, index_fields=(), model: str = "hashing"):
    from bench_scale import _paragraphs

    from embedsearch.config import Settings
    from embedsearch.corpus import Document
    from embedsearch.embedders import load_embedder
    from embedsearch.store import Store

    texts = _paragraphs(n + 2000)
    docs_t, query_t = texts[:n], texts[n:]
    emb = load_embedder(model, device="cpu")
    x = embed_cached(model, docs_t, "docs")
    q = embed_cached(model, query_t, "queries")
    rng = np.random.default_rng(7)
    bucket = rng.permutation(np.arange(n) % 1000)
    store = Store(Settings.from_env(tmp))
    coll = store.create("bench", emb, spec, index_fields=index_fields)
    t = time.perf_counter()
    step = 50_000
    for s in range(0, n, step):
        docs = [
            Document(f"d{i}", docs_t[i], {"bucket": int(bucket[i]), "source": "gcide" if i % 3 else "foldoc"})
            for i in range(s, min(n, s + step))
        ]
        coll.add_vectors(docs, x[s : s + step])
    coll.optimize()  # what a user runs after a bulk load: merges the segments
    build_s = time.perf_counter() - t
    return store, coll, x, q, bucket, build_s


def raw_index(coll, x: np.ndarray, nprobe: int | None = None, ef_search: int | None = None):
    """One plain FAISS index of the collection's spec over every vector (ids = row ids)."""
    import faiss

    from embedsearch.store.specs import HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH, default_nprobe

    segs = coll.view().segments()
    spec = segs[0].spec
    if spec.ivf:
        nlist = spec.nlist
        index = faiss.read_index(str(coll.dir / coll.view().training.file))
        index.add_with_ids(x, np.arange(len(x), dtype=np.int64))
        probe = nprobe or default_nprobe(nlist)
        return index, lambda sel: faiss.SearchParametersIVF(sel=sel, nprobe=probe), spec.text
    if spec.kind == "hnsw":
        index = faiss.IndexHNSWFlat(x.shape[1], spec.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.add(x)
        ef = ef_search or HNSW_EF_SEARCH
        return index, lambda sel: faiss.SearchParametersHNSW(sel=sel, efSearch=ef), spec.text
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    return index, lambda sel: faiss.SearchParameters(sel=sel), spec.text


def exact(x, q, mask, k=K):
    """Exact filtered top-k: (ids, the k-th best score per query)."""
    ids = np.flatnonzero(mask)
    out = np.empty((len(q), k), dtype=np.int64)
    kth = np.empty(len(q), dtype=np.float32)
    for s in range(0, len(q), 64):
        sims = q[s : s + 64] @ x[ids].T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        out[s : s + 64] = ids[top]
        kth[s : s + 64] = np.take_along_axis(sims, top, axis=1).min(axis=1)
    return out, kth


def recall(found: np.ndarray, truth, x: np.ndarray, q: np.ndarray) -> float:
    """recall@k against exact search, counting ties as found: the paragraphs hold many duplicate
    texts (equal vectors), and any of several equal-scored ids is a right answer. A found id
    counts when its true score reaches the exact k-th best score."""
    _, kth = truth
    hits = []
    for i, f in enumerate(found):
        f = f[f >= 0]
        scores = x[f] @ q[i] if len(f) else np.zeros(0)
        hits.append(min(int((scores >= kth[i] - 1e-5).sum()), K) / K)
    return float(np.mean(hits))


def bitmap_selector(mask: np.ndarray):
    import faiss

    bits = np.packbits(np.concatenate([mask, np.zeros((-len(mask)) % 8, dtype=bool)]), bitorder="little")
    sel = faiss.IDSelectorBitmap(bits)
    sel._keep = bits
    return sel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--spec", default="auto")
    ap.add_argument("--model", default="hashing", help="hashing (default) or a sentence model, e.g. minilm (vectors cached)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=4, help="ABBA rounds per measurement")
    ap.add_argument("--tmp", default=None)
    ap.add_argument("--index-field", action="append", default=[], help="build a payload index on this field (bucket)")
    ap.add_argument("--nprobe", type=int, default=None, help="IVF lists to probe, ours and raw (default: the spec's)")
    ap.add_argument("--ef-search", type=int, default=None, help="HNSW efSearch, ours and raw (default: ours)")
    ap.add_argument("--save", default=None, help="write the results as JSON here")
    args = ap.parse_args()

    import faiss

    tmp = tempfile.mkdtemp(prefix="bench-filters-", dir=args.tmp)
    store, coll, x, q, bucket, build_s = build(args.n, args.spec, tmp, args.index_field, args.model)
    q = q[: args.queries]
    index, params_for, spec = raw_index(coll, x, args.nprobe, args.ef_search)
    tune = {"nprobe": args.nprobe, "ef_search": args.ef_search}
    nseg = len(coll.view().segments())
    threads = faiss.omp_get_max_threads()
    print(
        f"{args.n} documents, spec {args.spec} -> {spec}, {nseg} segments, built in {build_s:.1f} s; faiss threads {threads}; "
        f"payload indexes: {', '.join(args.index_field) or 'none'}; nprobe {args.nprobe or 'default'}, "
        f"efSearch {args.ef_search or 'default'}"
    )
    db = sqlite3.connect(str(Path(tmp) / "embedsearch.db"))
    cid = coll.id

    def fetch_rows(ids):
        marks = ",".join("?" * len(ids))
        return db.execute(
            f"SELECT row_id, external_id, text, meta FROM documents WHERE collection_id = ? AND row_id IN ({marks})",
            [cid, *map(int, ids)],
        ).fetchall()

    results: dict = {"n": args.n, "spec": spec, "segments": nseg, "build_s": build_s, "index_fields": args.index_field,
                     "model": args.model, **tune}
    results["rows"] = []
    # ---- unfiltered ----
    ours_s, raw_s = [], []
    for r in range(args.rounds):
        for who in ("ours", "raw", "raw", "ours"):
            for i in range(r * 20, r * 20 + 20):
                qi = q[i % len(q) : i % len(q) + 1]
                t = time.perf_counter()
                if who == "ours":
                    coll.search_vectors(qi, K, **tune)
                    ours_s.append(time.perf_counter() - t)
                else:
                    _, ids = index.search(qi, K, params=params_for(None))
                    fetch_rows(ids[0][ids[0] >= 0])
                    raw_s.append(time.perf_counter() - t)
    b_ours, b_raw = [], []
    for who in ("ours", "raw", "raw", "ours"):
        t = time.perf_counter()
        if who == "ours":
            hits = coll.search_vectors(q, K, **tune)
            b_ours.append(time.perf_counter() - t)
            unf_ours = np.array([[h.row_id for h in row] + [-1] * (K - len(row)) for row in hits])
        else:
            _, unf_raw = index.search(q, K, params=params_for(None))
            b_raw.append(time.perf_counter() - t)
    truth = exact(x, q, np.ones(len(x), dtype=bool))
    unf = {
        "ours_p50_ms": p50_ms(ours_s),
        "raw_plus_fetch_p50_ms": p50_ms(raw_s),
        "batch_ours_s": min(b_ours),
        "batch_raw_s": min(b_raw),
        "recall_ours": recall(unf_ours, truth, x, q),
        "recall_raw": recall(unf_raw, truth, x, q),
    }
    results["unfiltered"] = unf
    print(
        f"unfiltered: one query {unf['ours_p50_ms']:.2f} ms vs raw+fetch {unf['raw_plus_fetch_p50_ms']:.2f} ms "
        f"({unf['ours_p50_ms'] / unf['raw_plus_fetch_p50_ms']:.2f}x); batch of {len(q)}: {unf['batch_ours_s']:.3f} s vs "
        f"{unf['batch_raw_s']:.3f} s ({unf['batch_ours_s'] / unf['batch_raw_s']:.2f}x); recall@10 {unf['recall_ours']:.3f} "
        f"vs raw {unf['recall_raw']:.3f}"
    )
    header = (
        f"{'selects':>8} {'cold ms':>8} {'warm ms':>8} {'raw ms':>7} {'warm/raw':>8} {'warm/unf':>8} "
        f"{'batch s':>8} {'raw s':>7} {'ratio':>6} {'recall':>7} {'raw rec':>7}"
    )
    print(header)
    offset = 0
    for s in SELECTIVITIES:
        w = max(1, int(round(1000 * s)))
        cold, warm, raw = [], [], []
        for r in range(args.rounds):
            for who in ("ours", "raw", "raw", "ours"):
                for i in range(5):
                    a = (offset := offset + 1) % (1000 - w + 1) if w < 1000 else 0
                    where = {"bucket": {"$gte": a, "$lt": a + w}}
                    qi = q[(r * 5 + i) % len(q) :][:1]
                    if who == "ours":
                        t = time.perf_counter()
                        coll.search_vectors(qi, K, where=where, **tune)
                        cold.append(time.perf_counter() - t)
                        t = time.perf_counter()
                        coll.search_vectors(qi, K, where=where, **tune)
                        warm.append(time.perf_counter() - t)
                    else:
                        sel = bitmap_selector((bucket >= a) & (bucket < a + w))
                        t = time.perf_counter()
                        _, ids = index.search(qi, K, params=params_for(sel))
                        fetch_rows(ids[0][ids[0] >= 0])
                        raw.append(time.perf_counter() - t)
        where = {"bucket": {"$gte": 0, "$lt": w}}
        mask = bucket < w
        sel = bitmap_selector(mask)
        coll.search_vectors(q[:1], K, where=where)  # warm the selection
        b_ours, b_raw = [], []
        found_ours = found_raw = None
        for who in ("ours", "raw", "raw", "ours"):
            t = time.perf_counter()
            if who == "ours":
                hits = coll.search_vectors(q, K, where=where, **tune)
                b_ours.append(time.perf_counter() - t)
                found_ours = np.array([[h.row_id for h in row] + [-1] * (K - len(row)) for row in hits])
            else:
                _, found_raw = index.search(q, K, params=params_for(sel))
                b_raw.append(time.perf_counter() - t)
        truth = exact(x, q, mask)
        row = {
            "selectivity": s,
            "cold_p50_ms": p50_ms(cold),
            "warm_p50_ms": p50_ms(warm),
            "raw_plus_fetch_p50_ms": p50_ms(raw),
            "batch_ours_s": min(b_ours),
            "batch_raw_s": min(b_raw),
            "recall_ours": recall(found_ours, truth, x, q),
            "recall_raw": recall(found_raw, truth, x, q),
        }
        results["rows"].append(row)
        print(
            f"{s * 100:>7.1f}% {row['cold_p50_ms']:>8.2f} {row['warm_p50_ms']:>8.2f} {row['raw_plus_fetch_p50_ms']:>7.2f} "
            f"{row['warm_p50_ms'] / row['raw_plus_fetch_p50_ms']:>8.2f} {row['warm_p50_ms'] / unf['ours_p50_ms']:>8.2f} "
            f"{row['batch_ours_s']:>8.3f} {row['batch_raw_s']:>7.3f} {row['batch_ours_s'] / row['batch_raw_s']:>6.2f} "
            f"{row['recall_ours']:>7.3f} {row['recall_raw']:>7.3f}"
        )
    if args.save:
        Path(args.save).write_text(json.dumps(results, indent=1) + "\n")
        print(f"saved {args.save}")


if __name__ == "__main__":
    main()
