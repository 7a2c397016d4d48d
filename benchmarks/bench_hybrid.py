"""Dense (with and without passages), lexical and hybrid search on two labelled sets (issue 15).

    python benchmarks/bench_hybrid.py [--model minilm] [--db URL] [--rounds 5] [--sets lee,lee-long]
                                      [--out benchmarks/results/NAME]

Sets: ``lee``, the Lee corpus (gensim's test data, read offline: 300 background + 50 rated news
stories) with ``corpora/lee-queries.jsonl`` (45 queries); ``lee-long``, the same stories joined
into 23 documents of 2,000+ words whose answers all start past the first 454 word pieces, with
``corpora/lee-long-queries.jsonl`` (benchmarks/lee_long.py says how it is built). Each set goes
into two collections of the same model: one without passages (documents cut at the model's
window) and without a lexical index, one with passages at the model's window and a lexical
index. The queries are searched through the library (``embedsearch.search.search``), with the
model loaded once:

* quality: recall@10, nDCG@10 (binary gains) and MRR@10 per mode, averaged over the queries, for
  dense without and with passages, lexical, hybrid with the default fusion (relative), with RRF
  (k = 60) and weighted at alpha 0.3 / 0.5 / 0.7 (hybrid on the collection with passages);
* latency: one query per call, p50 and p95 over ``--rounds`` passes over the queries (the first
  pass warms up and is not counted), per mode; dense includes embedding the query;
* cost: the lexical index's bytes in the database (SQLite's dbstat pages / PostgreSQL's
  pg_total_relation_size), the SQLite file with and without passages and lexical index, and
  documents/s adding the corpus (embedding included) with and without them.
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
    ap.add_argument("--sets", default="lee,lee-long", help="comma-separated: lee, lee-long")
    ap.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from embedsearch.datasets import bundled_corpus
    from embedsearch.embedders import load_embedder
    from embedsearch.evaluation.compare import read_queries

    sys.path.insert(0, str(HERE))
    import lee_long

    embedder = load_embedder(args.model, device="cpu")
    sets = {
        "lee": lambda: (bundled_corpus("lee"), REPO / "corpora" / "lee-queries.jsonl"),
        "lee-long": lambda: (lee_long.documents(), lee_long.QUERIES),
    }
    out = {
        "benchmark": "bench_hybrid",
        "model": args.model,
        "k": K,
        "rounds": args.rounds,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "sets": {},
    }
    for name in args.sets.split(","):
        docs, qpath = sets[name]()
        queries = read_queries(qpath, {d.id for d in docs})
        out["sets"][name] = run_set(name, docs, queries, qpath, embedder, args)
    md = "\n\n".join(_markdown(out, name, r) for name, r in out["sets"].items())
    print(md)
    if args.out:
        Path(args.out + ".json").write_text(json.dumps(out, indent=2) + "\n")
        Path(args.out + ".md").write_text(md + "\n")


def run_set(set_name, docs, queries, qpath, embedder, args) -> dict:
    """One corpus: a collection without passages and without a lexical index (documents cut at
    the model's window), and one with passages at the model's window and a lexical index."""
    from embedsearch.config import Settings
    from embedsearch.passages import resolve_chunking
    from embedsearch.search import search
    from embedsearch.store import Store, lexical, passage_rows

    tmp = Path(tempfile.mkdtemp(prefix="bench-hybrid-"))
    store = Store(Settings.from_env(tmp / "with", args.db) if args.db else Settings.from_env(tmp / "with"))
    plain_store = Store(Settings.from_env(tmp / "without", args.db) if args.db else Settings.from_env(tmp / "without"))
    suffix = f"{os.getpid()}"
    name, plain_name = f"{set_name}-lex-{suffix}", f"{set_name}-plain-{suffix}"
    base_bytes = _db_file_bytes(plain_store)
    chunking = resolve_chunking(embedder, None, None)
    t = time.perf_counter()
    plain = plain_store.create(plain_name, embedder, "Flat")
    added_plain = plain.add_documents(docs, embedder)
    add_plain_s = time.perf_counter() - t
    plain_bytes = _db_file_bytes(plain_store)
    t = time.perf_counter()
    coll = store.create(name, embedder, "Flat", lexical=True, chunking=chunking)
    coll.add_documents(docs, embedder)
    add_lex_s = time.perf_counter() - t
    lex_file_bytes = _db_file_bytes(store)
    with store.engine.connect() as conn:
        lex_bytes = lexical.size_bytes(conn, coll.id)
        n_passages = passage_rows.count(conn, coll.id)

    configs = {
        "dense, no passages (cut at the window)": (plain, {"mode": "dense"}),
        "dense, passages": (coll, {"mode": "dense"}),
        "lexical": (coll, {"mode": "lexical"}),
        "hybrid, relative (the default)": (coll, {"mode": "hybrid"}),
        "hybrid-rrf (passages)": (coll, {"mode": "hybrid", "fusion": "rrf"}),
        "hybrid-weighted-0.3": (coll, {"mode": "hybrid", "fusion": "weighted", "alpha": 0.3}),
        "hybrid-weighted-0.5": (coll, {"mode": "hybrid", "fusion": "weighted", "alpha": 0.5}),
        "hybrid-weighted-0.7": (coll, {"mode": "hybrid", "fusion": "weighted", "alpha": 0.7}),
    }
    results = {}
    for label, (target, how) in configs.items():
        per_query, times = [], []
        for rnd in range(args.rounds + 1):
            for q in queries:
                t = time.perf_counter()
                hits = search(target, [q.text], K, embedder=embedder, columns=(), **how)[0]
                elapsed = time.perf_counter() - t
                if rnd:
                    times.append(elapsed * 1000)
                else:
                    ranked = [h.id for h in hits]
                    first = next((i for i, d in enumerate(ranked) if d in q.relevant), None)
                    per_query.append(
                        (recall_at_k(ranked, q.relevant), ndcg_at_k(ranked, q.relevant), 0 if first is None else 1 / (first + 1))
                    )
        times.sort()
        results[label] = {
            "recall@10": round(statistics.fmean(r for r, _, _ in per_query), 4),
            "ndcg@10": round(statistics.fmean(n for _, n, _ in per_query), 4),
            "mrr@10": round(statistics.fmean(m for _, _, m in per_query), 4),
            "latency_ms_p50": round(statistics.median(times), 3),
            "latency_ms_p95": round(times[int(0.95 * (len(times) - 1))], 3),
            "per_query_ndcg@10": [round(n, 4) for _, n, _ in per_query],
        }
    store.drop(name)
    plain_store.drop(plain_name)
    out = {
        "corpus": f"{set_name} ({len(docs)} documents, {sum(len(d.text.split()) for d in docs)} words)",
        "queries": f"{qpath.relative_to(REPO)} ({len(queries)} queries)",
        "database": store.dialect,
        "chunking": chunking.to_dict() if chunking else None,
        "passages": n_passages,
        "truncated_without_passages": added_plain.truncated,
        "add_s": {"no_passages_no_lexical": round(add_plain_s, 3), "passages_and_lexical": round(add_lex_s, 3)},
        "docs_per_s": {
            "no_passages_no_lexical": round(len(docs) / add_plain_s, 2),
            "passages_and_lexical": round(len(docs) / add_lex_s, 2),
        },
        "lexical_index_bytes": lex_bytes,
        "db_bytes": {"empty": base_bytes, "without": plain_bytes, "with": lex_file_bytes},
        "modes": results,
    }
    dense = results["dense, passages"]
    lex = results["lexical"]
    for key, label in (("default", "hybrid, relative (the default)"), ("rrf", "hybrid-rrf (passages)")):
        hyb = results[label]
        for metric in ("ndcg@10", "recall@10", "mrr@10"):
            best = max(dense[metric], lex[metric])
            out[f"hybrid_{key}_over_best_single_{metric}"] = round(hyb[metric] / best, 4) if best else None
    return out


def _markdown(out: dict, set_name: str, r: dict) -> str:
    lines = [
        f"# Search modes on {r['corpus']}, {r['queries']}",
        "",
        f"Model {out['model']}, database {r['database']}, k = {out['k']}, {out['machine']['cpus']} CPUs, "
        f"Python {out['machine']['python']}. Passages: {r['chunking']} ({r['passages']} passages); without them "
        f"{r['truncated_without_passages']} documents are cut at the model's window. Latency: one query per call, "
        f"{out['rounds']} passes after a warm-up pass.",
        "",
        "| mode | recall@10 | nDCG@10 | MRR@10 | p50 ms | p95 ms |",
        "|---|---|---|---|---|---|",
    ]
    for label, m in r["modes"].items():
        cells = [f"{m[c]:.4f}" for c in ("recall@10", "ndcg@10", "mrr@10")]
        cells += [f"{m['latency_ms_p50']:.2f}", f"{m['latency_ms_p95']:.2f}"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    db = r["db_bytes"]
    lines += [
        "",
        "Hybrid (passages) over the better of dense (passages) and lexical: the default (relative) "
        + ", ".join(f"{m} {r[f'hybrid_default_over_best_single_{m}']}" for m in ("ndcg@10", "recall@10", "mrr@10"))
        + "; RRF "
        + ", ".join(f"{m} {r[f'hybrid_rrf_over_best_single_{m}']}" for m in ("ndcg@10", "recall@10", "mrr@10"))
        + ".",
        "",
        f"Lexical index: {r['lexical_index_bytes']} bytes in the database"
        + (
            f"; SQLite file in use: {db['with']} bytes with passages and lexical index, {db['without']} without."
            if db["with"] is not None
            else "."
        ),
        f"Adding the corpus (embedding included): {r['add_s']['no_passages_no_lexical']} s "
        f"({r['docs_per_s']['no_passages_no_lexical']} docs/s) without passages or lexical index, "
        f"{r['add_s']['passages_and_lexical']} s ({r['docs_per_s']['passages_and_lexical']} docs/s) with both.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
