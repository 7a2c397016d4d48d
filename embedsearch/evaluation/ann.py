"""ANN quality and cost: one model's vectors in each FAISS index spec, against exact search.

For every spec the index is built exactly as a collection builds it
(:func:`embedsearch.store.specs.new_faiss_index`), timed (training + adding), serialised to
count its bytes, and searched over a sweep of its speed/quality knob (``nprobe`` for IVF,
``efSearch`` for HNSW; exact indexes have none). Each point gives recall@k against an exact
inner-product search (the fraction of the true top k found; a result exactly as close as the
k-th true neighbour counts, so duplicate documents do not count as misses) and queries per second with the
queries searched as one batch on every FAISS thread.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np

from embedsearch.corpus import Document
from embedsearch.errors import CorpusError, InvalidArgument, InvalidIndexSpec

NPROBE_SWEEP = (1, 2, 4, 8, 16, 32, 64, 128, 256)
EF_SWEEP = (16, 32, 64, 128, 256, 512)


def knn_recall(
    found: np.ndarray,
    truth: np.ndarray,
    *,
    found_sims: np.ndarray | None = None,
    kth_sims: np.ndarray | None = None,
    eps: float = 1e-5,
) -> float:
    """Mean over queries of the share of the true top k that the index returned (rows are id
    lists; -1 pads missing results).

    With ``found_sims`` (the exact similarity of each returned id) and ``kth_sims`` (the exact
    k-th best similarity per query), a returned id as close as the k-th true neighbour counts
    too, so ties between duplicate documents are not scored as misses.
    """
    if found.shape != truth.shape:
        raise InvalidArgument(f"result shapes differ: {found.shape} vs {truth.shape}")
    k = truth.shape[1]
    shares = []
    for i, (f, t) in enumerate(zip(found, truth, strict=True)):
        valid = f >= 0
        if found_sims is not None and kth_sims is not None:
            shares.append(min(k, int((valid & (found_sims[i] >= kth_sims[i] - eps)).sum())) / k)
        else:
            shares.append(len(set(f[valid]) & set(t[t >= 0])) / k)
    return float(np.mean(shares))


def _exact_sims(vectors: np.ndarray, queries: np.ndarray, ids: np.ndarray) -> np.ndarray:
    sims = np.einsum("qkd,qd->qk", vectors[np.maximum(ids, 0)], queries)
    return np.where(ids >= 0, sims, -np.inf)


def _timed_search(index, queries: np.ndarray, k: int, min_seconds: float) -> tuple[np.ndarray, float]:
    """Search repeatedly until ``min_seconds`` have passed; the best round gives queries/s."""
    best = float("inf")
    spent = 0.0
    ids = None
    while spent < min_seconds or ids is None:
        started = time.perf_counter()
        _, ids = index.search(queries, k)
        took = time.perf_counter() - started
        best, spent = min(best, took), spent + took
    return ids, len(queries) / max(best, 1e-9)


def ann_benchmark(
    model: str,
    documents: Sequence[Document],
    specs: Sequence[str],
    *,
    query_texts: Sequence[str] | None = None,
    corpus_name: str = "corpus",
    k: int = 10,
    max_queries: int = 1000,
    seed: int = 0,
    device: str | None = None,
    options: dict[str, Any] | None = None,
    min_seconds: float = 0.2,
    progress: bool = False,
) -> dict[str, Any]:
    """Embed ``documents`` with ``model`` and measure every index spec (the ``ann`` report)."""
    import faiss

    from embedsearch.evaluation.compare import SCHEMA, ModelSpec, fingerprint_documents, library_versions, load_run
    from embedsearch.store.specs import HNSW_EF_SEARCH, default_nprobe, new_faiss_index, parse_spec

    docs = list(documents)
    if len(docs) < 2:
        raise CorpusError("the corpus needs at least two documents")
    if not specs:
        raise InvalidArgument("name at least one index spec")
    run = load_run(ModelSpec.parse(model), device=device, options=options or {})
    parsed = [parse_spec(s, run.dim) for s in specs]
    for p in parsed:
        if p.kind == "ivf" and len(docs) < p.nlist:
            raise InvalidIndexSpec(f"{p.text} needs at least {p.nlist} vectors to train its lists; the corpus has {len(docs)}")
    started = time.perf_counter()
    vectors = run.embedder.embed([d.text for d in docs], progress=progress, desc=f"{run.label}: corpus")
    embed_seconds = time.perf_counter() - started
    rng = np.random.default_rng(seed)
    if query_texts:
        queries = run.embedder.embed(list(query_texts)[:max_queries])
        query_source = f"{min(len(query_texts), max_queries)} query texts"
    else:
        pick = np.sort(rng.choice(len(docs), min(max_queries, len(docs)), replace=False))
        queries = vectors[pick]
        query_source = f"{len(pick)} corpus documents as queries"
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    kk = min(k, len(docs))
    exact = faiss.IndexFlatIP(run.dim)
    exact.add(vectors)
    truth, exact_qps = _timed_search(exact, queries, kk, min_seconds)
    kth = _exact_sims(vectors, queries, truth)[:, -1]

    bar = None
    if progress:
        from embedsearch.progress import bar as progress_bar

        bar = progress_bar(len(parsed), "index specs", "spec", leave=True)
    results = []
    ids = np.arange(len(docs), dtype=np.int64)
    try:
        for spec in parsed:
            if bar is not None:
                bar.set_postfix_str(spec.text)
            notes = []
            need = spec.min_train_points()
            if need and len(docs) < need:
                notes.append(f"trained on {len(docs)} vectors; FAISS recommends {need} or more for {spec.text}")
            t0 = time.perf_counter()
            index = new_faiss_index(run.dim, spec, "cosine", vectors if spec.needs_training else None)
            index.add_with_ids(vectors, ids)
            build_seconds = time.perf_counter() - t0
            size = int(faiss.serialize_index(index).size)
            if spec.kind == "ivf":
                knob, values = "nprobe", [v for v in NPROBE_SWEEP if v <= spec.nlist]
                if spec.nlist not in values:
                    values.append(spec.nlist)
                default = default_nprobe(spec.nlist)
            elif spec.kind == "hnsw":
                knob, values, default = "efSearch", list(EF_SWEEP), max(HNSW_EF_SEARCH, 2 * kk)
            else:
                knob, values, default = None, [None], None
            if default is not None and default not in values:
                values = sorted([*values, default])
            points = []
            params = faiss.ParameterSpace()
            for value in values:
                if knob is not None:
                    params.set_index_parameter(index, knob, value)
                found, qps = _timed_search(index, queries, kk, min_seconds)
                recall = knn_recall(found, truth, found_sims=_exact_sims(vectors, queries, found), kth_sims=kth)
                points.append({"param": value, "recall": recall, "qps": qps, "default": value == default})
            chosen = next(p for p in points if p["default"] or knob is None)
            results.append(
                {
                    "spec": spec.text,
                    "factory": spec.factory(),
                    "knob": knob,
                    "build_seconds": build_seconds,
                    "index_bytes": size,
                    "bytes_per_vector": size / len(docs),
                    f"recall@{k}": chosen["recall"],
                    "qps": chosen["qps"],
                    "default_param": default,
                    "points": points,
                    "notes": notes,
                }
            )
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return {
        "schema": SCHEMA,
        "kind": "ann",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            "k": k,
            "seed": seed,
            "min_seconds_per_point": min_seconds,
            "faiss_threads": int(faiss.omp_get_max_threads()),
            "faiss_device": "cpu",
            "corpus": {"name": corpus_name, "documents": len(docs), "fingerprint": fingerprint_documents(docs)},
            "queries": {"source": query_source, "count": int(len(queries))},
        },
        "versions": library_versions(),
        "model": {
            "label": run.label,
            "spec": run.spec,
            "kind": run.kind,
            "dim": run.dim,
            "fingerprint": run.fingerprint,
            "embed_seconds": round(embed_seconds, 3),
            "docs_per_second": len(docs) / max(embed_seconds, 1e-9),
        },
        "exact": {"qps": exact_qps, "index_bytes": int(faiss.serialize_index(exact).size)},
        "specs": results,
        "notes": [],
    }
