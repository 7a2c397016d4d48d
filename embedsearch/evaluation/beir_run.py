"""Retrieval on a BEIR set (:mod:`.beir`): each contender's top ``min(1000, documents)`` per
query, MTEB's depth, put in trec_eval's order and scored as trec_eval scores it
(:mod:`.trec`), then written as TREC run files and in MTEB's results layout (:mod:`.mteb`).

:func:`evaluate_beir` does it for one contender (``embedsearch evaluate --beir``);
:func:`score` is the step ``compare --beir`` runs for each of its contenders.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedsearch.evaluation import mteb
from embedsearch.evaluation.beir import BeirSet
from embedsearch.evaluation.contenders import Contender, ModelRun, ModelSpec, check_contenders, load_run, parse_contender
from embedsearch.evaluation.metric_cells import retrieval_labels
from embedsearch.evaluation.query_sets import Query
from embedsearch.evaluation.retrieval_run import Built, SearchCollections, rank
from embedsearch.evaluation.trec import CUTOFFS, DEPTH, MEASURES, means, trec_metrics, trec_order, write_run

METHOD_NOTE = (
    "BEIR set: every contender retrieves its top {depth} documents per query (MTEB's depth, 1,000, or the whole corpus "
    "when it is smaller; a lexical search returns only the documents that share a word with the query). Metrics follow "
    "trec_eval, as BEIR and MTEB do: documents with equal scores in descending id order, relevant = a grade above 0, "
    "nDCG with the grade as gain, recall over all relevant documents (not capped at k), MAP over all relevant "
    "documents; a cut-off above the retrieved depth is computed on what was retrieved."
)


@dataclass
class BeirRun:
    """One contender's run on a BEIR set and its scores."""

    contender: Contender
    hits: list[list[tuple[str, float]]]  # per query: (document id, score) in trec_eval's order
    per_query: dict[str, np.ndarray]  # trec metrics per query, {measure}_at_{k}
    ms_per_query: float | None  # batch embedding + search, best of three rounds
    seconds: float  # embedding the corpus + building the collection (search modes) + the queries
    kind: str | None  # the model's kind (None: bm25)
    dim: int | None
    revision: str  # the model's fingerprint (bm25: MTEB's placeholder)

    @property
    def label(self) -> str:
        return self.contender.label

    def top(self, k: int) -> list[list[str]]:
        return [[d for d, _ in hits[:k]] for hits in self.hits]

    def scores(self, cutoffs: Iterable[int] = CUTOFFS) -> dict[str, float]:
        """Mean of each metric at ``cutoffs``, named as MTEB names them."""
        wanted = {f"{m}_at_{k}" for m in MEASURES for k in cutoffs}
        return {name: value for name, value in means(self.per_query).items() if name in wanted}


def depth_for(documents: int) -> int:
    return min(DEPTH, documents)


def score(
    contender: Contender,
    run: ModelRun | None,
    searchers: SearchCollections,
    queries: list[Query],
    doc_ids: list[str],
    k: int,
    built: Built | None = None,
) -> BeirRun:
    """The contender's top ``depth_for(len(doc_ids))`` per query, scored at MTEB's cut-offs and ``k``."""
    hits, ms = rank(contender, run, searchers, queries, doc_ids, depth_for(len(doc_ids)), timed=True, scored=True)
    hits = [trec_order(h) for h in hits]
    per_query = trec_metrics([[d for d, _ in h] for h in hits], [q.grades or {} for q in queries], sorted({*CUTOFFS, k}))
    seconds = (run.embed_seconds if run else 0.0) + (built.index_seconds if built else 0.0) + ms * len(queries) / 1000
    return BeirRun(
        contender,
        hits,
        per_query,
        ms,
        seconds,
        run.kind if run else None,
        run.dim if run else None,
        run.fingerprint if run else mteb.NO_REVISION,
    )


def report_metrics(per_query: dict[str, np.ndarray], k: int) -> dict[str, np.ndarray]:
    """The per-query arrays behind the report's retrieval metrics on a BEIR set (recall@k, mrr@k, ndcg@k, map@k)."""
    return {name: per_query[f"{name.split('@')[0]}_at_{k}"] for name in retrieval_labels(k, trec=True)}


