"""The retrieval run: every contender's top k for every query, and what a query costs.

* A dense contender ranks by exact inner product over its model's vectors (cosine: they have
  unit length), with a FAISS Flat index built once per model.
* A lexical or hybrid contender is searched through the library itself
  (:func:`embedsearch.search.search`), in a real temporary collection with a lexical index
  (SQLite, in a temporary directory, removed afterwards): one collection per model, filled with
  the vectors that model already computed (:meth:`Collection.add_vectors`), so a model is never
  embedded twice; ``bm25`` gets a collection of its own whose one-dimensional placeholder
  vectors are never searched (lexical mode loads no model).

Label mode and document queries (``Query.doc_index``) use the document's own vector on the
dense side and its text on the lexical side, and never return the document itself.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedsearch.corpus import Document
from embedsearch.evaluation.contenders import Contender, ModelRun
from embedsearch.evaluation.query_sets import Query

TIMING_ROUNDS = 3  # best of three: the first call can pay one-off costs (thread pools, allocations)


def flat_index(vectors: np.ndarray):
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def model_index(run: ModelRun):
    """The model's exact index over the corpus, built once (the query timing must not include it)."""
    if "index" not in run.extra:
        run.extra["index"] = flat_index(run.doc_vectors)
    return run.extra["index"]


def flat_bytes(run: ModelRun) -> int:
    import faiss

    return int(faiss.serialize_index(model_index(run)).size)


def rank_dense(
    run: ModelRun, queries: list[Query], q_vectors: np.ndarray, doc_ids: list[str], k: int, *, scored: bool = False
) -> list[list]:
    """Top-k document ids per query by exact inner product (cosine: vectors are unit length);
    ``scored``: (id, score) pairs."""
    index = model_index(run)
    extra = 1 if any(q.exclude for q in queries) else 0
    sims, idx = index.search(np.ascontiguousarray(q_vectors, dtype=np.float32), min(k + extra, len(doc_ids)))
    ranked = []
    for q, row, row_sims in zip(queries, idx, sims, strict=True):
        hits = [(doc_ids[j], float(s)) for j, s in zip(row, row_sims, strict=True) if j >= 0 and doc_ids[j] != q.exclude]
        ranked.append(hits[:k] if scored else [d for d, _ in hits[:k]])
    return ranked


@dataclass
class Built:
    """A temporary collection and what filling it cost."""

    collection: Any
    index_seconds: float  # add_vectors: document rows, FAISS segment, lexical index, one commit
    lexical_bytes: int | None


class SearchCollections:
    """The temporary collections lexical and hybrid contenders are searched in: one per model
    (``None``: bm25's, without a model), built on first use. Use as a context manager."""

    def __init__(self, docs: list[Document]) -> None:
        self.docs = docs
        self.built: dict[str | None, Built] = {}
        self.tmp: Path | None = None
        self.store = None

    def __enter__(self) -> SearchCollections:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _store(self):
        if self.store is None:
            from embedsearch.config import Settings
            from embedsearch.store import Store

            self.tmp = Path(tempfile.mkdtemp(prefix="embedsearch-compare-"))
            # an explicit URL: EMBEDSEARCH_DB must not send these collections to the user's database
            self.store = Store(Settings.from_env(self.tmp, f"sqlite:///{self.tmp / 'compare.db'}"))
        return self.store

    def get(self, run: ModelRun | None) -> Built:
        key = None if run is None else run.spec
        if key not in self.built:
            self.built[key] = self._build(run)
        return self.built[key]

    def _build(self, run: ModelRun | None) -> Built:
        from embedsearch.store import lexical

        store = self._store()
        name = f"contender-{len(self.built)}"
        if run is None:
            from embedsearch.embedders.hashing import HashingEmbedder

            embedder = HashingEmbedder(1, name="bm25")  # pins the collection; never embeds anything
            vectors = np.ones((len(self.docs), 1), dtype=np.float32)
        else:
            embedder, vectors = run.embedder, run.doc_vectors
        started = time.perf_counter()
        coll = store.create(name, embedder, "Flat", lexical=True)
        coll.add_vectors(self.docs, vectors)
        seconds = time.perf_counter() - started
        with store.engine.connect() as conn:
            size = lexical.size_bytes(conn, coll.id)
        return Built(coll, seconds, size)

    def close(self) -> None:
        if self.store is not None:
            from embedsearch.store.metadata import dispose_engine

            dispose_engine(self.store.settings.db_url)
            self.store = None
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


def rank_search(
    contender: Contender, built: Built, run: ModelRun | None, queries: list[Query], k: int, *, scored: bool = False
) -> list[list]:
    """Top-k document ids per query through :func:`embedsearch.search.search` in the contender's
    mode; ``scored``: (id, score) pairs."""
    from embedsearch.search import search

    extra = 1 if any(q.exclude for q in queries) else 0
    vectors = None
    if contender.mode == "hybrid" and all(q.doc_index is not None for q in queries):
        vectors = run.doc_vectors[[q.doc_index for q in queries]]  # the document's own embedding
    hits = search(
        built.collection,
        [q.text for q in queries],
        k + extra,
        mode=contender.mode,
        fusion=contender.fusion,
        alpha=contender.alpha,
        embedder=None if run is None or contender.mode == "lexical" else run.embedder,
        vectors=vectors,
        columns=(),
    )
    return [
        [(h.id, float(h.score)) if scored else h.id for h in row if h.id != q.exclude][:k]
        for q, row in zip(queries, hits, strict=True)
    ]


def rank(
    contender: Contender,
    run: ModelRun | None,
    searchers: SearchCollections,
    queries: list[Query],
    doc_ids: list[str],
    k: int,
    *,
    timed: bool,
    scored: bool = False,
) -> tuple[list[list], float | None]:
    """The contender's rankings (``scored``: (id, score) pairs), and (``timed``) the best of
    three rounds in ms per query: embedding the queries in one batch (when the contender uses a
    model) and searching."""
    built = None if contender.dense else searchers.get(run)  # built before the clock starts
    best = float("inf")
    rankings: list[list] = []
    for _ in range(TIMING_ROUNDS if timed else 1):
        started = time.perf_counter()
        if contender.dense:
            if all(q.doc_index is not None for q in queries):
                qv = run.doc_vectors[[q.doc_index for q in queries]]
            else:
                qv = run.embedder.embed([q.text for q in queries])
            rankings = rank_dense(run, queries, qv, doc_ids, k, scored=scored)
        else:
            rankings = rank_search(contender, built, run, queries, k, scored=scored)
        best = min(best, time.perf_counter() - started)
    return rankings, (best / len(queries) * 1000 if timed else None)
