"""Top-k helpers over numpy arrays: an exact scan in chunks, and the exact merge of partial
top-k lists (best score first, ties by row id), which segments, views and shards all use.
"""

from __future__ import annotations

import numpy as np


def empty_topk(nq: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((nq, k), -np.inf, dtype=np.float32), np.full((nq, k), -1, dtype=np.int64)


def exact_topk(queries: np.ndarray, k: int, ids: np.ndarray, fetch, chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """Brute force over ``ids`` (vectors from ``fetch``), in chunks so memory stays bounded."""
    nq = len(queries)
    best_s, best_i = empty_topk(nq, k)
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        sims = queries @ fetch(part).T
        all_s = np.hstack([best_s, sims])
        all_i = np.hstack([best_i, np.broadcast_to(part, (nq, len(part)))])
        kk = min(k, all_s.shape[1])
        top = np.argpartition(-all_s, kk - 1, axis=1)[:, :kk]
        best_s = np.take_along_axis(all_s, top, axis=1)
        best_i = np.take_along_axis(all_i, top, axis=1)
    return sort_topk(best_s, best_i, k)


def sort_topk(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of each row, best first; pads with (-inf, -1)."""
    nq, n = scores.shape
    # a full sort (the inputs are k per part): ties are broken by row id, so the k kept do not
    # depend on the order the parts come in (a sharded search merges the same parts in any order)
    order = np.lexsort((ids, -scores), axis=1)[:, :k] if scores.size else np.zeros_like(ids)
    scores = np.take_along_axis(scores, order, axis=1)
    ids = np.take_along_axis(ids, order, axis=1)
    if scores.shape[1] < k:
        pad_s, pad_i = empty_topk(nq, k - scores.shape[1])
        scores, ids = np.hstack([scores, pad_s]), np.hstack([ids, pad_i])
    return scores, ids
