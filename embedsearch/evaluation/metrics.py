"""Ranking, agreement and uncertainty metrics as small functions over plain arrays.

Every ranking metric is computed per query, so a report can put a bootstrap confidence
interval around its mean and test whether two models really differ (paired over the same
queries). Relevance is binary.

- ``recall@k`` is capped: relevant documents found in the top k over ``min(k, |relevant|)``,
  so a perfect ranking scores 1 even when a query has more than k relevant documents (with a
  label field a label can have hundreds).
- ``mrr@k``: 1 / rank of the first relevant hit within the top k, else 0.
- ``ndcg@k``: binary gains, ``1/log2(rank+1)`` discounts, over the ideal ranking of
  ``min(k, |relevant|)`` relevant documents.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from embedsearch.errors import InvalidArgument


def ranking_metrics(ranked: Sequence[Sequence[Any]], relevant: Sequence[set], k: int = 10) -> dict[str, np.ndarray]:
    """Per-query ``recall@k``, ``mrr@k`` and ``ndcg@k`` (arrays of length ``len(ranked)``).

    ``ranked[i]`` is query i's result ids, best first (only the first k count);
    ``relevant[i]`` the set of ids relevant to it, which must not be empty.
    """
    if len(ranked) != len(relevant):
        raise InvalidArgument(f"{len(ranked)} rankings for {len(relevant)} relevance sets")
    if k < 1:
        raise InvalidArgument(f"k must be at least 1, got {k}")
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    recall, mrr, ndcg = (np.zeros(len(ranked)) for _ in range(3))
    for i, (ids, rel) in enumerate(zip(ranked, relevant, strict=True)):
        if not rel:
            raise InvalidArgument(f"query #{i} has no relevant documents")
        hits = np.array([doc in rel for doc in list(ids)[:k]], dtype=bool)
        found = int(hits.sum())
        recall[i] = found / min(k, len(rel))
        if found:
            mrr[i] = 1.0 / (int(hits.argmax()) + 1)
        ideal = discounts[: min(k, len(rel))].sum()
        ndcg[i] = (discounts[: hits.size] * hits).sum() / ideal
    return {f"recall@{k}": recall, f"mrr@{k}": mrr, f"ndcg@{k}": ndcg}


def bootstrap_indices(n: int, resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """Row i holds the query indices of resample i (drawn with replacement). Share one array
    between models so their intervals and differences are paired."""
    if n < 1:
        raise InvalidArgument("bootstrap needs at least one value")
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` share of a statistic's bootstrap samples."""
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_ci(values: np.ndarray, idx: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the percentile interval of the mean over the resamples ``idx``."""
    values = np.asarray(values, dtype=np.float64)
    return (float(values.mean()), *percentile_interval(values[idx].mean(axis=1), level))


def paired_difference(a: np.ndarray, b: np.ndarray, idx: np.ndarray, level: float = 0.95) -> dict[str, float | bool]:
    """Mean of ``a - b`` over the same queries, its percentile interval, and whether the
    interval excludes zero (the difference is unlikely to be resampling noise)."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    mean, low, high = bootstrap_ci(diff, idx, level)
    return {"difference": mean, "low": low, "high": high, "significant": bool(low > 0 or high < 0)}


def jaccard(a: Sequence[Any], b: Sequence[Any]) -> float:
    """|A ∩ B| / |A ∪ B| of two result lists seen as sets (1.0 when both are empty)."""
    sa, sb = set(a), set(b)
    union = sa | sb
    return len(sa & sb) / len(union) if union else 1.0


def mean_jaccard(top_a: Sequence[Sequence[Any]], top_b: Sequence[Sequence[Any]]) -> float:
    """Mean Jaccard overlap of two models' neighbour lists for the same queries."""
    if len(top_a) != len(top_b) or not len(top_a):
        raise InvalidArgument("need the same, non-zero number of neighbour lists from both models")
    return float(np.mean([jaccard(a, b) for a, b in zip(top_a, top_b, strict=True)]))


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho: Pearson correlation of the ranks, tied values sharing their average
    rank. None when either side is constant (the correlation is undefined)."""
    from scipy.stats import rankdata

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise InvalidArgument(f"spearman needs two equal-length vectors, got {x.shape} and {y.shape}")
    rx, ry = rankdata(x) - (x.size + 1) / 2, rankdata(y) - (y.size + 1) / 2
    denom = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float((rx * ry).sum() / denom) if denom > 0 else None


def bootstrap_spearman(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Spearman's rho of each resample ``idx`` of the pairs (x, y); 0 where it is undefined."""
    return np.array([spearman(x[i], y[i]) or 0.0 for i in idx])


def paired_spearman_difference(
    a: np.ndarray, b: np.ndarray, truth: np.ndarray, *, resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, float | bool | int]:
    """Spearman(a, truth) - Spearman(b, truth) over the items both models scored (NaN: not
    scored), with a percentile interval from resampling those items; ``significant`` when the
    interval excludes zero. For word-pair benchmarks: are two models' correlations really different?"""
    a, b, truth = (np.asarray(v, dtype=np.float64) for v in (a, b, truth))
    both = ~np.isnan(a) & ~np.isnan(b)
    a, b, truth = a[both], b[both], truth[both]
    if a.size < 3:
        raise InvalidArgument("fewer than three items scored by both models")
    rho_a, rho_b = spearman(a, truth), spearman(b, truth)
    idx = bootstrap_indices(a.size, resamples, seed)
    low, high = percentile_interval(bootstrap_spearman(a, truth, idx) - bootstrap_spearman(b, truth, idx), level)
    return {
        "difference": (rho_a or 0.0) - (rho_b or 0.0),
        "low": low,
        "high": high,
        "significant": bool(low > 0 or high < 0),
        "items": int(a.size),
    }
