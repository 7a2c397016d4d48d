"""Disk space: a full disk must never stop a user from freeing space.

Deleting documents, optimizing and dropping collections all have to write before they free
anything (SQLite's WAL records the deletes; a merge writes the new segment before it unlinks the
old ones), so on a disk that adds have filled they would fail too. Three measures:

* **A space reserve**: ``<data dir>/.embedsearch-reserve``, a file of :func:`reserve_size` bytes
  (8 MiB; ``EMBEDSEARCH_DISK_RESERVE`` bytes, 0 to turn it off), allocated (``posix_fallocate``)
  before every write while the disk has room for it. Adds therefore fail with "insufficient
  storage" while that much is still free; deletes, optimize and drop (:func:`frees_space`)
  that meet a full disk release the reserve and run again, and the reserve is taken back once
  the disk has room again.
* **Giving back after a failed write** (:func:`give_back`): the growing log's uncommitted tail
  is truncated and files the failed commit wrote are deleted (the writer's usual clean-up, run
  at once instead of by the next writer), and SQLite's WAL is checkpointed and truncated.
  ``journal_size_limit`` also keeps the WAL from staying at its largest size after checkpoints.
  A delete that runs on the reserve commits a thousand rows at a time (:func:`on_reserve`).
* **The condition, for /health** (:func:`low_space`): less free space than the reserve's size on
  the data directory's disk.

The database's own disk is covered only where it is the data directory's (SQLite, the default);
a PostgreSQL server's disk is its administrator's, and its disk_full error is reported as it is.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
import shutil
from pathlib import Path

from embedsearch.errors import disk_full_reason

RESERVE_NAME = ".embedsearch-reserve"
DEFAULT_RESERVE = 8 << 20
MARGIN = 256 << 10  # taking the reserve leaves at least this much for the write that asked
MIN_FREE = 1 << 20  # below this beyond the reserve, /health reports the disk as full
EMERGENCY_CHUNK = 1000  # rows a delete commits at a time when it runs on the reserve
log = logging.getLogger("embedsearch.store")
_on_reserve = contextvars.ContextVar("embedsearch_on_reserve", default=False)


def on_reserve() -> bool:
    """Whether this call runs on the released reserve (a full disk): a delete then commits
    :data:`EMERGENCY_CHUNK` rows at a time, so SQLite's WAL, checkpointed as it goes, never needs
    more than a chunk's pages (one commit of thousands of deletes rewrites most of the table's
    pages into the WAL at once)."""
    return _on_reserve.get()


def reserve_size() -> int:
    raw = os.environ.get("EMBEDSEARCH_DISK_RESERVE", "")
    try:
        return max(0, int(raw)) if raw.strip() else DEFAULT_RESERVE
    except ValueError:
        return DEFAULT_RESERVE


def _free(data_dir: Path) -> int:
    try:
        return shutil.disk_usage(data_dir).free
    except OSError:
        return 0


def ensure_reserve(data_dir: Path) -> bool:
    """Allocate the reserve if it is missing and the disk has room for it (and a little more);
    True when it is in place (or turned off)."""
    size = reserve_size()
    path = Path(data_dir) / RESERVE_NAME
    if not size:
        return True
    try:
        if path.stat().st_size >= size:
            return True
    except FileNotFoundError:
        pass
    except OSError:
        return False
    if _free(data_dir) < size + MARGIN:
        return False
    tmp = path.with_name(f"{RESERVE_NAME}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        return True
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False


def release_reserve(data_dir: Path) -> bool:
    """Free the reserve; False when there was none to free."""
    try:
        os.unlink(Path(data_dir) / RESERVE_NAME)
        return True
    except FileNotFoundError:
        return False


def low_space(data_dir: Path) -> str | None:
    """Why writes would fail for lack of space on the data directory's disk, or None: less than
    :data:`MIN_FREE` free beyond the reserve, or the reserve not in place for lack of room."""
    size, free = reserve_size(), _free(data_dir)
    held = not size or (Path(data_dir) / RESERVE_NAME).exists()
    if free >= MIN_FREE + (0 if held else size):  # not held yet: the next write takes it when there is room
        return None
    where = f"{free:,} bytes free on the disk of {data_dir}"
    if not held:
        where += f", too little to keep the {size:,}-byte reserve that deletes need on a full disk"
    elif size:
        where += f" beyond the {size:,}-byte reserve kept for deletes"
    return f"{where}; delete documents (then `index optimize`) or free space"


def checkpoint(engine, mode: str = "TRUNCATE") -> None:
    """Copy SQLite's WAL into the database, and with TRUNCATE give the WAL file back to the disk
    (PASSIVE: as far as readers allow, without waiting); best effort."""
    if engine.dialect.name != "sqlite":
        return
    if mode not in ("PASSIVE", "TRUNCATE"):
        raise ValueError(mode)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"PRAGMA wal_checkpoint({mode})")
    except Exception as exc:  # noqa: BLE001 - a checkpoint that cannot run now runs at a later commit
        log.debug("WAL checkpoint skipped: %s", exc)


def frees_space(store_of):
    """Decorate an operation that frees space (delete, optimize, drop): on a full disk it
    releases the reserve (if still held) and runs once more, deletes in small commits
    (:func:`on_reserve`); afterwards the WAL is given back and the reserve taken again when
    there is room. ``store_of(self)`` is the Store the operation writes to."""

    def wrap(method):
        @functools.wraps(method)
        def run(self, *args, **kwargs):
            store = store_of(self)
            data_dir = store.settings.data_dir
            try:
                result = method(self, *args, **kwargs)
            except Exception as exc:
                reason = disk_full_reason(exc)
                if reason is None:
                    raise
                freed = f"released the {reserve_size():,}-byte reserve" if release_reserve(data_dir) else "no reserve left"
                log.warning("the disk is full (%s): %s; running %s again in small commits", reason, freed, method.__name__)
                token = _on_reserve.set(True)
                try:
                    result = method(self, *args, **kwargs)
                finally:
                    _on_reserve.reset(token)
            if not (Path(data_dir) / RESERVE_NAME).exists():
                checkpoint(store.engine)
                ensure_reserve(data_dir)
            return result

        return run

    return wrap
