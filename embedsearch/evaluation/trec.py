"""Ranking metrics as trec_eval defines them (and so BEIR and MTEB, which call it through
pytrec_eval), over graded judgements, and the TREC run format.

Where these differ from :func:`embedsearch.evaluation.metrics.ranking_metrics` (binary
relevance, capped recall), they follow trec_eval, so a number here is the number BEIR and MTEB
report for the same run; ``tests/test_beir.py`` checks them against pytrec_eval itself:

- **Order.** A run is read by score, highest first; equal scores by document id, *descending*
  (trec_eval's order; MTEB's MRR sorts the same way). :func:`trec_order` puts hits in that order.
- **Relevant** means a grade above 0 (trec_eval's relevance level 1).
- ``ndcg_at_k``: gain = the grade itself (not ``2^grade - 1``), ``1/log2(rank+1)`` discounts; the
  ideal ranking is every judged document with a grade above 0, best grades first, cut at k.
- ``recall_at_k``: relevant found in the top k over *all* relevant documents (not capped at k).
- ``map_at_k``: the precision at each relevant document's rank within the top k, summed, over
  all relevant documents.
- ``precision_at_k``: relevant found in the top k over k, however few were retrieved.
- ``mrr_at_k``: 1 / rank of the first relevant document within the top k (MTEB's definition;
  trec_eval's ``recip_rank`` has no cut-off).
- ``hit_rate_at_k``: 1 when the top k hold a relevant document (trec_eval's ``success``).

A query with no relevant document, or with an empty run, scores 0 on every metric, as in
trec_eval (which MTEB and BEIR average over).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from embedsearch.errors import InvalidArgument

#: MTEB's cut-offs for retrieval tasks (``AbsTaskRetrieval.k_values``)
CUTOFFS = (1, 3, 5, 10, 20, 100, 1000)
#: MTEB retrieves this many documents per query (``max(k_values)``)
DEPTH = 1000
MEASURES = ("ndcg", "map", "recall", "precision", "mrr", "hit_rate")


def trec_order(hits: Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    """(id, score) pairs in trec_eval's order: score descending, ties by id descending."""
    return sorted(hits, key=lambda h: (h[1], h[0]), reverse=True)


def trec_metrics(
    ranked: Sequence[Sequence[str]], grades: Sequence[Mapping[str, int]], cutoffs: Iterable[int] = CUTOFFS
) -> dict[str, np.ndarray]:
    """Per-query arrays ``{measure}_at_{k}`` for every measure of :data:`MEASURES` and cut-off.

    ``ranked[i]``: query i's document ids in run order (see :func:`trec_order`);
    ``grades[i]``: its judgements, document id -> grade (0 and below: judged not relevant).
    """
    if len(ranked) != len(grades):
        raise InvalidArgument(f"{len(ranked)} rankings for {len(grades)} sets of judgements")
    cutoffs = sorted(set(cutoffs))
    if not cutoffs or cutoffs[0] < 1:
        raise InvalidArgument("cut-offs must be at least 1")
    top = cutoffs[-1]
    discounts = 1.0 / np.log2(np.arange(2, top + 2))
    out = {f"{m}_at_{k}": np.zeros(len(ranked)) for m in MEASURES for k in cutoffs}
    for i, (ids, judged) in enumerate(zip(ranked, grades, strict=True)):
        ideal_gains = sorted((g for g in judged.values() if g > 0), reverse=True)
        num_rel = len(ideal_gains)
        if not num_rel:
            continue  # trec_eval: every measure 0
        gains = np.array([max(judged.get(d, 0), 0) for d in list(ids)[:top]], dtype=np.float64)
        hits = gains > 0
        found = np.cumsum(hits)  # relevant documents up to and including each rank
        precision_at_hits = np.where(hits, found / np.arange(1, gains.size + 1), 0.0)
        dcg = np.cumsum(gains * discounts[: gains.size])
        idcg = np.cumsum(np.array(ideal_gains[:top], dtype=np.float64) * discounts[: min(num_rel, top)])
        first = int(hits.argmax()) + 1 if hits.any() else None
        for k in cutoffs:
            n = min(k, gains.size)  # the run may be shorter than k
            rel_k = int(found[n - 1]) if n else 0
            out[f"ndcg_at_{k}"][i] = (dcg[n - 1] if n else 0.0) / idcg[min(k, num_rel) - 1]
            out[f"map_at_{k}"][i] = precision_at_hits[:n].sum() / num_rel
            out[f"recall_at_{k}"][i] = rel_k / num_rel
            out[f"precision_at_{k}"][i] = rel_k / k
            out[f"mrr_at_{k}"][i] = 1.0 / first if first is not None and first <= k else 0.0
            out[f"hit_rate_at_{k}"][i] = float(rel_k > 0)
    return out


def means(per_query: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The mean of each per-query array, as plain floats (0.0 when there are no queries)."""
    return {name: float(values.mean()) if values.size else 0.0 for name, values in per_query.items()}


def write_run(path: Path, query_ids: Sequence[str], run: Sequence[Sequence[tuple[str, float]]], tag: str) -> Path:
    """A TREC run file: ``query-id Q0 doc-id rank score tag`` per line, ranks from 1 in
    trec_eval's order. Scores are written with ``repr`` so they read back exactly. Ids with
    whitespace cannot be written in this format and are refused."""
    path = Path(path)
    tag = "".join(tag.split()) or "embedsearch"
    check_run_ids(query_ids, (doc for hits in run for doc, _ in hits))
    lines = []
    for qid, hits in zip(query_ids, run, strict=True):
        for rank, (doc, score) in enumerate(trec_order(hits), start=1):
            lines.append(f"{qid} Q0 {doc} {rank} {float(score)!r} {tag}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    tmp.replace(path)
    return path


def check_run_ids(query_ids: Iterable[str], doc_ids: Iterable[str]) -> None:
    """A TREC run file separates its fields by whitespace: an id holding some cannot be written."""
    for what, ids in (("query", query_ids), ("document", doc_ids)):
        bad = [i for i in ids if not i or len(i.split()) != 1 or i != i.strip()]
        if bad:
            n = len(bad)
            raise InvalidArgument(
                f"{n} {what} {'id holds' if n == 1 else 'ids hold'} whitespace (first: {bad[0]!r}): a run file cannot hold it"
            )


def read_run(path: Path) -> dict[str, dict[str, float]]:
    """A TREC run file as pytrec_eval takes it: query id -> {document id: score}."""
    run: dict[str, dict[str, float]] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            qid, _, doc, _, score, _ = line.split()
            run.setdefault(qid, {})[doc] = float(score)
    return run
