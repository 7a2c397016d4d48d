"""Dense, lexical and hybrid search on the Lee corpus with its labelled queries (issue 15).

    python benchmarks/bench_hybrid.py [--model minilm] [--db URL] [--rounds 5] [--out benchmarks/results/NAME]

The Lee corpus (gensim's test data, read offline: 300 background + 50 rated news stories) goes
into two collections of the same model: one with a lexical index, one without (``--no-lexical``).
``corpora/lee-queries.jsonl`` (45 queries, each with its relevant stories) is searched in every
mode through the library (``embedsearch.search.search``), with the model loaded once:

* quality: recall@10 and nDCG@10 (binary gains) per mode, averaged over the queries, for dense,
  lexical, hybrid with RRF (k = 60) and hybrid weighted at alpha 0.3 / 0.5 / 0.7;
* latency: one query per call, p50 and p95 over ``--rounds`` passes over the queries (the first
  pass warms up and is not counted), per mode; dense includes embedding the query;
* cost of the lexical index: its bytes in the database (SQLite's dbstat pages / PostgreSQL's
  pg_total_relation_size) and the growth of the SQLite file against the collection without one,
  and the time to add the corpus with and without it (vectors precomputed, so only the SQL
  differs).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
K = 10


def ndcg_at_k(ranked: list[str], relevant: set[str], k: int = K) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(ranked[:k]) if d in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return dcg / ideal


def recall_at_k(ranked: list[str], relevant: set[str], k: int = K) -> float:
    return len(set(ranked[:k]) & relevant) / len(relevant)


def _db_file_bytes(store) -> int | None:
    if store.dialect != "sqlite":
        return None
    from sqlalchemy import text

    with store.engine.connect() as conn:
        conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        pages = conn.execute(text("PRAGMA page_count")).scalar_one()
        size = conn.execute(text("PRAGMA page_size")).scalar_one()
        free = conn.execute(text("PRAGMA freelist_count")).scalar_one()
    return int((pages - free) * size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--db", default=None, help="SQLAlchemy URL (default: a SQLite file in a temp dir)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from embedsearch.config import Settings
    from embedsearch.datasets import bundled_corpus
    from embedsearch.embedders import load_embedder
    from embedsearch.evaluation.compare import read_queries
    from embedsearch.search import search
    from embedsearch.store import lexical
    from embedsearch.store.collection import Store

    docs = bundled_corpus("lee")
    queries = read_queries(REPO / "corpora" / "lee-queries.jsonl", {d.id for d in docs})
    embedder = load_embedder(args.model, device="cpu")
    tmp = Path(tempfile.mkdtemp(prefix="bench-hybrid-"))
    settings = Settings.from_env(tmp / "with", args.db) if args.db else Settings.from_env(tmp / "with")
    store = Store(settings)
    plain_store = Store(Settings.from_env(tmp / "without", args.db) if args.db else Settings.from_env(tmp / "without"))
    t = time.perf_counter()
    vectors = embedder.embed([d.text for d in docs])
    embed_s = time.perf_counter() - t
    suffix = f"{os.getpid()}"
    name, plain_name = f"lee-lex-{suffix}", f"lee-plain-{suffix}"
    base_bytes = _db_file_bytes(plain_store)
    t = time.perf_counter()
    plain = plain_store.create(plain_name, embedder, "Flat")
    plain.add_vectors(docs, vectors)
    add_plain_s = time.perf_counter() - t
    plain_bytes = _db_file_bytes(plain_store)
    t = time.perf_counter()
    coll = store.create(name, embedder, "Flat", lexical=True)
    coll.add_vectors(docs, vectors)
    add_lex_s = time.perf_counter() - t
    lex_file_bytes = _db_file_bytes(store)
    with store.engine.connect() as conn:
        lex_bytes = lexical.size_bytes(conn, coll.id)

    configs = {
        "dense": {"mode": "dense"},
        "lexical": {"mode": "lexical"},
        "hybrid-rrf": {"mode": "hybrid"},
        "hybrid-weighted-0.3": {"mode": "hybrid", "fusion": "weighted", "alpha": 0.3},
        "hybrid-weighted-0.5": {"mode": "hybrid", "fusion": "weighted", "alpha": 0.5},
        "hybrid-weighted-0.7": {"mode": "hybrid", "fusion": "weighted", "alpha": 0.7},
    }
    results = {}
    for label, how in configs.items():
        per_query, times = [], []
        for rnd in range(args.rounds + 1):
            for q in queries:
                t = time.perf_counter()
                hits = search(coll, [q.text], K, embedder=embedder, columns=(), **how)[0]
                elapsed = time.perf_counter() - t
                if rnd:
                    times.append(elapsed * 1000)
                else:
                    ranked = [h.id for h in hits]
                    per_query.append((recall_at_k(ranked, q.relevant), ndcg_at_k(ranked, q.relevant)))
        times.sort()
        results[label] = {
            "recall@10": round(statistics.fmean(r for r, _ in per_query), 4),
            "ndcg@10": round(statistics.fmean(n for _, n in per_query), 4),
            "latency_ms_p50": round(statistics.median(times), 3),
            "latency_ms_p95": round(times[int(0.95 * (len(times) - 1))], 3),
            "per_query_ndcg@10": [round(n, 4) for _, n in per_query],
        }
    store.drop(name)
    plain_store.drop(plain_name)
    out = {
        "benchmark": "bench_hybrid",
        "corpus": f"lee ({len(docs)} documents)",
        "queries": f"corpora/lee-queries.jsonl ({len(queries)} queries)",
        "model": args.model,
        "database": store.dialect,
        "k": K,
        "rounds": args.rounds,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "embed_corpus_s": round(embed_s, 3),
        "add_s": {"without_lexical": round(add_plain_s, 3), "with_lexical": round(add_lex_s, 3)},
        "lexical_index_bytes": lex_bytes,
        "db_bytes": {"empty": base_bytes, "without_lexical": plain_bytes, "with_lexical": lex_file_bytes},
        "modes": results,
    }
    best_single = max(results["dense"]["ndcg@10"], results["lexical"]["ndcg@10"])
    out["hybrid_rrf_at_least_best_single_ndcg"] = results["hybrid-rrf"]["ndcg@10"] >= best_single
    best_single_r = max(results["dense"]["recall@10"], results["lexical"]["recall@10"])
    out["hybrid_rrf_at_least_best_single_recall"] = results["hybrid-rrf"]["recall@10"] >= best_single_r
    md = _markdown(out)
    print(md)
    if args.out:
        Path(args.out + ".json").write_text(json.dumps(out, indent=2) + "\n")
        Path(args.out + ".md").write_text(md + "\n")


def _markdown(out: dict) -> str:
    lines = [
        f"# Hybrid search on {out['corpus']}, {out['queries']}",
        "",
        f"Model {out['model']}, database {out['database']}, k = {out['k']}, "
        f"{out['machine']['cpus']} CPUs, Python {out['machine']['python']}. "
        f"Latency: one query per call, {out['rounds']} passes after a warm-up pass.",
        "",
        "| mode | recall@10 | nDCG@10 | p50 ms | p95 ms |",
        "|---|---|---|---|---|",
    ]
    for label, r in out["modes"].items():
        cells = [f"{r['recall@10']:.4f}", f"{r['ndcg@10']:.4f}", f"{r['latency_ms_p50']:.2f}", f"{r['latency_ms_p95']:.2f}"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    db = out["db_bytes"]
    lines += [
        "",
        f"Hybrid (RRF) at least as good as the better single mode: nDCG@10 {out['hybrid_rrf_at_least_best_single_ndcg']}, "
        f"recall@10 {out['hybrid_rrf_at_least_best_single_recall']}.",
        "",
        f"Lexical index: {out['lexical_index_bytes']} bytes in the database"
        + (
            f"; the SQLite file holds {db['with_lexical']} bytes in use with it and {db['without_lexical']} without "
            f"(+{db['with_lexical'] - db['without_lexical']})."
            if db["with_lexical"] is not None
            else "."
        ),
        f"Adding the corpus (vectors precomputed): {out['add_s']['without_lexical']} s without, "
        f"{out['add_s']['with_lexical']} s with the lexical index; embedding it took {out['embed_corpus_s']} s.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
