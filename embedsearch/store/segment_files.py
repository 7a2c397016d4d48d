"""Segment files: the segment-list entry (:class:`SegmentMeta`), every on-disk name a segment
uses, and the durable writes of sealed segment files (temp file, fsync, rename, checksum).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedsearch.files import fsync_path
from embedsearch.store import deleter
from embedsearch.store.specs import parse_spec

SEGMENT_FILE_RE = re.compile(r"^seg-(\d+)\.(faiss|ids\.npy|vectors\.npy)$")


def _faiss():
    import faiss

    return faiss


@dataclass
class SegmentMeta:
    """One entry of a collection's segment list (a row of the ``segments`` table)."""

    seg_id: int
    state: str  # "sealed" or "growing"
    file: str
    spec: str  # the index this segment is built as ("Flat" for the growing one)
    train_id: int | None
    count: int  # vectors stored, tombstones included
    row_lo: int  # covers row ids in [row_lo, row_hi)
    row_hi: int
    bytes: int
    sha256: str | None
    created_gen: int

    @classmethod
    def from_row(cls, row) -> SegmentMeta:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})

    def to_row(self) -> dict:
        return dict(self.__dict__)


def segment_file(seg_id: int) -> str:
    return f"seg-{seg_id:012d}.faiss"


def refine_files(seg_id: int) -> tuple[str, str]:
    return f"seg-{seg_id:012d}.ids.npy", f"seg-{seg_id:012d}.vectors.npy"


def segment_files(meta: SegmentMeta) -> list[str]:
    """Every file a segment owns."""
    if meta.state == "growing":
        return [meta.file]
    files = [meta.file]
    if parse_spec(meta.spec).refine:
        files += list(refine_files(meta.seg_id))
    return files


def temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_index_file(index, path: Path) -> None:
    """Write a FAISS index atomically: temp file, fsync, rename (the directory is fsynced by
    the caller once all of a segment's files are in place)."""
    faiss = _faiss()
    tmp = temp_name(path)
    try:
        try:
            faiss.write_index(index, str(tmp))
        except RuntimeError as exc:  # FAISS words a failed write as "... write error in PATH: ... (strerror)"
            for code in (errno.ENOSPC, errno.EDQUOT):
                if f"({os.strerror(code)})" in str(exc):
                    raise OSError(code, os.strerror(code), str(path)) from None
            raise
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        deleter.remove_temp(tmp)
        raise


def _write_npy(array: np.ndarray, path: Path) -> None:
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        deleter.remove_temp(tmp)
        raise


def checksum(directory: Path, files: list[str]) -> tuple[int, str]:
    """(total bytes, sha256) over a segment's files, in order."""
    h = hashlib.sha256()
    total = 0
    for name in files:
        with open(directory / name, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
                total += len(chunk)
    return total, h.hexdigest()


def write_sealed(directory: Path, meta: SegmentMeta, index, full: tuple[np.ndarray, np.ndarray] | None) -> SegmentMeta:
    """Write a sealed segment's files (``full`` = (sorted ids, vectors) for Refine specs) and
    fill in its size and checksum."""
    write_index_file(index, directory / meta.file)
    if full is not None:
        ids_name, vec_name = refine_files(meta.seg_id)
        _write_npy(np.ascontiguousarray(full[0], dtype=np.int64), directory / ids_name)
        _write_npy(np.ascontiguousarray(full[1], dtype=np.float32), directory / vec_name)
    fsync_path(directory)
    meta.bytes, meta.sha256 = checksum(directory, segment_files(meta))
    return meta