def report_section(beir: BeirSet, runs: dict[str, BeirRun]) -> dict[str, Any]:
    """The comparison report's ``beir`` entry: the set, the depth and every contender's MTEB scores."""
    return {
        **beir.summary(),
        "name": beir.name,
        "depth": depth_for(len(beir.documents)),
        "cutoffs": list(CUTOFFS),
        "scores": {label: r.scores() for label, r in runs.items()},
        "seconds": {label: round(r.seconds, 3) for label, r in runs.items()},
    }


def evaluate_beir(
    spec: str,
    beir: BeirSet,
    *,
    k: int = 10,
    device: str | None = None,
    options: dict[str, Any] | None = None,
    progress: bool = False,
) -> tuple[dict[str, Any], BeirRun]:
    """One contender (a model, ``MODEL+lexical``, ``MODEL+hybrid...`` or ``bm25``) on a BEIR
    set: the summary (MTEB's metric names, at MTEB's cut-offs and ``k``) and the run."""
    options = options or {}
    contender = parse_contender(spec)
    check_contenders([contender], options)  # a bad spec or model stops here, before anything loads
    docs = beir.documents
    run = None
    if contender.model is not None:
        run = load_run(ModelSpec(contender.label, contender.model), device=device, options=options)
        started = time.perf_counter()
        run.doc_vectors = run.embedder.embed([d.text for d in docs], progress=progress, desc=f"{contender.model}: corpus")
        run.embed_seconds = time.perf_counter() - started
    with SearchCollections(docs) as searchers:
        built = None if contender.dense else searchers.get(run)
        result = score(contender, run, searchers, beir.queries, [d.id for d in docs], k, built)
    summary = {
        "model": spec,
        "label": contender.label,
        "kind": contender.describe(run.kind if run else None),
        "mode": contender.mode,
        "beir": {**beir.summary(), "name": beir.name},
        "depth": depth_for(len(docs)),
        "k": k,
        "scores": result.scores(sorted({*CUTOFFS, k})),
        "main_score": result.scores()[mteb.MAIN_SCORE],
        "query_ms": result.ms_per_query,
        "seconds": round(result.seconds, 3),
        "notes": [METHOD_NOTE.format(depth=depth_for(len(docs))), *beir.notes()],
    }
    return summary, result


def write_outputs(
    beir: BeirSet,
    runs: Sequence[BeirRun],
    *,
    task_name: str | None = None,
    language: str = mteb.DEFAULT_LANGUAGE,
    mteb_dir: Path | None = None,
    runs_dir: Path | None = None,
) -> list[Path]:
    """MTEB results (one task file per contender, with its model_meta.json) under ``mteb_dir``
    and TREC run files ``runs_dir/<label>.run``; returns the files written."""
    task = mteb.check_task_name(task_name or beir.name)
    written = []
    query_ids = [q.id for q in beir.queries]
    for r in runs:
        if runs_dir is not None:
            written.append(write_run(Path(runs_dir) / f"{mteb.path_name(r.label)}.run", query_ids, r.hits, r.label))
        if mteb_dir is not None:
            about = {
                "contender": r.contender.spec,
                "mode": r.contender.mode,
                "beir": {**beir.summary(), "name": beir.name},
                "depth": depth_for(len(beir.documents)),
                "query_ms": r.ms_per_query,
                "versions": _versions(),
            }
            result = mteb.task_result(
                task,
                beir.split,
                r.scores(),
                dataset_revision=f"sha256:{beir.fingerprint}",
                evaluation_time=r.seconds,
                about=about,
                language=language,
            )
            meta = mteb.model_meta(r.label, r.revision, dim=r.dim, kind=r.kind, mode=r.contender.mode)
            written.append(mteb.write_result(Path(mteb_dir), result, meta))
    return written


def _versions() -> dict[str, str]:
    from embedsearch.versions import library_versions

    return library_versions("faiss", "torch", "sentence-transformers")
