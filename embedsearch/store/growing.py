"""The growing segment: an append-only log of the newest vectors, searched exactly in memory.

The log ``growing-<id>.log`` is a flat sequence of fixed-size records, each a little-endian
int64 row id followed by ``dim`` float32 values (no header: the dimension is the
collection's). SQL records how many records are committed; bytes past that are the remains of
a write that never committed, which readers ignore and the next writer truncates.

A commit appends its records at the committed end, fsyncs, and only then commits SQL, so a
``kill -9`` anywhere leaves either the old count (the tail is ignored) or the new one (the
records are on disk). Readers in other processes catch up by reading only the records past
the count they have.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from embedsearch.errors import IndexCorrupted
from embedsearch.files import fsync_path
from embedsearch.store.segment_files import SegmentMeta
from embedsearch.store.segments import Segment


def growing_file(seg_id: int) -> str:
    return f"growing-{seg_id:012d}.log"


def growing_meta(seg_id: int, row_lo: int, generation: int) -> SegmentMeta:
    """The segment-list entry of a new, empty growing segment starting at ``row_lo``."""
    return SegmentMeta(seg_id, "growing", growing_file(seg_id), "Flat", None, 0, row_lo, row_lo, 0, None, generation)


def record_dtype(dim: int) -> np.dtype:
    return np.dtype([("id", "<i8"), ("v", "<f4", (dim,))])


def read_records(path: Path, dim: int, start: int, stop: int) -> np.ndarray:
    """Records [start, stop) of a log; IndexCorrupted when the file holds fewer."""
    rec = record_dtype(dim)
    if stop <= start:
        return np.zeros(0, dtype=rec)
    with open(path, "rb") as f:
        f.seek(start * rec.itemsize)
        out = np.fromfile(f, dtype=rec, count=stop - start)
    if len(out) != stop - start:
        raise IndexCorrupted(f"{path.name}: truncated ({start + len(out)} records on disk, {stop} committed)")
    return out


def append_records(path: Path, dim: int, committed: int, ids: np.ndarray, vectors: np.ndarray) -> None:
    """Write records at the committed end of the log (dropping any uncommitted tail), fsync."""
    rec = record_dtype(dim)
    block = np.empty(len(ids), dtype=rec)
    block["id"] = ids
    block["v"] = vectors
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, committed * rec.itemsize)
        os.lseek(fd, committed * rec.itemsize, os.SEEK_SET)
        view = memoryview(block.tobytes())
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except OSError as exc:
        if exc.filename is None:  # say which file (and so which disk) failed: os.write names none
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise
    finally:
        os.close(fd)


def create_log(path: Path) -> None:
    """An empty log, durable before the segment list names it."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644))
    fsync_path(path)
    fsync_path(path.parent)


def truncate_log(path: Path, dim: int, committed: int) -> None:
    """Drop an uncommitted tail (the writer's clean-up after a crash)."""
    size = committed * record_dtype(dim).itemsize
    try:
        if path.stat().st_size > size:
            os.truncate(path, size)
    except FileNotFoundError:
        pass


class GrowingSegment(Segment):
    """The growing segment in memory: an exact Flat index over the committed records."""

    def __init__(self, directory: Path, meta: SegmentMeta, dim: int, metric: str) -> None:
        import faiss

        from embedsearch.store.specs import check_metric

        index = faiss.IndexIDMap2(faiss.IndexFlat(dim, check_metric(metric)))
        super().__init__(SegmentMeta(**{**meta.__dict__, "count": 0}), index, dim)
        self.path = directory / meta.file
        self.catch_up(meta)

    def catch_up(self, meta: SegmentMeta) -> None:
        """Load the records committed since this object last read the log."""
        if meta.count < self.meta.count:
            raise IndexCorrupted(f"{meta.file}: committed count went back from {self.meta.count} to {meta.count}")
        new = read_records(self.path, self.dim, self.meta.count, meta.count)
        self.add(new["id"], new["v"])
        self.meta = SegmentMeta(**{**meta.__dict__})

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add committed vectors (the writer's in-memory copy of what it just appended)."""
        if len(ids):
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64))
            self._ids = None
