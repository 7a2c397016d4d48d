"""Fusing a dense and a lexical ranking into one (hybrid search).

Two rules, both over the candidates each side returned (row ids, best first):

* ``rrf`` (reciprocal rank fusion, Cormack et al. 2009): a document scores ``sum 1 / (k + rank)``
  over the rankings it appears in (rank from 1, ``k`` = 60). Only ranks count, so the two score
  scales never have to agree.
* ``weighted``: each side's scores are min-max normalised to [0, 1] over its candidates, and a
  document scores ``alpha * dense + (1 - alpha) * lexical`` (0 on a side that did not return it).

Ties break by the better of the document's ranks, then by row id, so results are deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embedsearch.errors import InvalidArgument

FUSIONS = ("rrf", "weighted")
RRF_K = 60
DEFAULT_ALPHA = 0.5


@dataclass
class Fused:
    """A fused ranking: row ids best first, their fused scores, and each side's 1-based rank (0: absent)."""

    ids: np.ndarray
    scores: np.ndarray
    dense_rank: np.ndarray
    lexical_rank: np.ndarray


def check(fusion: str, alpha: float | None) -> float:
    """Validate the fusion settings; returns alpha (its default when None)."""
    if fusion not in FUSIONS:
        raise InvalidArgument(f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)}")
    if alpha is None:
        return DEFAULT_ALPHA
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= float(alpha) <= 1.0:
        raise InvalidArgument("alpha must be a number between 0 and 1 (the weight of the dense side)")
    if fusion != "weighted":
        raise InvalidArgument("alpha applies to --fusion weighted only")
    return float(alpha)


def _ranks(universe: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """1-based rank in ``ids`` of each id of ``universe`` (0 when absent)."""
    out = np.zeros(len(universe), dtype=np.int64)
    if len(ids):
        order = np.argsort(ids, kind="stable")
        pos = np.searchsorted(ids[order], universe)
        pos = np.minimum(pos, len(ids) - 1)
        hit = ids[order][pos] == universe
        out[hit] = order[pos[hit]] + 1
    return out


def _normalise(scores: np.ndarray) -> np.ndarray:
    if not len(scores):
        return scores.astype(np.float64)
    lo, hi = float(scores.min()), float(scores.max())
    if hi - lo <= 0:
        return np.ones(len(scores), dtype=np.float64)
    return (scores.astype(np.float64) - lo) / (hi - lo)


def fuse(
    dense: tuple[np.ndarray, np.ndarray],
    lexical: tuple[np.ndarray, np.ndarray],
    k: int,
    *,
    fusion: str = "rrf",
    alpha: float = DEFAULT_ALPHA,
    rrf_k: int = RRF_K,
) -> Fused:
    """The top ``k`` of the union of two rankings, each given as (row ids best first, scores)."""
    d_ids, d_scores = (np.asarray(a) for a in dense)
    l_ids, l_scores = (np.asarray(a) for a in lexical)
    universe = np.union1d(d_ids, l_ids).astype(np.int64)
    dr, lr = _ranks(universe, d_ids), _ranks(universe, l_ids)
    if fusion == "rrf":
        score = np.where(dr > 0, 1.0 / (rrf_k + dr), 0.0) + np.where(lr > 0, 1.0 / (rrf_k + lr), 0.0)
    else:
        dn, ln = _normalise(d_scores), _normalise(l_scores)
        score = alpha * np.where(dr > 0, dn[np.maximum(dr, 1) - 1] if len(dn) else 0.0, 0.0)
        score = score + (1 - alpha) * np.where(lr > 0, ln[np.maximum(lr, 1) - 1] if len(ln) else 0.0, 0.0)
    best = np.minimum(np.where(dr > 0, dr, np.iinfo(np.int64).max), np.where(lr > 0, lr, np.iinfo(np.int64).max))
    order = np.lexsort((universe, best, -score))[:k]
    return Fused(universe[order], score[order], dr[order], lr[order])
