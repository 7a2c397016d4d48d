"""What each collection holds, for monitoring (the service's ``/metrics``): documents, vectors,
segments, tombstones, generation and bytes on disk, cheap enough to read on every scrape.

One SQL statement reads every collection's row (its document count and generation, which each
commit keeps) with its segment list and tombstones counted per collection, so the numbers are
of one moment of the database. Nothing is scanned but the segment list and the tombstones'
index (a merge purges a segment past a quarter tombstones, so they stay below about a quarter
of the vectors; counting a million takes about 0.1 s on SQLite), no model is loaded, none of the
collection's locks is taken, and a writer is never waited for (SQLite's WAL lets the read run
beside a commit). The bytes are the sizes of the files in each collection's directory
(segments, the growing log, trained templates, and leftovers of interrupted writes until they
are removed); the database's rows are not counted.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from embedsearch.store.metadata import collections, segments, tombstones


@dataclass(frozen=True)
class CollectionStats:
    """One collection's numbers at one moment."""

    name: str
    documents: int  # documents (a chunked collection's are split into more vectors)
    vectors: int  # vectors searched: those the segments hold less the tombstones
    segments: int  # sealed segments and the growing one (0: a collection in the pre-segment format)
    tombstones: int  # vectors deleted or replaced but still in a segment, until a merge drops them
    generation: int  # commits so far: every write, seal and merge adds one
    bytes: int  # the files in the collection's directory


def _statement():
    per_segments = (
        select(segments.c.collection_id, func.count().label("n"), func.coalesce(func.sum(segments.c.count), 0).label("stored"))
        .group_by(segments.c.collection_id)
        .subquery()
    )
    per_tombstones = select(tombstones.c.collection_id, func.count().label("n")).group_by(tombstones.c.collection_id).subquery()
    return (
        select(
            collections.c.name,
            collections.c.doc_count,
            collections.c.generation,
            func.coalesce(per_segments.c.n, 0),
            func.coalesce(per_segments.c.stored, 0),
            func.coalesce(per_tombstones.c.n, 0),
        )
        .outerjoin(per_segments, per_segments.c.collection_id == collections.c.id)
        .outerjoin(per_tombstones, per_tombstones.c.collection_id == collections.c.id)
        .order_by(collections.c.name)
    )


_STATEMENT = _statement()  # built once (SQLAlchemy caches its compiled form)


def collection_stats(engine, directory: Callable[[str], Path]) -> list[CollectionStats]:
    """Every collection's numbers, by name; ``directory(name)`` is where its files live."""
    with engine.connect() as conn:
        rows = conn.execute(_STATEMENT).all()
    out = []
    for name, docs, generation, n_segments, stored, n_tombstones in rows:
        out.append(
            CollectionStats(
                name=name,
                documents=int(docs),
                vectors=max(0, int(stored) - int(n_tombstones)),
                segments=int(n_segments),
                tombstones=int(n_tombstones),
                generation=int(generation),
                bytes=directory_bytes(directory(name)),
            )
        )
    return out


def directory_bytes(path: Path) -> int:
    """The total size of the files directly in ``path`` (0 when it is gone: the collection was
    dropped meanwhile). A file removed while it is listed counts 0."""
    total = 0
    try:
        entries = os.scandir(path)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    with entries:
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue
    return total
