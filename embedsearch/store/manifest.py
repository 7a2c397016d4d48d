"""The segment list in SQL: which segments, tombstones and trained templates a collection has.

Each function takes an open connection, so the caller's transaction decides what commits
together (the rows of a batch, its tombstones, the segment list and the generation).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import bindparam, delete, insert, select, update

from embedsearch.store.metadata import collections, segments, tombstones, trainings
from embedsearch.store.segment_files import SegmentMeta

_CHUNK = 500  # ids per IN (...) / executemany chunk


@dataclass
class Training:
    """A trained, empty index that IVF and SQ segments are copies of."""

    train_id: int
    spec: str
    file: str
    trained_on: int
    sample: int
    sha256: str
    created_gen: int


@dataclass
class CommittedState:
    """What a commit recorded, read inside its own transaction: the segment list and training
    after it, and the tombstones it added. A view at the generation before it reaches this one
    from it (``SegmentSet.sync(known=...)``) without reading SQL again."""

    generation: int
    metas: list[SegmentMeta]
    training: Training | None
    added_tombstones: np.ndarray


_last_id = 0


def new_id() -> int:
    """A fresh segment or training id: microseconds since the epoch, strictly increasing in
    this process. Writers and mergers of one collection are serialised by locks, so ids do not
    collide across processes either; a file name is never re-used."""
    global _last_id
    _last_id = max(_last_id + 1, time.time_ns() // 1000)
    return _last_id


# the statements every view sync and commit runs, built once (building a select costs more than
# running it on SQLite; SQLAlchemy caches the compiled form of a prebuilt statement)
_CID = bindparam("cid")
_SEGMENTS = select(segments).where(segments.c.collection_id == _CID).order_by(segments.c.row_lo, segments.c.seg_id)
_TRAINING = select(trainings).where(trainings.c.collection_id == _CID).order_by(trainings.c.train_id.desc()).limit(1)
_TRAININGS = select(trainings).where(trainings.c.collection_id == _CID)
_TOMBSTONES = select(tombstones.c.row_id).where(tombstones.c.collection_id == _CID)
_TOMBSTONES_AFTER = _TOMBSTONES.where(tombstones.c.generation > bindparam("after"))
_HAS_SEGMENTS = select(segments.c.seg_id).where(segments.c.collection_id == _CID).limit(1)


def read_segments(conn, collection_id: int) -> list[SegmentMeta]:
    rows = conn.execute(_SEGMENTS, {"cid": collection_id})
    return [SegmentMeta.from_row(r) for r in rows.mappings()]


def has_segments(conn, collection_id: int) -> bool:
    """Whether the collection has a segment list (collections of the single-file format have none)."""
    return conn.execute(_HAS_SEGMENTS, {"cid": collection_id}).first() is not None


def insert_segment(conn, collection_id: int, meta: SegmentMeta) -> None:
    conn.execute(insert(segments).values(collection_id=collection_id, **meta.to_row()))


def update_segment(conn, collection_id: int, seg_id: int, **values: Any) -> None:
    conn.execute(update(segments).where(segments.c.collection_id == collection_id, segments.c.seg_id == seg_id).values(**values))


def delete_segments(conn, collection_id: int, seg_ids: list[int]) -> None:
    if seg_ids:
        conn.execute(delete(segments).where(segments.c.collection_id == collection_id, segments.c.seg_id.in_(seg_ids)))


def read_training(conn, collection_id: int) -> Training | None:
    row = conn.execute(_TRAINING, {"cid": collection_id}).mappings().first()
    if row is None:
        return None
    return Training(**{k: row[k] for k in Training.__dataclass_fields__})


def read_trainings(conn, collection_id: int) -> list[Training]:
    rows = conn.execute(_TRAININGS, {"cid": collection_id}).mappings()
    return [Training(**{k: r[k] for k in Training.__dataclass_fields__}) for r in rows]


def insert_training(conn, collection_id: int, t: Training) -> None:
    conn.execute(insert(trainings).values(collection_id=collection_id, **t.__dict__))


def delete_training(conn, collection_id: int, train_id: int) -> None:
    conn.execute(delete(trainings).where(trainings.c.collection_id == collection_id, trainings.c.train_id == train_id))


def read_tombstones(conn, collection_id: int, after_generation: int | None = None) -> np.ndarray:
    """Sorted row ids of tombstones (only those recorded after ``after_generation``)."""
    if after_generation is None:
        rows = conn.execute(_TOMBSTONES, {"cid": collection_id})
    else:
        rows = conn.execute(_TOMBSTONES_AFTER, {"cid": collection_id, "after": after_generation})
    return np.sort(np.fromiter((r[0] for r in rows), dtype=np.int64))


def add_tombstones(conn, collection_id: int, row_ids, generation: int) -> None:
    rows = [{"collection_id": collection_id, "row_id": int(r), "generation": generation} for r in row_ids]
    for start in range(0, len(rows), _CHUNK):
        conn.execute(insert(tombstones), rows[start : start + _CHUNK])


def drop_tombstones(conn, collection_id: int, row_ids) -> None:
    """Forget tombstones whose vectors a seal or merge has left out."""
    ids = [int(r) for r in row_ids]  # plain ints: numpy ints bind as blobs on SQLite
    for start in range(0, len(ids), _CHUNK):
        conn.execute(
            delete(tombstones).where(
                tombstones.c.collection_id == collection_id, tombstones.c.row_id.in_(ids[start : start + _CHUNK])
            )
        )


_GENERATION = select(collections.c.generation).where(collections.c.id == bindparam("cid"))


def generation_of(conn, collection_id: int) -> int | None:
    """The committed generation of a collection (None when it is gone), from a prebuilt statement."""
    return conn.execute(_GENERATION, {"cid": collection_id}).scalar()
