"""Retrieval and triplet metrics over embeddings (plain functions over numpy arrays).

Relevance is label equality: for each query document, the other documents with its label
are relevant. The metrics themselves are :func:`embedsearch.evaluation.metrics.ranking_metrics`
(``recall@k`` capped, so a perfect ranking scores 1 even when a label has more than k documents).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from embedsearch.embedders.base import normalize_rows
from embedsearch.errors import InvalidArgument
from embedsearch.evaluation.metrics import ranking_metrics


def _unit(x: np.ndarray) -> np.ndarray:
    return normalize_rows(np.array(x, dtype=np.float32))  # a copy: the caller's array is left alone


def label_retrieval(embeddings: np.ndarray, labels: list[str] | np.ndarray, k: int = 10) -> dict[str, Any]:
    """Every document queries all the others (cosine); mean recall@k, MRR@k and nDCG@k."""
    labels = np.asarray(labels)
    n = len(labels)
    if embeddings.shape[0] != n:
        raise InvalidArgument(f"{embeddings.shape[0]} embeddings for {n} labels")
    if n < 2:
        raise InvalidArgument("retrieval needs at least two documents")
    x = _unit(embeddings)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)  # a document does not retrieve itself
    top = np.argsort(-sims, axis=1, kind="stable")[:, : min(k, n - 1)]
    queries = [i for i in range(n) if (labels == labels[i]).sum() > 1]
    if not queries:
        raise InvalidArgument("no document shares its label with another; nothing is relevant")
    relevant = [set(np.flatnonzero(labels == labels[i]).tolist()) - {i} for i in queries]
    per_query = ranking_metrics([top[i].tolist() for i in queries], relevant, k)
    out: dict[str, Any] = {name: float(values.mean()) for name, values in per_query.items()}
    out["queries"] = len(queries)
    return out


def triplet_accuracy(anchor: np.ndarray, positive: np.ndarray, negative: np.ndarray, distance: str = "cosine") -> float:
    """Share of triplets whose anchor is closer to the positive than to the negative."""
    if distance == "cosine":
        a, p, q = _unit(anchor), _unit(positive), _unit(negative)
        d_pos, d_neg = 1 - (a * p).sum(1), 1 - (a * q).sum(1)
    elif distance == "euclidean":
        d_pos = np.linalg.norm(anchor - positive, axis=1)
        d_neg = np.linalg.norm(anchor - negative, axis=1)
    else:
        raise InvalidArgument(f"unknown distance {distance!r}; choose cosine or euclidean")
    return float((d_pos < d_neg).mean())


def mean_pairwise_cosine(embeddings: np.ndarray, sample: int = 500, seed: int = 0) -> float:
    """Mean cosine between distinct documents; near 1 means the embeddings have collapsed.
    In float64: a word-vector base sits within 1e-5 of 1, where float32 sums would blur the
    spread that the triplet trainer's collapse check compares."""
    x = np.asarray(embeddings, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if x.shape[0] > sample:
        x = x[np.random.default_rng(seed).choice(x.shape[0], sample, replace=False)]
    n = x.shape[0]
    if n < 2:
        raise InvalidArgument("need two embeddings")
    sims = x @ x.T
    return float((sims.sum() - np.trace(sims)) / (n * (n - 1)))
