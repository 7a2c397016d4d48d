"""The one place collection files are deleted.

Two kinds of deletion, both here:

* **obsolete** files, named by a commit that stopped using them (a merge's inputs, the log a
  seal replaced): deleted right after that commit (:func:`remove`). A reader that still has
  such a file open keeps reading it (POSIX unlink keeps an open or memory-mapped file alive
  until it is closed); a reader that had not opened it yet finds it gone, re-reads the segment
  list and opens the files of the newer generation instead (``SegmentSet.sync`` retries).
* **leftovers** of interrupted writes, named by no commit (:func:`remove_unnamed`): removed by
  the next writer, holding the write lock and the merge lock, so no writer, seal or merge can
  create a file between the listing of the live names and the deletion.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def remove(directory: Path, names: Iterable[str]) -> None:
    """Delete files a commit made obsolete (missing ones are fine: a crash may have left the
    deletion half done, and the next clean-up finishes it)."""
    for name in names:
        (directory / name).unlink(missing_ok=True)


def remove_directory(directory: Path) -> None:
    """Delete a collection's directory (drop, or the remains of an interrupted create or drop);
    the caller holds every lock of the collection."""
    import shutil

    shutil.rmtree(directory, ignore_errors=True)


def remove_temp(path: Path) -> None:
    """Delete the temporary file of a write that failed before its rename."""
    path.unlink(missing_ok=True)


def remove_unnamed(directory: Path, live: set[str]) -> list[str]:
    """Delete every file in ``directory`` that no commit names; returns their names. The caller
    holds the write and merge locks."""
    gone = []
    for p in directory.iterdir():
        if p.is_file() and p.name not in live:
            p.unlink(missing_ok=True)
            gone.append(p.name)
    return gone
