"""Merge policy and merged-segment builds, apart from the write path.

Policy (size-tiered, in the manner of Lucene's log merge policy; segments are only merged with
their neighbours, so each one keeps covering one contiguous row-id range):

1. **Stale**: segments not built from the current trained template (Flat segments written
   before an IVF spec could be trained, or IVF segments of an older training) are rebuilt,
   adjacent ones together.
2. **Tiers**: a segment's level is ``floor(log_FACTOR(live / seal size))``; ``FACTOR`` adjacent
   segments of one level merge into one of the next level. Every vector is therefore rewritten
   about ``log_FACTOR(collection / seal size)`` times over its life, not once per commit.
3. **Purge**: a segment that is more than a quarter tombstones is rewritten without them.

No merged segment grows past ``max_vectors`` (Lucene's max merged segment size), which bounds
the memory a merge needs. ``optimize`` (``force``) merges every run it can and purges every
tombstone. IVF segments of one training merge list by list (no re-encoding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedsearch.store.segment_files import SegmentMeta
from embedsearch.store.segments import Segment, build_index
from embedsearch.store.specs import IndexSpec

FACTOR = 8
PURGE_RATIO = 0.25


@dataclass
class MergePlan:
    seg_ids: list[int]
    reason: str


def _level(live: int, seal_at: int) -> int:
    return int(math.floor(math.log(max(live, 1) / max(seal_at, 1), FACTOR))) if live > seal_at else 0


def plan_merge(
    sealed: list[SegmentMeta],
    dead: dict[int, int],
    *,
    stale: set[int],
    seal_at: int,
    max_vectors: int,
    force: bool = False,
) -> MergePlan | None:
    """The next merge to run, or None. ``sealed`` in row-id order; ``dead`` tombstones per
    segment; ``stale`` segments that must be rebuilt."""
    live = {m.seg_id: m.count - dead.get(m.seg_id, 0) for m in sealed}

    def grow(start: int, pick) -> list[int]:
        """Adjacent segments from ``start`` while ``pick`` holds and the size stays bounded."""
        run, total = [], 0
        for m in sealed[start:]:
            if not pick(m) or (run and total + live[m.seg_id] > max_vectors):
                break
            run.append(m.seg_id)
            total += live[m.seg_id]
        return run

    for i, m in enumerate(sealed):
        if m.seg_id in stale:
            return MergePlan(grow(i, lambda s: s.seg_id in stale), "rebuild with the current training")
    if force:
        for i, m in enumerate(sealed):
            run = grow(i, lambda s: True)
            if len(run) > 1 or dead.get(m.seg_id, 0):
                return MergePlan(run, "optimize")
        return None
    levels = [_level(live[m.seg_id], seal_at) for m in sealed]
    i = 0
    while i < len(sealed):
        j = i
        while j < len(sealed) and levels[j] == levels[i]:
            j += 1
        if j - i >= FACTOR:
            run = [m.seg_id for m in sealed[i : i + FACTOR]]
            if sum(live[s] for s in run) <= max_vectors:
                return MergePlan(run, f"{FACTOR} segments of level {levels[i]}")
        i = j
    for m in sealed:
        if m.count and dead.get(m.seg_id, 0) > PURGE_RATIO * m.count:
            return MergePlan([m.seg_id], "purge tombstones")
    return None


def build_merged(
    inputs: list[Segment],
    dead: np.ndarray,
    spec: IndexSpec,
    dim: int,
    metric: str,
    template: Path | None,
    train_id: int | None,
) -> tuple[object, tuple[np.ndarray, np.ndarray] | None]:
    """The merged index of ``inputs`` without ``dead`` ids (and, for Refine specs, the full
    vectors in id order). IVF inputs of the current training merge list by list; anything
    else is re-added from its stored vectors."""
    import faiss

    full = None
    if spec.refine:
        ids_parts, vec_parts = [], []
        for seg in inputs:
            ids, vecs = seg.all_vectors(dead)
            seg.release()
            ids_parts.append(ids)
            vec_parts.append(vecs)
        full = (np.concatenate(ids_parts), np.concatenate(vec_parts)) if ids_parts else None
    if spec.ivf and all(seg.spec.ivf and seg.meta.train_id == train_id for seg in inputs):
        merged = faiss.read_index(str(template))
        for seg in inputs:
            part = faiss.read_index(str(seg.path))  # in memory: merge_from empties its source
            faiss.extract_index_ivf(part).set_direct_map_type(faiss.DirectMap.NoMap)
            merged.merge_from(part, 0)
        if len(dead):
            merged.remove_ids(faiss.IDSelectorBatch(dead))
        return merged, full
    if full is not None:
        ids, vecs = full
    else:
        pairs = []
        for seg in inputs:
            pairs.append(seg.all_vectors(dead))
            seg.release()
        ids = np.concatenate([p[0] for p in pairs]) if pairs else np.zeros(0, dtype=np.int64)
        vecs = np.concatenate([p[1] for p in pairs]) if pairs else np.zeros((0, dim), dtype=np.float32)
    return build_index(spec, dim, metric, template, vecs, ids), full
