"""Retrieval and triplet metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embedsearch.errors import InvalidArgument
from embedsearch.evaluation.retrieval import label_retrieval, mean_pairwise_cosine, triplet_accuracy


def test_perfect_and_known_rankings():
    # two tight clusters: every query's neighbours are its own label first
    x = np.array([[1, 0], [0.99, 0.1], [0.98, 0.2], [0, 1], [0.1, 0.99], [0.2, 0.98]], dtype=np.float32)
    labels = ["a", "a", "a", "b", "b", "b"]
    m = label_retrieval(x, labels, k=2)
    assert m == {"recall@2": 1.0, "mrr@2": 1.0, "ndcg@2": 1.0, "queries": 6}
    # one query whose first hit is wrong and second right: MRR 1/2, nDCG (1/log2 3) / 1
    y = np.array([[1, 0], [0, 1], [0.6, 0.8]], dtype=np.float32)
    m = label_retrieval(y, ["q", "q", "other"], k=2)
    # query 0: ranked [2 (0.6), 1 (0.0)] -> relevant at rank 2; query 1: [2 (0.8), 0 (0)] -> rank 2
    assert m["queries"] == 2
    assert m["mrr@2"] == pytest.approx(0.5)
    assert m["ndcg@2"] == pytest.approx(1 / math.log2(3))
    assert m["recall@2"] == pytest.approx(1.0)


def test_triplet_accuracy_and_collapse():
    a = np.array([[1, 0], [1, 0]], dtype=np.float32)
    p = np.array([[0.9, 0.1], [0, 1]], dtype=np.float32)
    n = np.array([[0, 1], [1, 0.05]], dtype=np.float32)
    assert triplet_accuracy(a, p, n) == 0.5
    assert triplet_accuracy(a, p, n, "euclidean") == 0.5
    with pytest.raises(InvalidArgument):
        triplet_accuracy(a, p, n, "manhattan")
    collapsed = np.ones((10, 4), dtype=np.float32) + 1e-4 * np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
    assert mean_pairwise_cosine(collapsed) > 0.999
    spread = np.eye(4, dtype=np.float32)
    assert mean_pairwise_cosine(spread) == pytest.approx(0.0)
