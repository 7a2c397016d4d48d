"""A process's view of one collection's vectors: the open segments at one generation, and
the fan-out search over them.

Refreshing costs what changed since the last refresh: sealed segments already open stay open
(they are immutable), the growing segment reads only the records committed since, and
tombstones load incrementally unless a seal or merge dropped some.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embedsearch.errors import InconsistentCollection
from embedsearch.store import manifest
from embedsearch.store.growing import GrowingSegment
from embedsearch.store.segment_files import SegmentMeta
from embedsearch.store.segments import Segment
from embedsearch.store.selection import Selection
from embedsearch.store.topk import sort_topk

_RETRIES = 5


class SegmentSet:
    """Sealed segments + the growing segment + tombstones, as of ``generation``."""

    def __init__(self, directory: Path, dim: int, metric: str) -> None:
        self.directory = directory
        self.dim = dim
        self.metric = metric
        self.generation = -1
        self.sealed: dict[int, Segment] = {}
        self.growing: GrowingSegment | None = None
        self.dead = np.zeros(0, dtype=np.int64)
        self.training: manifest.Training | None = None
        self.metas: list[SegmentMeta] = []
        self.use_gpu = False
        self.legacy = False  # a pre-segment collection served from its single file
        # a shard of a sharded collection (embedsearch/cluster/shards.py): (shard, shards); the
        # view then opens and searches only the segments :func:`owner` gives this shard
        self.shard: tuple[int, int] | None = None

    # ---- loading ----------------------------------------------------------------------------
    def sync(self, engine, collection_id: int, known: manifest.CommittedState | None = None) -> SegmentSet:
        """Bring the view to the committed state (retrying when a concurrent merge removed a file
        between reading the list and opening it). ``known``: what the commit that made the next
        generation recorded (used when this view is at the generation before it and the sealed
        segments did not change; otherwise the state is read from SQL)."""
        for attempt in range(_RETRIES):
            try:
                self._sync_once(engine, collection_id, known if attempt == 0 else None)
                return self
            except FileNotFoundError as exc:
                if attempt == _RETRIES - 1:
                    raise InconsistentCollection(f"segment file {Path(exc.filename or '?').name} is missing") from None
        return self

    def _read_state(self, engine, collection_id: int):
        """Generation, segment list, training and tombstones, read as one consistent state: every
        commit bumps the generation, so an unchanged generation around the reads proves that
        no commit happened in between."""
        while True:
            with engine.connect() as conn:
                gen = committed_generation(conn, collection_id)
                if gen == self.generation:
                    return gen, None, None, None
                metas = manifest.read_segments(conn, collection_id)
                training = manifest.read_training(conn, collection_id)
                structural = [m.seg_id for m in metas if m.state == "sealed"] != [
                    m.seg_id for m in self.metas if m.state == "sealed"
                ]
                incremental = not structural and self.generation >= 0
                dead = manifest.read_tombstones(conn, collection_id, self.generation if incremental else None)
                if committed_generation(conn, collection_id) == gen:
                    return gen, metas, training, (dead, incremental)

    def _from_commit(self, known: manifest.CommittedState):
        """The state a commit recorded, when it applies to this view as an increment."""
        if known.generation != self.generation + 1 or self.generation < 0:
            return None
        if [m.seg_id for m in known.metas if m.state == "sealed"] != [m.seg_id for m in self.metas if m.state == "sealed"]:
            return None  # a seal or merge: tombstones may have been dropped, read them all
        return known.generation, known.metas, known.training, (known.added_tombstones, True)

    def _sync_once(self, engine, collection_id: int, known: manifest.CommittedState | None = None) -> None:
        state = self._from_commit(known) if known is not None else None
        gen, metas, training, tomb = state or self._read_state(engine, collection_id)
        if metas is None:
            return
        owners = owner_of(metas, self.shard[1]) if self.shard else None
        mine = (lambda sid: owners[sid] == self.shard[0]) if owners else (lambda sid: True)  # noqa: E731
        wanted = {m.seg_id: m for m in metas if m.state == "sealed" and mine(m.seg_id)}
        sealed = {sid: seg for sid, seg in self.sealed.items() if sid in wanted}
        for sid, meta in wanted.items():
            if sid not in sealed:
                seg = Segment.open(self.directory, meta, self.dim)
                seg.use_gpu = self.use_gpu
                sealed[sid] = seg
        growing_meta = next((m for m in metas if m.state == "growing"), None)
        if growing_meta is None:
            raise InconsistentCollection("the segment list has no growing segment")
        growing = self.growing
        if not mine(growing_meta.seg_id):
            growing = None
        elif growing is None or growing.meta.seg_id != growing_meta.seg_id:
            growing = GrowingSegment(self.directory, growing_meta, self.dim, self.metric)
        elif growing_meta.count != growing.meta.count:
            growing.catch_up(growing_meta)
        else:
            growing.meta = SegmentMeta(**growing_meta.__dict__)
        dead, incremental = tomb
        self.dead = np.union1d(self.dead, dead) if incremental else dead
        self.sealed, self.growing, self.training, self.metas = sealed, growing, training, metas
        self.generation = gen

    # ---- facts ------------------------------------------------------------------------------
    def segments(self) -> list[Segment]:
        """Sealed segments in row-id order, then the growing one."""
        out = [self.sealed[m.seg_id] for m in self.metas if m.state == "sealed" and m.seg_id in self.sealed]  # a shard's own
        return out + ([self.growing] if self.growing is not None else [])

    @property
    def row_hi(self) -> int:
        """Row ids below this are covered by the view; newer ones were committed after it."""
        if self.growing is not None:
            return self.growing.meta.row_hi
        return max((m.row_hi for m in self.metas), default=0)

    def stored(self) -> int:
        if self.shard is not None:  # of the whole collection, not of this shard
            return sum(m.count for m in self.metas)
        return sum(s.meta.count for s in self.segments())

    def live(self) -> int:
        return self.stored() - len(self.dead)

    def dead_in(self, seg: Segment) -> np.ndarray:
        lo, hi = np.searchsorted(self.dead, [seg.meta.row_lo, seg.meta.row_hi])
        return self.dead[lo:hi]

    # ---- search -----------------------------------------------------------------------------
    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        selection: Selection | None = None,
        nprobe: int | None = None,
        ef_search: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k over every segment, merged exactly. A ``selection`` (live row ids matching a
        filter, as of this view or later) restricts the search; each query then gets
        ``min(k, selected ids in this view)`` hits."""
        nq = len(queries)
        parts_s, parts_i = [], []
        selector = selection.selector() if selection is not None and selection.count else None
        for seg in self.segments():
            if seg.meta.count == 0:
                continue
            if selection is not None:
                if not selection.count_between(seg.meta.row_lo, seg.meta.row_hi):
                    continue
                s, i = seg.search(queries, k, selection=selection, selector=selector, nprobe=nprobe, ef_search=ef_search)
            else:
                s, i = seg.search(queries, k, dead=self.dead_in(seg), nprobe=nprobe, ef_search=ef_search)
            parts_s.append(s)
            parts_i.append(i)
        if not parts_s:
            return np.full((nq, k), -np.inf, dtype=np.float32), np.full((nq, k), -1, dtype=np.int64)
        # sorted even from one segment: equal scores come in row-id order whatever the index did
        # (so a sharded search, which merges the shards' parts, gives the same list)
        return sort_topk(np.hstack(parts_s), np.hstack(parts_i), k)


def owner_of(metas: list[SegmentMeta], shards: int) -> dict[int, int]:
    """segment id -> the shard that searches it: sealed segments in row-id order dealt round-robin,
    then the growing segment, so every shard holds about as many. Every shard computes the same
    map from the same segment list (one generation)."""
    ordered = sorted((m for m in metas if m.state == "sealed"), key=lambda m: m.row_lo)
    ordered += [m for m in metas if m.state == "growing"]
    return {m.seg_id: i % shards for i, m in enumerate(ordered)}


def committed_generation(conn, collection_id: int, name: str | None = None) -> int:
    """The generation SQL holds for a collection (every commit bumps it)."""
    gen = manifest.generation_of(conn, collection_id)
    if gen is None:
        from embedsearch.errors import CollectionNotFound

        raise CollectionNotFound(f"collection {name!r} no longer exists" if name else "the collection no longer exists")
    return int(gen)
