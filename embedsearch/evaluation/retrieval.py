"""Retrieval and triplet metrics over embeddings (plain functions over numpy arrays).

Relevance is label equality: for each query document, the other documents with its label
are relevant. ``recall@k`` is capped (relevant found in the top k over min(k, relevant)), so
a perfect ranking scores 1 even when a label has more than k documents.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from embedsearch.embedders.base import normalize_rows
from embedsearch.errors import InvalidArgument


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
    kk = min(k, n - 1)
    top = np.argsort(-sims, axis=1, kind="stable")[:, :kk]
    rel = labels[top] == labels[:, None]  # (n, kk) relevance of each ranked hit
    n_rel = np.array([(labels == labels[i]).sum() - 1 for i in range(n)])
    has = n_rel > 0
    if not has.any():
        raise InvalidArgument("no document shares its label with another; nothing is relevant")
    rel, n_rel = rel[has], n_rel[has]
    recall = rel.sum(axis=1) / np.minimum(kk, n_rel)
    first = np.where(rel.any(axis=1), rel.argmax(axis=1) + 1, 0)
    mrr = np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0)
    discounts = 1.0 / np.log2(np.arange(2, kk + 2))
    dcg = (rel * discounts).sum(axis=1)
    ideal = np.array([discounts[: min(kk, r)].sum() for r in n_rel])
    return {
        f"recall@{k}": float(recall.mean()),
        f"mrr@{k}": float(mrr.mean()),
        f"ndcg@{k}": float((dcg / ideal).mean()),
        "queries": int(has.sum()),
    }


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
    """Mean cosine between distinct documents; near 1 means the embeddings have collapsed."""
    x = _unit(embeddings)
    if x.shape[0] > sample:
        x = x[np.random.default_rng(seed).choice(x.shape[0], sample, replace=False)]
    n = x.shape[0]
    if n < 2:
        raise InvalidArgument("need two embeddings")
    sims = x @ x.T
    return float((sims.sum() - np.trace(sims)) / (n * (n - 1)))
