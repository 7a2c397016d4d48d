"""Fusing a dense and a lexical ranking into one (hybrid search).

Three rules, each over the candidates each side returned (row ids, best first):

* ``relative`` (the default): each side's scores are divided by that side's best (negative scores
  count as 0), and a document scores ``a * dense + (1 - a) * lexical`` (0 on a side that did not
  return it). ``a`` is ``alpha`` (default 0.85) moved by how confident each side is about its
  first hit: ``a = alpha + 0.5 * gap(dense) - 0.2 * gap(lexical)``, clipped to [0, 1], where a
  side's gap is ``(s1 - s2) / s1`` of its two best scores (1 when it returned one candidate, 0
  when none). A lexical side that singles out one document (an exact name, code or phrase) gets
  more say; a dense side that does gets more in turn. The rule and its constants were chosen on
  labelled sets of different kinds by cross-validation (benchmarks/bench_relevance.py): on ten
  such sets it stays within 2% of the best single mode's MRR@10, where equal-weight RRF lost up
  to 19% to plain dense search.
* ``rrf`` (reciprocal rank fusion, Cormack et al. 2009): a document scores ``sum 1 / (k + rank)``
  over the rankings it appears in (rank from 1, ``k`` = 60). Only ranks count, so a weak side
  weighs as much as a strong one.
* ``weighted``: each side's scores are min-max normalised to [0, 1] over its candidates, and a
  document scores ``alpha * dense + (1 - alpha) * lexical`` (default alpha 0.5), the same for
  every query.

Ties break by the better of the document's ranks, then by row id, so results are deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embedsearch.errors import InvalidArgument

FUSIONS = ("relative", "rrf", "weighted")
RRF_K = 60
DEFAULT_FUSION = "relative"
DEFAULT_ALPHA = {"relative": 0.85, "weighted": 0.5}  # the dense side's weight when none is given
DENSE_GAP_WEIGHT = 0.5  # relative fusion: how far a confident dense side moves alpha up
LEXICAL_GAP_WEIGHT = 0.2  # ... and a confident lexical side moves it down


@dataclass
class Fused:
    """A fused ranking: row ids best first, their fused scores, and each side's 1-based rank (0: absent)."""

    ids: np.ndarray
    scores: np.ndarray
    dense_rank: np.ndarray
    lexical_rank: np.ndarray


def check(fusion: str, alpha: float | None) -> float | None:
    """Validate the fusion settings; returns alpha (the fusion's default when None; None for rrf)."""
    if fusion not in FUSIONS:
        raise InvalidArgument(f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)}")
    if alpha is None:
        return DEFAULT_ALPHA.get(fusion)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= float(alpha) <= 1.0:
        raise InvalidArgument("alpha must be a number between 0 and 1 (the weight of the dense side)")
    if fusion not in DEFAULT_ALPHA:
        raise InvalidArgument(f"alpha applies to fusion {' and '.join(sorted(DEFAULT_ALPHA))} only, not {fusion}")
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


def _min_max(scores: np.ndarray) -> np.ndarray:
    if not len(scores):
        return scores.astype(np.float64)
    lo, hi = float(scores.min()), float(scores.max())
    if hi - lo <= 0:
        return np.ones(len(scores), dtype=np.float64)
    return (scores.astype(np.float64) - lo) / (hi - lo)


def _over_best(scores: np.ndarray) -> np.ndarray:
    """Scores divided by the best (negative ones count as 0)."""
    if not len(scores):
        return scores.astype(np.float64)
    hi = float(scores.max())
    return np.clip(scores.astype(np.float64), 0, None) / hi if hi > 0 else np.zeros(len(scores))


def gap(scores: np.ndarray) -> float:
    """How much a side's first candidate stands out: ``(s1 - s2) / s1`` of its two best scores
    (best first), 1 with a single candidate, 0 with none or a best score of 0 or less."""
    if not len(scores):
        return 0.0
    if len(scores) == 1:
        return 1.0
    s1, s2 = float(scores[0]), float(scores[1])
    return max(0.0, min(1.0, (s1 - s2) / s1)) if s1 > 0 else 0.0


def query_alpha(
    alpha: float, dense_scores: np.ndarray, lexical_scores: np.ndarray, gap_weights: tuple[float, float] | None = None
) -> float:
    """Relative fusion's dense weight for one query (see the module docstring); ``gap_weights``:
    (dense, lexical) weights of the two gaps, default (:data:`DENSE_GAP_WEIGHT`, :data:`LEXICAL_GAP_WEIGHT`)."""
    dw, lw = gap_weights or (DENSE_GAP_WEIGHT, LEXICAL_GAP_WEIGHT)
    a = alpha + dw * gap(dense_scores) - lw * gap(lexical_scores)
    return min(1.0, max(0.0, a))


def _side(scores: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Each universe member's normalised score on a side (0 where the side did not return it)."""
    if not len(scores):
        return np.zeros(len(rank))
    return np.where(rank > 0, scores[np.maximum(rank, 1) - 1], 0.0)


def fuse(
    dense: tuple[np.ndarray, np.ndarray],
    lexical: tuple[np.ndarray, np.ndarray],
    k: int,
    *,
    fusion: str = DEFAULT_FUSION,
    alpha: float | None = None,
    rrf_k: int = RRF_K,
    gap_weights: tuple[float, float] | None = None,
) -> Fused:
    """The top ``k`` of the union of two rankings, each given as (row ids best first, scores).
    ``gap_weights``: relative fusion's constants (see :func:`query_alpha`; benchmarks vary them)."""
    d_ids, d_scores = (np.asarray(a) for a in dense)
    l_ids, l_scores = (np.asarray(a) for a in lexical)
    alpha = check(fusion, alpha)
    universe = np.union1d(d_ids, l_ids).astype(np.int64)
    dr, lr = _ranks(universe, d_ids), _ranks(universe, l_ids)
    if fusion == "rrf":
        score = np.where(dr > 0, 1.0 / (rrf_k + dr), 0.0) + np.where(lr > 0, 1.0 / (rrf_k + lr), 0.0)
    else:
        if fusion == "relative":
            alpha = query_alpha(alpha, d_scores, l_scores, gap_weights)
            dn, ln = _over_best(d_scores), _over_best(l_scores)
        else:
            dn, ln = _min_max(d_scores), _min_max(l_scores)
        score = alpha * _side(dn, dr) + (1 - alpha) * _side(ln, lr)
    best = np.minimum(np.where(dr > 0, dr, np.iinfo(np.int64).max), np.where(lr > 0, lr, np.iinfo(np.int64).max))
    order = np.lexsort((universe, best, -score))[:k]
    return Fused(universe[order], score[order], dr[order], lr[order])
